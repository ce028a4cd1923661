"""The requester's record of a job and of each execution of it.

These are what the job store persists and what `describe` returns.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, computed_field

from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.spec import JobSpec
from bacalhau_py.models.states import ExecutionState, JobState


def now() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    """One line of a job's history."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    job_state: JobState | None = None
    execution_id: str | None = None
    node_id: str | None = None
    execution_state: ExecutionState | None = None
    message: str = ""


class Execution(BaseModel):
    """One compute node's run of a job, as the requester sees it."""

    model_config = ConfigDict(frozen=True)

    id: str
    job_id: str
    node_id: str
    state: ExecutionState
    exit_code: int | None = None
    result_cid: str | None = None
    result_hash: str | None = None
    """Revealed by the compute node after every execution committed to its hash."""
    commitment: str | None = None
    publisher: str | None = None
    message: str = ""
    created_at: datetime
    updated_at: datetime
    image_id: str | None = None
    """docker: the ID of the image the compute node ran."""
    logs_cid: str | None = None
    """A failed run's stdout and stderr in IPFS, for `logs`."""

    @computed_field
    @property
    def verification(self) -> str | None:
        if self.state is ExecutionState.RESULT_ACCEPTED:
            return "accepted"
        if self.state is ExecutionState.RESULT_REJECTED:
            return "rejected"
        return None


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    spec: JobSpec
    requester_id: str
    message: str = ""
    created_at: datetime
    updated_at: datetime
    executions: list[Execution] = []
    events: list[Event] = []
    client_id: str | None = None
    """The client that submitted the job (see auth/client_key.py); None for jobs from before client IDs."""
    client_request: SignedRequest | None = None
    """The client's signed submit request: it travels with the job to the compute nodes, which verify it."""
    instruction_cid: str | None = None
    """What the job computes (workflow/instruction.py); its receipts are found by it."""
    memoized_from: Receipt | None = None
    """The receipt whose result the job took instead of running."""

    def waiting_to_start(self) -> bool:
        """Pending with no execution under way: nothing runs for it anywhere yet."""
        return self.state is JobState.PENDING and all(e.state.terminal for e in self.executions)

    def accepted_executions(self) -> list[Execution]:
        return [e for e in self.executions if e.state is ExecutionState.RESULT_ACCEPTED]

    def result_cid(self) -> str | None:
        """The accepted result's CID (the receipt's, for a memoized job)."""
        if self.memoized_from is not None:
            return self.memoized_from.out.result_cid
        accepted = self.accepted_executions()
        return accepted[0].result_cid if accepted else None
