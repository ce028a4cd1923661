"""The nodes this node knows, from gossiped and requested `NodeInfo`, and whether each is approved."""

from __future__ import annotations

from collections.abc import Callable

import trio

from bacalhau_py.auth.approvals import Approval, Approvals
from bacalhau_py.models.messages import NodeInfo

# Nodes re-announce every few seconds; one silent for this long is gone.
STALE_AFTER_SECONDS = 30.0


class NodeDirectory:
    def __init__(self, own_info: Callable[[], NodeInfo], approvals: Approvals | None = None) -> None:
        self._own_info = own_info
        self._nodes: dict[str, tuple[float, NodeInfo]] = {}
        self.approvals = approvals or Approvals(None)

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

    def knows(self, peer_id: str) -> bool:
        return peer_id in self._nodes

    def approval(self, peer_id: str, own_peer_id: str | None = None) -> Approval:
        # A node always runs its own jobs: its operator is the one who would approve it.
        if peer_id == (own_peer_id or self._own_info().peer_id):
            return "approved"
        return self.approvals.of(peer_id)

    def compute_nodes(self) -> list[NodeInfo]:
        """The compute nodes a requester may send jobs to: known, not stale, approved."""
        nodes = self.all()
        own = nodes[0].peer_id
        return [
            info for info in nodes if "compute" in info.node_types and self.approval(info.peer_id, own) == "approved"
        ]

    def awaiting_approval(self) -> list[str]:
        """Compute nodes known and alive that an operator has not approved (manual approval)."""
        nodes = self.all()
        own = nodes[0].peer_id
        return [n.peer_id for n in nodes if "compute" in n.node_types and self.approval(n.peer_id, own) != "approved"]
