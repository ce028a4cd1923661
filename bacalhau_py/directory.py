"""The nodes this node knows, from `NodeInfo` heard first-hand: whether each is alive, and approved.

A node's `NodeInfo` is its heartbeat (see `membership`): one silent for
`lost_after` seconds is lost, and so is one that tells a new `boot_id`
(it restarted, within that time, and forgot what it ran). Each node's view
is one `NodeRecord`.

The heartbeat period is 10 s up to 30 nodes, then grows with the network
(`heartbeat_period`), so that each node takes part in the same number of
heartbeats per second whatever the network's size; `lost_after` grows with it
(3 periods): at 50 nodes a node is lost after 50 s of silence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from bacalhau_py.auth.approvals import Approval, Approvals
from bacalhau_py.models.job import now
from bacalhau_py.models.messages import NodeInfo

# A node silent for this long is lost (`serve --node-lost-after`).
LOST_AFTER_SECONDS = 30.0
# Heartbeats: one exchange per pair of nodes per period, at least this many per lost-after.
HEARTBEAT_SECONDS = 10.0
HEARTBEATS_PER_LOST_AFTER = 3
# Up to this many nodes the period is the one above; past it the period grows
# with the network, so each node's share of the exchanges (sent and answered)
# stays 3 a second at 10 s (about 4 ms of CPU a second on py-libp2p).
FULL_RATE_UP_TO = 30


RESTARTED = "restarted"
"""Why a node that came back with a new boot ID is lost (`liveness_changes`)."""


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
        self._lost_after = lost_after
        self._nodes: dict[str, NodeRecord] = {}
        self._restarted: list[str] = []
        self._back: list[str] = []
        self.restarted_at: dict[str, datetime] = {}
        """When each node's latest restart was heard: what it was given before then died with its old run."""

    def update(self, info: NodeInfo) -> bool:
        """Record `info` (a sign of life); True if the node was not known before."""
        record = self._nodes.get(info.peer_id)
        if record is not None and record.lost:
            self._back.append(info.peer_id)
        elif record is not None and record.info.boot_id != info.boot_id:
            self._restarted.append(info.peer_id)
            self.restarted_at[info.peer_id] = now()
        self._nodes[info.peer_id] = NodeRecord(info, trio.current_time())
        return record is None

    def heard_from(self, peer_id: str) -> None:
        """Any signed message from a known node is a sign of life, not only its heartbeat.

        A node that is busy with a burst of jobs (or starved of CPU) may miss
        heartbeat exchanges while its reports and acknowledgements still come
        through; taking it for lost would reschedule work it is doing. A lost
        node comes back only with its `NodeInfo` (`update`): that is where a
        restart shows.
        """
        record = self._nodes.get(peer_id)
        if record is not None and not record.lost:
            record.last_seen = trio.current_time()

    def heartbeat_period(self) -> float:
        """Seconds between two heartbeats of a pair of nodes: 10 s, longer in a network of over 30 nodes."""
        small = min(HEARTBEAT_SECONDS, self._lost_after / HEARTBEATS_PER_LOST_AFTER)
        # Every node ever heard, lost ones too: were it the live ones, losing
        # nodes would shorten the period, and so lose more on a busy machine.
        return small * max(1.0, (len(self._nodes) + 1) / FULL_RATE_UP_TO)

    @property
    def lost_after(self) -> float:
        """Seconds of silence after which a node is lost: `--node-lost-after`, or 3 heartbeat periods if longer."""
        return max(self._lost_after, HEARTBEATS_PER_LOST_AFTER * self.heartbeat_period())

    def peers(self, seen_within: float) -> list[str]:
        """The other nodes heard from within `seen_within` seconds, lost ones included, by peer ID."""
        cutoff = trio.current_time() - seen_within
        return sorted(peer_id for peer_id, record in self._nodes.items() if record.last_seen >= cutoff)

    def digest(self) -> str:
        """What `all()` lists, in a few bytes: two nodes with equal digests know the same nodes alive."""
        return hashlib.sha256("\n".join(info.peer_id for info in self.all()).encode()).hexdigest()[:32]

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
        lost_after = self.lost_after
        cutoff = trio.current_time() - lost_after
        lost = [(peer_id, RESTARTED) for peer_id in self._restarted]
        for peer_id, record in self._nodes.items():
            if not record.lost and record.last_seen < cutoff:
                record.lost = True
                lost.append((peer_id, f"silent for {lost_after:g}s"))
        back, self._back, self._restarted = self._back, [], []
        return lost, back
