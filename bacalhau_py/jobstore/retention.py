"""Finished jobs are kept for the node's retention, then forgotten.

Without this the requester's job store grows by every job's record and
history (about 8 KB a job) for as long as the node runs. `JobRetention.serve`
sweeps now and then: a job in a terminal state whose last change is older
than the retention is deleted, its executions and history with it. Running
jobs are never deleted, nor the jobs of an unfinished workflow (it reads the
results of its finished tasks when it submits the next ones). Receipts are
not jobs: they stay, and memoization and finished workflows read those.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import trio

from bacalhau_py.jobstore.sqlite import JobStore
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.models.job import now

log = logging.getLogger("bacalhau_py.jobs")

# A sweep is cheap (an indexed delete; no garbage collection as for result
# pins), so it comes often: a tenth of the retention, at least every minute.
# The store then holds little more than the retention's jobs.
MAX_SWEEP_SECONDS = 60.0


class JobRetention:
    def __init__(
        self, jobs: JobStore, workflows: WorkflowStore, retention: float, *, clock: Callable[[], datetime] = now
    ) -> None:
        self.jobs = jobs
        self.workflows = workflows
        self.retention = retention
        self.clock = clock

    async def sweep(self) -> list[str]:
        """Forget the finished jobs older than the retention; return their IDs."""
        try:
            before = self.clock() - timedelta(seconds=self.retention)
        except OverflowError:
            return []  # a retention longer than dates go: no job is that old
        keep = await self.workflows.jobs_of_unfinished()
        return await self.jobs.forget(before, keep=keep)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = max(1.0, min(self.retention / 10, MAX_SWEEP_SECONDS))
        while True:
            await trio.sleep(pause)
            try:
                forgotten = await self.sweep()
            except sqlite3.OperationalError as error:
                # A busy or full disk: the next sweep tries again.
                log.warning("could not forget old jobs: %s", error)
                continue
            if forgotten:
                log.info("forgot %d finished job(s) older than the retention", len(forgotten))
