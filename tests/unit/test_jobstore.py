import pytest
import trio

from bacalhau_py.errors import NotFound, UserInputError
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore.sqlite import ExecutionChange, Started
from bacalhau_py.models import ExecutionState, JobState, Task
from bacalhau_py.models.spec import JobSpec

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
