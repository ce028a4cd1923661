"""A workflow as the requester keeps it: its tasks, each with its instruction, job and result."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from bacalhau_py.models.spec import JobSpec
from bacalhau_py.models.states import JobState


class Promise(BaseModel):
    """What an `await/ok` stands for: the result of task `task`, or the file at `path` inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    path: str = ""


class WorkflowTask(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    instruction_cid: str
    spec: JobSpec
    """As written: each await is a placeholder CID, a key of `promises`."""
    promises: dict[str, Promise] = {}
    job_id: str | None = None
    state: JobState = JobState.PENDING
    result_cid: str | None = None
    message: str = ""

    def awaits(self) -> set[str]:
        return {promise.task for promise in self.promises.values()}


class Workflow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    state: JobState
    message: str = ""
    created_at: datetime
    updated_at: datetime
    tasks: list[WorkflowTask]
    client_id: str | None = None
    """The client that submitted it: it owns the tasks' jobs (their logs and results)."""

    def task(self, name: str) -> WorkflowTask:
        return next(t for t in self.tasks if t.name == name)
