"""The nodes this node knows, from gossiped and requested `NodeInfo`."""

from __future__ import annotations

from collections.abc import Callable

import trio

from bacalhau_py.models.messages import NodeInfo

# Nodes re-announce every few seconds; one silent for this long is gone.
STALE_AFTER_SECONDS = 30.0


class NodeDirectory:
    def __init__(self, own_info: Callable[[], NodeInfo]) -> None:
        self._own_info = own_info
        self._nodes: dict[str, tuple[float, NodeInfo]] = {}

    def update(self, info: NodeInfo) -> bool:
        """Record `info`; True if the node was not known before."""
        new = info.peer_id not in self._nodes
        self._nodes[info.peer_id] = (trio.current_time(), info)
        return new

    def all(self) -> list[NodeInfo]:
        """This node first, then the others that are not stale, by peer ID."""
        own = self._own_info()
        cutoff = trio.current_time() - STALE_AFTER_SECONDS
        others = [
            info
            for peer_id, (seen, info) in sorted(self._nodes.items())
            if seen >= cutoff and peer_id != own.peer_id
        ]
        return [own, *others]

    def compute_nodes(self) -> list[NodeInfo]:
        return [info for info in self.all() if "compute" in info.node_types]
