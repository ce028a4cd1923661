from datetime import datetime, timedelta, timezone

import pytest
import trio

from bacalhau_py.errors import NotFound, UserInputError
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore import sqlite as jobstore_sqlite
from bacalhau_py.jobstore.retention import JobRetention
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.jobstore.sqlite import ExecutionChange, LostIfActive, Started
from bacalhau_py.models import ExecutionState, JobState, Task
from bacalhau_py.models.receipt import Receipt, ReceiptOut
from bacalhau_py.models.spec import JobSpec
from bacalhau_py.models.workflow import WorkflowTask

SPEC = JobSpec(task=Task(engine="docker", image="busybox"))


async def test_jobs_and_their_history_survive_a_reopen(tmp_path):
    store = JobStore.open(tmp_path / "jobs.sqlite")
    await store.create("a1b2c3d4-0000", SPEC, "requester")
    await store.add_execution("a1b2c3d4-0000", "e1", "node-1")
    await store.set_execution_state("a1b2c3d4-0000", "e1", ExecutionState.BID_ACCEPTED)
    await store.set_job_state("a1b2c3d4-0000", JobState.RUNNING)
    store.close()

    reopened = JobStore.open(tmp_path / "jobs.sqlite")
    job = await reopened.get("a1b2c3d4-0000")
    assert job.state is JobState.RUNNING
    assert [e.state for e in job.executions] == [ExecutionState.BID_ACCEPTED]
    assert [ev.job_state or ev.execution_state for ev in job.events] == [
        JobState.PENDING, ExecutionState.ASKED_FOR_BID, ExecutionState.BID_ACCEPTED, JobState.RUNNING,
    ]
    assert [j.id for j in await reopened.unfinished()] == ["a1b2c3d4-0000"]


async def test_prefix_lookup_needs_eight_unique_characters(tmp_path):
    store = JobStore.open(None)
    await store.create("abcdef12-1111", SPEC, "r")
    await store.create("abcdef12-2222", SPEC, "r")
    store._cache.clear()
    assert (await store.get("abcdef12-2")).id == "abcdef12-2222"
    with pytest.raises(UserInputError, match="too short"):
        await store.get("abcdef")
    with pytest.raises(UserInputError, match="matches several jobs"):
        await store.get("abcdef12")
    with pytest.raises(NotFound):
        await store.get("ffffffff")


async def test_list_is_newest_first(tmp_path):
    store = JobStore.open(None)
    for n in range(3):
        await store.create(f"job-{n}-xxxxx", SPEC, "r")
    assert [j.id for j in await store.list(2)] == ["job-2-xxxxx", "job-1-xxxxx"]


async def test_late_news_for_a_finished_job_is_dropped(tmp_path):
    store = JobStore.open(None)
    await store.create("job-0-xxxxx", SPEC, "r")
    await store.set_job_state("job-0-xxxxx", JobState.CANCELLED, "by user")
    job = await store.set_job_state("job-0-xxxxx", JobState.FAILED, "too late")
    assert job.state is JobState.CANCELLED and job.message == "by user"


async def test_change_event_fires_on_update():
    store = JobStore.open(None)
    await store.create("job-0-xxxxx", SPEC, "r")
    changed = store.changed("job-0-xxxxx")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.set_job_state, "job-0-xxxxx", JobState.RUNNING)
        with trio.fail_after(2):
            await changed.wait()
    assert (await store.get("job-0-xxxxx")).state is JobState.RUNNING


class Clock:
    """The store's and the retention's time, moved by the test (nothing sleeps)."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(jobstore_sqlite, "now", clock)
    return clock


async def finished(store: JobStore, job_id: str, state: JobState = JobState.COMPLETED) -> None:
    await store.create(job_id, SPEC, "r")
    await store.set_job_state(job_id, JobState.RUNNING)
    await store.set_job_state(job_id, state, "done")


async def test_finished_jobs_older_than_the_retention_are_forgotten_running_ones_never(tmp_path, clock):
    store = JobStore.open(tmp_path / "jobs.sqlite")
    workflows = WorkflowStore.open(tmp_path / "jobs.sqlite")
    retention = JobRetention(store, workflows, timedelta(days=7).total_seconds(), clock=clock)
    await finished(store, "old-done-xxxx")
    await finished(store, "old-failed-xx", JobState.FAILED)
    await store.create("old-running-x", SPEC, "r")
    await store.set_job_state("old-running-x", JobState.RUNNING)
    await store.create("old-changed-x", SPEC, "r")
    clock.advance(days=6)
    # Created a week ago, but its last change is within the retention.
    await store.set_job_state("old-changed-x", JobState.CANCELLED, "by user")
    await finished(store, "new-done-xxxx")
    assert await retention.sweep() == []

    clock.advance(days=1, seconds=1)
    assert sorted(await retention.sweep()) == ["old-done-xxxx", "old-failed-xx"]
    for job_id in ("old-done-xxxx", "old-failed-xx"):
        with pytest.raises(NotFound):
            await store.get(job_id)
    assert {j.id for j in await store.list(10)} == {"old-running-x", "old-changed-x", "new-done-xxxx"}
    # Not from the cache either: a fresh store reads the same file.
    reopened = JobStore.open(tmp_path / "jobs.sqlite")
    assert {j.id for j in await reopened.list(10)} == {"old-running-x", "old-changed-x", "new-done-xxxx"}
    assert [j.id for j in await reopened.unfinished()] == ["old-running-x"]

    clock.advance(days=30)
    assert sorted(await retention.sweep()) == ["new-done-xxxx", "old-changed-x"]
    assert [j.id for j in await store.list(10)] == ["old-running-x"]


async def test_a_waiter_on_a_forgotten_job_wakes_and_finds_it_gone(clock):
    store = JobStore.open(None)
    await finished(store, "old-done-xxxx")
    changed = store.changed("old-done-xxxx")
    clock.advance(days=8)
    await store.forget(clock() - timedelta(days=7))
    assert changed.is_set()
    with pytest.raises(NotFound):
        await store.get("old-done-xxxx")


async def test_the_space_of_forgotten_jobs_goes_back_to_the_disk(tmp_path, clock):
    path = tmp_path / "jobs.sqlite"
    store = JobStore.open(path)
    spec = JobSpec(task=Task(engine="docker", image="busybox", command=["echo", "x" * 4000]))
    for n in range(300):
        await store.create(f"job-{n:04}-xxxx", spec, "r")
        await store.set_job_state(f"job-{n:04}-xxxx", JobState.CANCELLED, "by user")
    await store.create("kept-xxxxxxxx", SPEC, "r")
    full = on_disk(path)
    clock.advance(days=8)
    assert len(await store.forget(clock() - timedelta(days=7))) == 300
    assert on_disk(path) < full / 10
    assert [j.id for j in await store.list(10)] == ["kept-xxxxxxxx"]


def on_disk(path) -> int:
    """The store's file and its write-ahead log."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def test_jobs_of_unfinished_workflows_stay_and_finished_workflows_and_receipts_still_read(tmp_path, clock):
    store = JobStore.open(tmp_path / "jobs.sqlite")
    workflows = WorkflowStore.open(tmp_path / "jobs.sqlite")
    retention = JobRetention(store, workflows, timedelta(days=7).total_seconds(), clock=clock)
    await finished(store, "running-wf-task")
    await finished(store, "finished-wf-task")
    task = WorkflowTask(name="a", instruction_cid="bafy-instruction", spec=SPEC)
    running = await workflows.create("wf-running-xx", [task])
    await workflows.save(running.model_copy(update={
        "state": JobState.RUNNING, "tasks": [task.model_copy(update={"job_id": "running-wf-task"})],
    }))
    done = await workflows.create("wf-finished-x", [task])
    await workflows.save(done.model_copy(update={
        "state": JobState.COMPLETED,
        "tasks": [task.model_copy(update={
            "job_id": "finished-wf-task", "state": JobState.COMPLETED, "result_cid": "bafy-result",
        })],
    }))
    receipt = Receipt(
        ran="bafy-instruction", out=ReceiptOut(result_cid="bafy-result", exit_code=0), verifier="noop",
        verdict="accepted", executors=["node-1"], issuer="requester", issued_at="2026-01-01T00:00:00+00:00",
        job_id="finished-wf-task", pubkey="key", sig="sig",
    )
    await workflows.keep_receipt(receipt)

    clock.advance(days=8)
    assert await retention.sweep() == ["finished-wf-task"]
    assert (await store.get("running-wf-task")).state is JobState.COMPLETED
    workflow = await workflows.get("wf-finished-x")
    assert (workflow.state, workflow.tasks[0].state, workflow.tasks[0].result_cid) == (
        JobState.COMPLETED, JobState.COMPLETED, "bafy-result",
    )
    assert await workflows.receipt("bafy-instruction") == receipt


async def test_a_started_execution_is_running_unless_its_result_came_first():
    store = JobStore.open(None)
    await store.create("job-0-xxxxx", SPEC, "r")
    for execution_id in ("e1", "e2"):
        await store.add_execution("job-0-xxxxx", execution_id, "node-1")
        await store.set_execution_state("job-0-xxxxx", execution_id, ExecutionState.BID_ACCEPTED)
    # e1: the acknowledgement of its acceptance arrives first, as usual.
    await store.apply("job-0-xxxxx", Started("e1"))
    # e2: its result overtook that acknowledgement; the history still shows it ran.
    proposed = ExecutionChange("e2", ExecutionState.RESULT_PROPOSED, fields={"exit_code": 0})
    await store.apply("job-0-xxxxx", Started("e2"), proposed)
    job = await store.apply("job-0-xxxxx", Started("e2"))

    assert [e.state for e in job.executions] == [ExecutionState.RUNNING, ExecutionState.RESULT_PROPOSED]
    e2_history = [ev.execution_state for ev in job.events if ev.execution_id == "e2"]
    assert e2_history == [
        ExecutionState.ASKED_FOR_BID, ExecutionState.BID_ACCEPTED, ExecutionState.RUNNING,
        ExecutionState.RESULT_PROPOSED,
    ]


async def test_a_node_taken_for_lost_after_its_result_came_in_leaves_the_result_alone():
    # The requester decides "lost" on an older read of the job; the node's
    # result proposal may be written in between (seen at 50 nodes: the
    # requester stopped on "cannot go from ResultProposed to Lost").
    store = JobStore.open(None)
    await store.create("job-lost-xxxxx", SPEC, "requester")
    for execution_id in ("running", "proposed"):
        await store.add_execution("job-lost-xxxxx", execution_id, "node-1")
        await store.set_execution_state("job-lost-xxxxx", execution_id, ExecutionState.BID_ACCEPTED)
        await store.set_execution_state("job-lost-xxxxx", execution_id, ExecutionState.RUNNING)
    await store.set_execution_state("job-lost-xxxxx", "proposed", ExecutionState.RESULT_PROPOSED)
    for execution_id in ("running", "proposed"):
        await store.apply("job-lost-xxxxx", LostIfActive(execution_id, "node 1 lost: silent for 30s"))
    job = await store.get("job-lost-xxxxx")
    assert {e.id: e.state for e in job.executions} == {
        "running": ExecutionState.LOST, "proposed": ExecutionState.RESULT_PROPOSED,
    }
