"""Receipts and workflows, kept next to the jobs (same sqlite file, tables of their own).

Receipts are keyed by instruction CID: the first verified receipt of an
instruction is kept. Workflows are one document per row, like jobs, so a
requester that restarts finds each workflow as it left it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import trio

from bacalhau_py.errors import NotFound
from bacalhau_py.models.job import now
from bacalhau_py.models.receipt import Receipt
from bacalhau_py.models.states import JobState
from bacalhau_py.models.workflow import Workflow, WorkflowTask

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (ran TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL
);
"""


class WorkflowStore:
    """Open with `WorkflowStore.open(path)`; `path=None` keeps it in memory."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._write = trio.Lock()

    @classmethod
    def open(cls, path: Path | None) -> "WorkflowStore":
        connection = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, timeout=10.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(_SCHEMA)
        return cls(connection)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- receipts ---------------------------------------------------------------

    async def receipt(self, ran: str) -> Receipt | None:
        rows = await self._run(lambda db: db.execute("SELECT doc FROM receipts WHERE ran = ?", (ran,)).fetchall())
        return Receipt.model_validate_json(rows[0][0]) if rows else None

    async def keep_receipt(self, receipt: Receipt) -> None:
        """Keep a (verified) receipt unless one for the same instruction is already kept."""
        doc = receipt.model_dump_json()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("INSERT OR IGNORE INTO receipts (ran, doc) VALUES (?, ?)", (receipt.ran, doc))

        await self._run(write)

    # -- workflows --------------------------------------------------------------

    async def create(self, workflow_id: str, tasks: list[WorkflowTask], *, client_id: str | None = None) -> Workflow:
        at = now()
        workflow = Workflow(
            id=workflow_id, state=JobState.PENDING, created_at=at, updated_at=at, tasks=tasks, client_id=client_id
        )
        doc = workflow.model_dump_json()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT INTO workflows (id, created_at, state, doc) VALUES (?, ?, ?, ?)",
                    (workflow.id, at.isoformat(), workflow.state.value, doc),
                )

        async with self._write:
            await self._run(write)
        return workflow

    async def get(self, workflow_id: str) -> Workflow:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT doc FROM workflows WHERE id >= ? AND id < ? LIMIT 2", (workflow_id, workflow_id + "\uffff")
            ).fetchall()
        )
        if len(rows) != 1 or len(workflow_id) < 8:
            raise NotFound(f"workflow {workflow_id} not found (give its full ID or 8+ characters of it)")
        return Workflow.model_validate_json(rows[0][0])

    async def save(self, workflow: Workflow) -> Workflow:
        workflow = workflow.model_copy(update={"updated_at": now()})
        doc = workflow.model_dump_json()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("UPDATE workflows SET state = ?, doc = ? WHERE id = ?", (workflow.state.value, doc, workflow.id))

        async with self._write:
            await self._run(write)
        return workflow

    async def unfinished(self) -> list[str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id FROM workflows WHERE state IN (?, ?)", (JobState.PENDING.value, JobState.RUNNING.value)
            ).fetchall()
        )
        return [workflow_id for (workflow_id,) in rows]

    async def jobs_of_unfinished(self) -> set[str]:
        """The job IDs of the tasks of unfinished workflows (they may still read those jobs)."""
        rows = await self._run(
            lambda db: db.execute(
                """SELECT json_extract(task.value, '$.job_id') FROM workflows, json_each(workflows.doc, '$.tasks') AS task
                   WHERE workflows.state IN (?, ?) AND json_extract(task.value, '$.job_id') IS NOT NULL""",
                (JobState.PENDING.value, JobState.RUNNING.value),
            ).fetchall()
        )
        return {job_id for (job_id,) in rows}

    async def _run(self, query):
        def locked():
            with self._lock:
                return query(self._db)

        return await trio.to_thread.run_sync(locked)
