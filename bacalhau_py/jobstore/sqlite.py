"""The requester's job store: every job, its executions and its history, in sqlite.

Each job is one row holding the whole `Job` document, rewritten in one
transaction on every change, so a crash can never leave a job half-updated.
This module is also the only place where job and execution states change:
each update goes through the transition table and appends a history event.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import trio

from bacalhau_py.errors import NotFound, UserInputError
from bacalhau_py.models import (
    Event,
    Execution,
    ExecutionState,
    Job,
    JobSpec,
    JobState,
    advance_execution,
    advance_job,
)
from bacalhau_py.models.job import now
from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.models.receipt import Receipt

log = logging.getLogger("bacalhau_py.jobs")

MIN_PREFIX = 8
# Finished jobs are dropped from memory past this many cached jobs; they are
# read back from sqlite when asked for.
CACHE_SIZE = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs (json_extract(doc, '$.client_id'), created_at);
"""


@dataclass(frozen=True)
class JobChange:
    state: JobState
    message: str = ""

    def applied_to(self, job: Job, at) -> Job:
        if job.state.terminal:
            return job
        advance_job(job.state, self.state)
        event = Event(at=at, job_state=self.state, message=self.message)
        return job.model_copy(
            update={"state": self.state, "message": self.message or job.message, "events": [*job.events, event]}
        )


@dataclass(frozen=True)
class Note:
    message: str

    def applied_to(self, job: Job, at) -> Job:
        if job.state.terminal:
            return job
        return job.model_copy(update={"events": [*job.events, Event(at=at, message=self.message)]})


@dataclass(frozen=True)
class NewExecution:
    execution_id: str
    node_id: str

    def applied_to(self, job: Job, at) -> Job:
        execution = Execution(
            id=self.execution_id,
            job_id=job.id,
            node_id=self.node_id,
            state=ExecutionState.ASKED_FOR_BID,
            created_at=at,
            updated_at=at,
        )
        event = Event(
            at=at, execution_id=self.execution_id, node_id=self.node_id, execution_state=ExecutionState.ASKED_FOR_BID
        )
        return job.model_copy(update={"executions": [*job.executions, execution], "events": [*job.events, event]})


@dataclass(frozen=True)
class ExecutionChange:
    execution_id: str
    state: ExecutionState
    message: str = ""
    fields: dict = field(default_factory=dict)
    """exit_code, result_cid, result_hash, commitment, publisher, logs_cid."""

    def applied_to(self, job: Job, at) -> Job:
        executions = []
        found = None
        for execution in job.executions:
            if execution.id == self.execution_id:
                if execution.state.terminal:
                    return job
                advance_execution(execution.state, self.state)
                found = execution.model_copy(
                    update={
                        "state": self.state,
                        "message": self.message or execution.message,
                        "updated_at": at,
                        **self.fields,
                    }
                )
                execution = found
            executions.append(execution)
        if found is None:
            raise NotFound(f"execution {self.execution_id} of job {job.id} not found")
        event = Event(
            at=at, execution_id=self.execution_id, node_id=found.node_id, execution_state=self.state,
            message=self.message,
        )
        return job.model_copy(update={"executions": executions, "events": [*job.events, event]})


@dataclass(frozen=True)
class Started:
    """The compute node acknowledged its acceptance, so it runs: Running, unless later news came first.

    Its result proposal (or failure) may reach the requester before that
    acknowledgement does; then the execution is already past Running.
    """

    execution_id: str

    def applied_to(self, job: Job, at) -> Job:
        for execution in job.executions:
            if execution.id == self.execution_id and execution.state is ExecutionState.BID_ACCEPTED:
                return ExecutionChange(self.execution_id, ExecutionState.RUNNING).applied_to(job, at)
        return job


@dataclass(frozen=True)
class Reported:
    """A compute node's report, which it sends again until acknowledged (transport/delivery.py):
    a repeat of the state the execution is already in changes nothing."""

    change: ExecutionChange

    def applied_to(self, job: Job, at) -> Job:
        for execution in job.executions:
            if execution.id == self.change.execution_id and execution.state is self.change.state:
                return job
        return self.change.applied_to(job, at)


@dataclass(frozen=True)
class LostIfActive:
    """The execution's node is lost (silent, unreachable, gone after a restart): Lost if still active.

    The decision was taken on an older read of the job: if the execution's
    report arrived meanwhile (a result proposed, or only the acknowledgements
    of the bid were lost), it goes on as reported, and the job is unchanged.
    """

    execution_id: str
    reason: str

    def applied_to(self, job: Job, at) -> Job:
        for execution in job.executions:
            if execution.id == self.execution_id and execution.state.active:
                return ExecutionChange(self.execution_id, ExecutionState.LOST, self.reason).applied_to(job, at)
        return job


@dataclass(frozen=True)
class Memoized:
    """The job takes a receipt's result instead of running: Completed at once."""

    receipt: Receipt
    message: str

    def applied_to(self, job: Job, at) -> Job:
        job = JobChange(JobState.COMPLETED, self.message).applied_to(job, at)
        return job.model_copy(update={"memoized_from": self.receipt})


Change = JobChange | Note | NewExecution | ExecutionChange | Started | Memoized | Reported | LostIfActive


class JobStore:
    """Persistent jobs. Open with `JobStore.open(path)`; `path=None` keeps it in memory."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._cache: dict[str, Job] = {}
        self._changed: dict[str, trio.Event] = {}
        # A trio lock serialises read-modify-write of one job document; the
        # thread lock guards the connection itself.
        self._write = trio.Lock()

    @classmethod
    def open(cls, path: Path | None) -> "JobStore":
        connection = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, timeout=10.0
        )
        # Before any table exists (it has no effect on a file made earlier):
        # pages freed by `forget` can then be given back to the file system.
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
        return cls(connection)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading --------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """By full ID or a unique prefix of at least 8 characters."""
        if job_id in self._cache:
            return self._cache[job_id]
        if len(job_id) < MIN_PREFIX:
            raise UserInputError(f"job ID {job_id!r} is too short (expected the full ID or 8+ characters)")
        rows = await self._run(
            lambda db: db.execute(
                "SELECT doc FROM jobs WHERE id >= ? AND id < ? LIMIT 2", (job_id, job_id + "\uffff")
            ).fetchall()
        )
        if not rows:
            raise NotFound(f"job {job_id} not found")
        if len(rows) > 1:
            raise UserInputError(f"job ID prefix {job_id!r} matches several jobs; give more characters")
        job = Job.model_validate_json(rows[0][0])
        return self._cache.setdefault(job.id, job)

    async def list(self, limit: int = 20, *, client_id: str | None = None) -> list[Job]:
        """Newest first; with `client_id`, only that client's jobs."""
        where, params = ("WHERE json_extract(doc, '$.client_id') = ?", (client_id,)) if client_id else ("", ())
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT id, doc FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit)
            ).fetchall()
        )
        return [self._cache.get(job_id) or Job.model_validate_json(doc) for job_id, doc in rows]

    async def unfinished(self) -> list[Job]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT doc FROM jobs WHERE state IN (?, ?)",
                (JobState.PENDING.value, JobState.RUNNING.value),
            ).fetchall()
        )
        return [Job.model_validate_json(doc) for (doc,) in rows]

    async def forget(self, before: datetime, *, keep: Collection[str] = ()) -> list[str]:
        """Delete the finished jobs last changed before `before`, except those in `keep`; return their IDs.

        A job's executions and history live in its record and go with it.
        Jobs not finished are never deleted, however old.
        """
        terminal = [state.value for state in JobState if state.terminal]
        # created_at is indexed and never later than updated_at, so it narrows
        # the scan; compared as text, one second later so that formatting (no
        # microseconds when they are 0) never leaves out a job it should take.
        sql = f"""
            DELETE FROM jobs
            WHERE created_at < ? AND state IN ({", ".join("?" * len(terminal))})
              AND julianday(json_extract(doc, '$.updated_at')) < julianday(?)
              AND id NOT IN (SELECT value FROM json_each(?))
            RETURNING id
        """
        params = ((before + timedelta(seconds=1)).isoformat(), *terminal, before.isoformat(), json.dumps(list(keep)))

        def delete(db: sqlite3.Connection) -> list[str]:
            with db:
                removed = [job_id for (job_id,) in db.execute(sql, params).fetchall()]
            if removed:
                # Gives the freed pages back (a file made before auto_vacuum
                # was set keeps them and reuses them for new jobs), then
                # empties the WAL, which now holds the moved pages. A script,
                # as `execute` would run incremental_vacuum one page only.
                db.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
            return removed

        async with self._write:
            removed = await self._run(delete)
        for job_id in removed:
            self._cache.pop(job_id, None)
            # Whoever still waits on it wakes and finds it gone.
            self._changed.pop(job_id, trio.Event()).set()
        return removed

    def changed(self, job_id: str) -> trio.Event:
        """An event set at the next change of the job (a fresh one after each change)."""
        return self._changed.setdefault(job_id, trio.Event())

    # -- writing --------------------------------------------------------------

    async def create(
        self,
        job_id: str,
        spec: JobSpec,
        requester_id: str,
        *,
        instruction_cid: str | None = None,
        client_id: str | None = None,
        client_request: SignedRequest | None = None,
    ) -> Job:
        at = now()
        job = Job(
            id=job_id,
            state=JobState.PENDING,
            spec=spec,
            requester_id=requester_id,
            created_at=at,
            updated_at=at,
            events=[Event(at=at, job_state=JobState.PENDING, message="submitted")],
            client_id=client_id,
            client_request=client_request,
            instruction_cid=instruction_cid,
        )
        async with self._write:
            await self._save(job, insert=True)
        _log_events(job, job.events)
        return job

    async def set_job_state(self, job_id: str, state: JobState, message: str = "") -> Job:
        return await self.apply(job_id, JobChange(state, message))

    async def note(self, job_id: str, message: str) -> Job:
        """Add a line to the job's history without changing its state (e.g. queued)."""
        return await self.apply(job_id, Note(message))

    async def add_execution(self, job_id: str, execution_id: str, node_id: str) -> Job:
        return await self.apply(job_id, NewExecution(execution_id, node_id))

    async def set_execution_state(
        self, job_id: str, execution_id: str, state: ExecutionState, message: str = "", **fields
    ) -> Job:
        """Move one execution to `state`; `fields` sets exit_code, result_cid, result_hash, ..."""
        return await self.apply(job_id, ExecutionChange(execution_id, state, message, fields))

    async def apply(self, job_id: str, *changes: "Change") -> Job:
        """Apply `changes` in order, in ONE write: the job is stored with all of them or none.

        A job or execution already finished stays as it is: late news (a
        failure racing a user's cancel) is dropped, not an error.
        """

        def change_all(job: Job, at) -> Job:
            for change in changes:
                job = change.applied_to(job, at)
            return job

        return await self._update(job_id, change_all)

    async def _update(self, job_id: str, change: Callable[[Job, object], Job]) -> Job:
        async with self._write:
            job = await self.get(job_id)
            at = now()
            updated = change(job, at)
            if updated is job:
                return job
            updated = updated.model_copy(update={"updated_at": at})
            await self._save(updated, insert=False)
        _log_events(updated, updated.events[len(job.events) :])
        return updated

    async def _save(self, job: Job, *, insert: bool) -> None:
        doc = job.model_dump_json()
        if insert:
            sql = "INSERT INTO jobs (id, created_at, state, doc) VALUES (?, ?, ?, ?)"
            params = (job.id, job.created_at.isoformat(), job.state.value, doc)
        else:
            sql = "UPDATE jobs SET state = ?, doc = ? WHERE id = ?"
            params = (job.state.value, doc, job.id)

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(sql, params)

        await self._run(write)
        self._cache[job.id] = job
        if len(self._cache) > CACHE_SIZE:
            for cached_id in [i for i, j in self._cache.items() if j.state.terminal]:
                del self._cache[cached_id]
        self._changed.pop(job.id, trio.Event()).set()

    async def _run(self, query):
        # sqlite's own busy timeout (10 s) bounds how long a call can wait.
        def locked():
            with self._lock:
                return query(self._db)

        return await trio.to_thread.run_sync(locked)


def _log_events(job: Job, events: list[Event]) -> None:
    """One structured log line per event of a job's history."""
    for event in events:
        log.info(
            "job=%s state=%s execution=%s node=%s execution_state=%s %s",
            job.id, job.state.value, event.execution_id or "-", event.node_id or "-",
            event.execution_state.value if event.execution_state else "-", event.message,
        )
