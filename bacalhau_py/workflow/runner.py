"""Running a workflow on the requester: each task is a job, submitted once what it awaits is Completed.

One task per workflow (`_drive`) in the runner's nursery. Its whole state
is the stored `Workflow` (jobs are in the job store), so a requester that
restarts takes each unfinished workflow up where it was (`resume`).
Independent tasks are submitted together, so they run at the same time,
each where the requester's bidding places it. A task whose awaited task
failed fails too, naming it; a task whose instruction has a receipt is
memoized like any job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bacalhau_py.errors import BacalhauError, UserInputError
from bacalhau_py.ipfs.base import IPFSClient
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore.workflows import WorkflowStore
from bacalhau_py.models import Job, JobSpec, JobState, advance_job
from bacalhau_py.models.workflow import Workflow, WorkflowTask
from bacalhau_py.requester.results import ResultFetcher

log = logging.getLogger("bacalhau_py.workflow")

Submit = Callable[..., Awaitable[Job]]
"""`RequesterService.submit`: (spec, instruction CID, *, client_id) -> the job."""


class WorkflowRunner:
    def __init__(
        self, *, store: WorkflowStore, jobs: JobStore, submit: Submit, results: ResultFetcher, ipfs: IPFSClient
    ) -> None:
        self.store = store
        self.jobs = jobs
        self._submit_job = submit
        self.results = results
        self.ipfs = ipfs
        self._nursery: trio.Nursery | None = None
        self._changed: dict[str, trio.Event] = {}

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def resume(self) -> None:
        """Take up the workflows a previous run of this node left unfinished (after the requester's `resume`)."""
        for workflow_id in await self.store.unfinished():
            log.info("workflow %s: taken up again after a restart", workflow_id)
            self._start(workflow_id)

    async def submit(self, tasks: list[WorkflowTask], *, client_id: str | None = None) -> Workflow:
        workflow = await self.store.create(str(uuid.uuid4()), tasks, client_id=client_id)
        self._start(workflow.id)
        return workflow

    async def get(self, workflow_id: str) -> Workflow:
        return await self.store.get(workflow_id)

    async def wait(self, workflow_id: str, timeout: float) -> Workflow:
        """The workflow once it is finished, or as it is after `timeout` seconds."""
        workflow = await self.store.get(workflow_id)
        with trio.move_on_after(timeout):
            while not workflow.state.terminal:
                changed = self._changed.setdefault(workflow.id, trio.Event())
                workflow = await self.store.get(workflow.id)
                if workflow.state.terminal:
                    break
                await changed.wait()
                workflow = await self.store.get(workflow.id)
        return workflow

    def _start(self, workflow_id: str) -> None:
        assert self._nursery is not None, "the workflow runner is not serving"
        self._nursery.start_soon(self._drive, workflow_id)

    async def _drive(self, workflow_id: str) -> None:
        try:
            await self._follow(workflow_id)
        except BacalhauError as error:
            await self._fail(workflow_id, error.message)
        except Exception as error:
            # A bug must not take the node (and every other workflow) down with it.
            log.exception("workflow %s: internal error", workflow_id)
            await self._fail(workflow_id, f"internal error on the requester: {error!r}")

    async def _fail(self, workflow_id: str, message: str) -> None:
        workflow = await self.store.get(workflow_id)
        if not workflow.state.terminal:
            advance_job(workflow.state, JobState.FAILED)
            await self._save(workflow.model_copy(update={"state": JobState.FAILED, "message": message}))

    async def _follow(self, workflow_id: str) -> None:
        while True:
            workflow = await self.store.get(workflow_id)
            if workflow.state.terminal:
                return
            running = [t.job_id for t in workflow.tasks if t.job_id is not None and not t.state.terminal]
            # Taken before the jobs are read, so no change between the read and the wait is missed.
            events = [self.jobs.changed(job_id) for job_id in running]
            updated = await self._step(workflow)
            if updated != workflow:
                workflow = await self._save(updated)
                if workflow.state.terminal:
                    log.info("workflow %s %s", workflow.id, workflow.state.value)
                continue
            await _any(events)

    async def _step(self, workflow: Workflow) -> Workflow:
        """One pass: follow the tasks' jobs, fail what awaits a failure, submit what is ready."""
        tasks = list(workflow.tasks)
        for index, task in enumerate(tasks):
            if task.state.terminal:
                continue
            if task.job_id is not None:
                job = await self.jobs.get(task.job_id)
                tasks[index] = _moved(task, job.state, job.message, result_cid=job.result_cid())
                continue
            awaited = [next(t for t in tasks if t.name == name) for name in sorted(task.awaits())]
            failed = [t for t in awaited if t.state.terminal and t.state is not JobState.COMPLETED]
            if failed:
                cause = failed[0]
                message = f"awaited task {cause.name!r} {cause.state.value}: {cause.message or 'no reason given'}"
                tasks[index] = _moved(task, JobState.FAILED, message)
            elif all(t.state is JobState.COMPLETED for t in awaited):
                tasks[index] = await self._submit(workflow.model_copy(update={"tasks": tasks}), task)
        return workflow.model_copy(update={"tasks": tasks, **_overall(workflow, tasks)})

    async def _submit(self, workflow: Workflow, task: WorkflowTask) -> WorkflowTask:
        try:
            spec = await self._resolve(workflow, task)
            # The workflow's client owns each task's job; the jobs travel unsigned (their specs are the
            # runner's, with awaits resolved, not what the client signed).
            job = await self._submit_job(spec, task.instruction_cid, client_id=workflow.client_id)
        except BacalhauError as error:
            return _moved(task, JobState.FAILED, f"could not start: {error.message}")
        return _moved(task.model_copy(update={"job_id": job.id}), job.state, job.message, result_cid=job.result_cid())

    async def _resolve(self, workflow: Workflow, task: WorkflowTask) -> JobSpec:
        """The task's spec with each promise replaced by the CID it stands for."""
        # A placeholder is a CID no other field can hold (the CID of the
        # promise itself), so replacing its text replaces exactly the promise.
        text = task.spec.model_dump_json()
        for placeholder, promise in task.promises.items():
            awaited = workflow.task(promise.task)
            job = await self.jobs.get(awaited.job_id)
            text = text.replace(placeholder, await self._result(job, promise.path, awaited.name))
        return JobSpec.model_validate_json(text)

    async def _result(self, job: Job, path: str, name: str) -> str:
        cid = job.result_cid()
        if not path and cid is not None and (job.memoized_from is not None or job.spec.publisher == "ipfs"):
            return cid
        folder = await self.results.folder_of(job)
        target = await trio.to_thread.run_sync(_inside, folder, path, name)
        return await self.ipfs.add(target)

    async def _save(self, workflow: Workflow) -> Workflow:
        workflow = await self.store.save(workflow)
        self._changed.pop(workflow.id, trio.Event()).set()
        return workflow


def _inside(folder: Path, path: str, name: str) -> Path:
    root = folder.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.exists():
        raise UserInputError(f"awaited task {name!r} has no {path!r} in its result")
    return target


def _moved(task: WorkflowTask, state: JobState, message: str, **fields) -> WorkflowTask:
    if state is not task.state:
        advance_job(task.state, state)
    return task.model_copy(update={"state": state, "message": message, **fields})


def _overall(workflow: Workflow, tasks: list[WorkflowTask]) -> dict:
    if all(t.state.terminal for t in tasks):
        failed = [t for t in tasks if t.state is not JobState.COMPLETED]
        state = JobState.FAILED if failed else JobState.COMPLETED
        message = f"task {failed[0].name!r} {failed[0].state.value}: {failed[0].message}" if failed else ""
    elif any(t.job_id is not None for t in tasks):
        state, message = JobState.RUNNING, ""
    else:
        state, message = workflow.state, workflow.message
    if state is not workflow.state:
        advance_job(workflow.state, state)
    return {"state": state, "message": message}


async def _any(events: list[trio.Event]) -> None:
    """Return once any of the events is set."""
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event=event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
