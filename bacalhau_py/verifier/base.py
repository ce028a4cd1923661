"""The verifier interface. Called on the requester side once results are proposed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bacalhau_py.models import JobSpec


@dataclass(frozen=True)
class Proposal:
    """One execution's proposed result, its hash already revealed and checked."""

    execution_id: str
    node_id: str
    exit_code: int | None
    result_cid: str | None
    publisher: str
    result_hash: str | None
    """None when the verifier does not need hashes (then no reveal round is run)."""


@dataclass(frozen=True)
class Verdict:
    accepted: frozenset[str]
    rejected: frozenset[str]
    message: str = ""
    """Why, when nothing was accepted: the job fails with this message."""


class ResultReader(Protocol):
    async def fetch(self, execution_id: str, node_id: str, result_cid: str | None, publisher: str) -> Path:
        """The proposed result folder on this node's disk (fetched from IPFS or the compute node once)."""


class Verifier(Protocol):
    needs_result_hashes: bool
    """Whether compute nodes hash their results and commit to the hash (commit, then reveal)."""

    async def verify(self, spec: JobSpec, proposals: list[Proposal], results: ResultReader) -> Verdict:
        """Split proposals into accepted and rejected execution IDs."""
