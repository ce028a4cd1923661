"""Which compute nodes a requester asks to bid for a job: a ranking by rendezvous hashing.

Every candidate gets a score from a hash of (job ID, peer ID); the nodes
are asked in order of that score, the first few first, then twice as many
each round while the rounds asked cannot serve the job (refusals, silence).

Why this rule:
- The cost of a job is O(its concurrency), not O(the network): the first
  round is `needed + SPARE_BIDDERS` nodes whatever the network's size, and
  widening doubles, so a job that a few nodes refuse costs a few more asks,
  not one per node.
- Load spreads evenly: job IDs are random, so each node is first for an
  equal share of the jobs (the same as a random sample).
- It is stable (Bacalhau's hash distance, made immune to joins and
  leaves): a node joining or leaving moves only the jobs it ranks first
  for. A job asked again (rescheduled, queued, offered again after a
  requester restart) asks the same nodes first, which may still hold its
  image or inputs.
- Selectors and constraints are read from the labels each node announces:
  the nodes that match rank before those that do not, so a job with a
  selector asks only matching nodes as long as there are enough of them.
  Nodes that do not match are still asked last, as widening reaches them, so
  a job no node can take fails with every node's own reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from bacalhau_py.models import JobSpec
from bacalhau_py.models.messages import NodeInfo


def ranked(job_id: str, spec: JobSpec, nodes: Iterable[NodeInfo]) -> list[str]:
    """The peer IDs of `nodes` in the order to ask them for a bid on the job."""
    salt = f"{job_id}\0".encode()
    scored = sorted((not _matches(spec, info), _score(salt, info.peer_id), info.peer_id) for info in nodes)
    return [peer_id for _, _, peer_id in scored]


def widened(ranking: list[str], asked: int) -> list[str]:
    """The next round after the first `asked` nodes of `ranking` could not serve: twice as many."""
    return ranking[: max(2 * asked, 1)]


def _score(salt: bytes, peer_id: str) -> bytes:
    return hashlib.blake2b(salt + peer_id.encode(), digest_size=8).digest()


def _matches(spec: JobSpec, info: NodeInfo) -> bool:
    """Whether the node's announced labels meet the job's selector and constraints (as its bid strategy checks)."""
    if not (spec.selector or spec.constraints):
        return True
    return all(info.labels.get(key) == value for key, value in spec.selector.items()) and all(
        constraint.matches(info.labels) for constraint in spec.constraints
    )
