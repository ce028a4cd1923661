"""The nodes this node knows, from gossiped and requested `NodeInfo`: whether each is alive, and approved.

A node's `NodeInfo` announcements are its heartbeat: one silent for
`lost_after` seconds is lost, and so is one that announces a new `boot_id`
(it restarted, within that time, and forgot what it ran). Each node's view
is one `NodeRecord`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from bacalhau_py.auth.approvals import Approval, Approvals
from bacalhau_py.models.messages import NodeInfo

# A node silent for this long is lost (`serve --node-lost-after`).
LOST_AFTER_SECONDS = 30.0


@dataclass
class NodeRecord:
    info: NodeInfo
    last_seen: float
    lost: bool = False


class NodeDirectory:
    def __init__(
        self,
        own_info: Callable[[], NodeInfo],
        approvals: Approvals | None = None,
        lost_after: float = LOST_AFTER_SECONDS,
    ) -> None:
        self._own_info = own_info
        self.approvals = approvals or Approvals(None)
        self.lost_after = lost_after
        self._nodes: dict[str, NodeRecord] = {}
        self._restarted: list[str] = []
        self._back: list[str] = []

    def update(self, info: NodeInfo) -> bool:
        """Record `info` (a sign of life); True if the node was not known before."""
        record = self._nodes.get(info.peer_id)
        if record is not None and record.lost:
            self._back.append(info.peer_id)
        elif record is not None and record.info.boot_id != info.boot_id:
            self._restarted.append(info.peer_id)
        self._nodes[info.peer_id] = NodeRecord(info, trio.current_time())
        return record is None

    def all(self) -> list[NodeInfo]:
        """This node first, then the others that are alive, by peer ID."""
        own = self._own_info()
        cutoff = trio.current_time() - self.lost_after
        others = [
            record.info
            for peer_id, record in sorted(self._nodes.items())
            if record.last_seen >= cutoff and peer_id != own.peer_id
        ]
        return [own, *others]

    def alive(self, peer_id: str) -> NodeInfo | None:
        """The latest info of another node, if it is known and alive (as `all` would list it)."""
        record = self._nodes.get(peer_id)
        if record is None or record.last_seen < trio.current_time() - self.lost_after:
            return None
        return record.info

    def quiet(self, seconds: float) -> list[str]:
        """The nodes not lost yet but not heard from for `seconds`."""
        cutoff = trio.current_time() - seconds
        return [peer_id for peer_id, record in self._nodes.items() if not record.lost and record.last_seen < cutoff]

    def knows(self, peer_id: str) -> bool:
        return peer_id in self._nodes

    def approval(self, peer_id: str, own_peer_id: str | None = None) -> Approval:
        # A node always runs its own jobs: its operator is the one who would approve it.
        if peer_id == (own_peer_id or self._own_info().peer_id):
            return "approved"
        return self.approvals.of(peer_id)

    def compute_nodes(self) -> list[NodeInfo]:
        """The compute nodes a requester may send jobs to: known, alive, approved."""
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

    def liveness_changes(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Since the last call: (lost nodes and why, lost nodes heard from again)."""
        cutoff = trio.current_time() - self.lost_after
        lost = [(peer_id, "restarted") for peer_id in self._restarted]
        for peer_id, record in self._nodes.items():
            if not record.lost and record.last_seen < cutoff:
                record.lost = True
                lost.append((peer_id, f"silent for {self.lost_after:g}s"))
        back, self._back, self._restarted = self._back, [], []
        return lost, back
