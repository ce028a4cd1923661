"""The compute role: bid for jobs, run accepted executions, propose results.

All execution tasks live in the service's own nursery, so stopping the node
cancels them, and cancelling an execution stops its container or wasm
instance before the task ends.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from bacalhau_py.compute.bidding import BidStrategy, Refusal
from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.concurrency import run_all
from bacalhau_py.errors import BacalhauError, NotFound
from bacalhau_py.executor.base import Executor, Mount, PreparedExecution, live_log
from bacalhau_py.models import ExecutionState, JobSpec
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    BidReply,
    CancelExecution,
    ExecutionUpdate,
    Reveal,
    ResultProposal,
)
from bacalhau_py.publisher.base import Publisher
from bacalhau_py.results import LOG_STREAMS, commitment, content_hash, encode_log_frame, write_exit_code
from bacalhau_py.storage.base import StorageProvider
from bacalhau_py.transport.base import Transport
from bacalhau_py.verifier import VERIFIERS
from bacalhau_py import tarstream

log = logging.getLogger("bacalhau_py.compute")

# A bid holds capacity until the requester decides; a requester that never
# answers must not hold it forever.
BID_HOLD_SECONDS = 60.0
# How often a followed log is checked for new output.
LOG_POLL_SECONDS = 0.2
# How long a stopping node tries to tell a requester that it stopped an execution.
STOP_REPORT_TIMEOUT = 2.0


@dataclass
class _Execution:
    requester_id: str
    job_id: str
    spec: JobSpec
    bid_deadline: float
    scope: trio.CancelScope | None = None
    result_dir: Path | None = None
    result_hash: str | None = None
    salt: str | None = None
    proposal: ResultProposal | None = None
    """Kept so that a requester that restarted can ask for it again."""
    stop_reason: str | None = None
    """Set when this node stops the execution itself (shutting down): reported to the requester."""
    done: trio.Event = field(default_factory=trio.Event)
    """Set when its `_run` task has ended (container removed), or when it is dropped unrun."""
    partition_index: int = 0


class ComputeService:
    def __init__(
        self,
        *,
        transport: Transport,
        work_dir: Path,
        strategy: BidStrategy,
        capacity: CapacityTracker,
        executors: dict[str, Executor],
        storages: dict[str, StorageProvider],
        publishers: dict[str, Publisher],
        bad_actor: bool = False,
    ) -> None:
        self.transport = transport
        self.work_dir = work_dir
        self.strategy = strategy
        self.capacity = capacity
        self.executors = executors
        self.storages = storages
        self.publishers = publishers
        self.bad_actor = bad_actor
        self._executions: dict[str, _Execution] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping: str | None = None

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(5)
                self._release_stale_bids()

    # -- messages from requesters ---------------------------------------------

    async def on_ask_bid(self, sender: str, message: AskBid) -> BidReply:
        if message.execution_id in self._executions:
            return BidReply(execution_id=message.execution_id, accepted=True)
        if self._stopping is not None:
            return BidReply(execution_id=message.execution_id, accepted=False, reason=self._stopping)
        refusal = await self.strategy.refusal(message.spec)
        if refusal is None:
            reason = self.capacity.reserve(message.execution_id, Capacity.needed_by(message.spec.resources))
            # Another bid may have taken the capacity while the strategy awaited.
            refusal = Refusal(reason, retry=True) if reason else None
        if refusal is not None:
            return BidReply(
                execution_id=message.execution_id, accepted=False, reason=refusal.reason, retry=refusal.retry
            )
        self._executions[message.execution_id] = _Execution(
            requester_id=sender,
            job_id=message.job_id,
            spec=message.spec,
            bid_deadline=trio.current_time() + BID_HOLD_SECONDS,
        )
        return BidReply(execution_id=message.execution_id, accepted=True)

    async def on_bid_decision(self, sender: str, message: BidDecision) -> Ack:
        execution = self._own(sender, message.execution_id)
        if not message.accepted:
            self._forget(message.execution_id)
            return Ack()
        if self._stopping is not None:
            self._forget(message.execution_id)
            return Ack(ok=False, message=self._stopping)
        if execution.scope is None:
            execution.partition_index = message.partition_index
            execution.scope = trio.CancelScope()
            assert self._nursery is not None
            self._nursery.start_soon(self._run, message.execution_id, execution)
        return Ack()

    async def on_cancel(self, sender: str, message: CancelExecution) -> Ack:
        execution = self._executions.get(message.execution_id)
        if execution is None or execution.requester_id != sender:
            return Ack(ok=False, message=f"no execution {message.execution_id} here")
        if execution.scope is not None:
            execution.scope.cancel()
        else:
            self._forget(message.execution_id)
        return Ack()

    async def on_status_request(self, sender: str, execution_id: str) -> ResultProposal | ExecutionUpdate | Ack:
        execution = self._executions.get(execution_id)
        if execution is None or execution.requester_id != sender:
            return Ack(ok=False, message=f"this node does not know execution {execution_id}")
        if execution.proposal is not None:
            return execution.proposal
        if execution.scope is not None and not execution.done.is_set():
            return ExecutionUpdate(job_id=execution.job_id, execution_id=execution_id, state=ExecutionState.RUNNING)
        return Ack(ok=False, message=f"execution {execution_id} did not finish on this node")

    async def on_reveal_request(self, sender: str, execution_id: str) -> Reveal | Ack:
        execution = self._own(sender, execution_id)
        if execution.result_hash is None or execution.salt is None:
            return Ack(ok=False, message=f"execution {execution_id} has no result yet")
        return Reveal(execution_id=execution_id, result_hash=execution.result_hash, salt=execution.salt)

    async def result_stream(self, sender: str, execution_id: str) -> AsyncIterator[bytes]:
        """The result folder as a tar stream (for the local publisher)."""
        execution = self._own(sender, execution_id)
        if execution.result_dir is None:
            raise NotFound(f"execution {execution_id} has no result on this node")
        async for chunk in tarstream.stream_folder(execution.result_dir):
            yield chunk

    async def log_stream(self, sender: str, execution_id: str) -> AsyncIterator[bytes]:
        """stdout and stderr as framed chunks while the execution runs, to its end.

        Executors write the files as the program runs (docker into `live_log`
        until the final copy); what was sent is always a prefix of the final
        file, so one offset per stream carries across that switch.
        """
        execution = self._own(sender, execution_id)
        result_dir = self.work_dir / "executions" / execution_id / "result"
        offsets = dict.fromkeys(LOG_STREAMS, 0)
        while True:
            finished = execution.done.is_set()
            sent = False
            for name in LOG_STREAMS:
                live = live_log(result_dir, name)
                path = live if not finished and live.exists() else result_dir / name
                chunk = await trio.to_thread.run_sync(_read_from, path, offsets[name])
                if chunk:
                    offsets[name] += len(chunk)
                    sent = True
                    yield encode_log_frame(name, chunk)
            if finished and not sent:
                return
            if not finished and not sent:
                with trio.move_on_after(LOG_POLL_SECONDS):
                    await execution.done.wait()

    async def stop_all(self, reason: str) -> None:
        """Stop taking work, stop every running execution and tell its requester why.

        Called by a node that is shutting down, while its transport still
        works: the requesters fail those jobs at once instead of waiting for
        their timeouts. Returns when every stopped execution's container is gone.
        """
        self._stopping = reason
        stopped = []
        for execution in list(self._executions.values()):
            if execution.scope is not None and not execution.done.is_set():
                execution.stop_reason = reason
                execution.scope.cancel()
                stopped.append(execution.done)
        for done in stopped:
            await done.wait()

    # -- running ---------------------------------------------------------------

    async def _run(self, execution_id: str, execution: _Execution) -> None:
        try:
            await self._run_once(execution_id, execution)
        finally:
            execution.done.set()

    async def _run_once(self, execution_id: str, execution: _Execution) -> None:
        spec = execution.spec
        folder = self.work_dir / "executions" / execution_id
        result_dir = folder / "result"
        proposal = None
        failure = None
        assert execution.scope is not None and self._nursery is not None
        # Off the critical path: inputs are fetched while the requester hears
        # that the run started; every later report waits for this one first.
        running_reported = trio.Event()

        async def report_running() -> None:
            try:
                await self._update(execution_id, execution, ExecutionState.RUNNING)
            finally:
                running_reported.set()

        self._nursery.start_soon(report_running)
        with execution.scope:
            try:
                prepared = await self._prepare(execution_id, execution, folder, result_dir)
                with trio.move_on_after(spec.timeout) as deadline:
                    result = await self.executors[spec.task.engine.value].run(prepared)
                if deadline.cancelled_caught:
                    raise BacalhauError(f"timed out after {spec.timeout:g}s")
                write_exit_code(result_dir, result.exit_code)
                if self.bad_actor:
                    _falsify(result_dir)
                cid = await self.publishers[spec.publisher].publish(execution_id, result_dir)
                execution.result_dir = result_dir
                if VERIFIERS.load(spec.verifier).needs_result_hashes:
                    execution.result_hash = await trio.to_thread.run_sync(content_hash, result_dir)
                    execution.salt = secrets.token_hex(16)
                proposal = ResultProposal(
                    job_id=execution.job_id,
                    execution_id=execution_id,
                    exit_code=result.exit_code,
                    result_cid=cid,
                    publisher=spec.publisher,
                    commitment=commitment(execution_id, execution.salt, execution.result_hash)
                    if execution.result_hash
                    else None,
                )
            except BacalhauError as error:
                failure = error.message
            except Exception as error:
                # A bug must fail this execution visibly, not stop the node.
                log.exception("execution %s crashed", execution_id)
                failure = f"internal error on the compute node: {error!r}"
            finally:
                self.capacity.release(execution_id)
                await trio.to_thread.run_sync(shutil.rmtree, folder / "inputs", True)
        with trio.CancelScope(shield=True):
            await running_reported.wait()
        if execution.scope.cancelled_caught:
            log.info("execution %s cancelled%s", execution_id, f": {execution.stop_reason}" if execution.stop_reason else "")
            if execution.stop_reason is not None:
                # Briefly: a requester that is stopping too will not answer.
                await self._update(
                    execution_id, execution, ExecutionState.FAILED, execution.stop_reason, timeout=STOP_REPORT_TIMEOUT
                )
            self._forget(execution_id)
            return
        if failure is not None:
            log.info("execution %s failed: %s", execution_id, failure)
            await self._update(execution_id, execution, ExecutionState.FAILED, failure)
            self._forget(execution_id)
            return
        execution.proposal = proposal
        await self._send(execution, proposal)

    async def _prepare(
        self, execution_id: str, execution: _Execution, folder: Path, result_dir: Path
    ) -> PreparedExecution:
        spec = execution.spec
        inputs_dir = folder / "inputs"
        await trio.to_thread.run_sync(lambda: inputs_dir.mkdir(parents=True, exist_ok=True))
        mounts: list[Mount | None] = [None] * len(spec.inputs)
        module: list[Path] = []

        async def fetch(index: int) -> None:
            source = spec.inputs[index]
            dest = inputs_dir / str(index)
            await trio.to_thread.run_sync(dest.mkdir)
            path = await self.storages[source.source].prepare(source, dest)
            await trio.to_thread.run_sync(_normalise_times, path)
            mounts[index] = Mount(source=path, target=source.path, read_only=True)

        async def fetch_module() -> None:
            dest = inputs_dir / "module"
            await trio.to_thread.run_sync(dest.mkdir)
            module.append(await self.storages[spec.task.module.source].prepare(spec.task.module, dest))

        fetches = [partial(fetch, index) for index in range(len(spec.inputs))]
        if spec.task.module is not None:
            fetches.append(fetch_module)
        await run_all(fetches)

        outputs = [Mount(source=result_dir / o.name, target=o.path, read_only=False) for o in spec.outputs]

        def make_output_folders() -> None:
            for mount in outputs:
                mount.source.mkdir(parents=True, exist_ok=True)

        await trio.to_thread.run_sync(make_output_folders)
        return PreparedExecution(
            execution_id=execution_id,
            job_id=execution.job_id,
            spec=spec,
            inputs=[m for m in mounts if m is not None],
            outputs=outputs,
            partition_index=execution.partition_index,
            result_dir=result_dir,
            module=module[0] if module else None,
        )

    async def _update(
        self,
        execution_id: str,
        execution: _Execution,
        state: ExecutionState,
        message: str = "",
        *,
        timeout: float = 10.0,
    ) -> None:
        await self._send(
            execution,
            ExecutionUpdate(job_id=execution.job_id, execution_id=execution_id, state=state, message=message),
            timeout=timeout,
        )

    async def _send(self, execution: _Execution, message, *, timeout: float = 10.0) -> None:
        try:
            await self.transport.request(execution.requester_id, message, timeout=timeout)
        except BacalhauError as error:
            # The requester's job timeout fails the job if it never hears back.
            log.warning("could not tell requester %s: %s", execution.requester_id, error)

    # -- bookkeeping ----------------------------------------------------------

    def _own(self, sender: str, execution_id: str) -> _Execution:
        execution = self._executions.get(execution_id)
        if execution is None or execution.requester_id != sender:
            raise NotFound(f"no execution {execution_id} for requester {sender} on this node")
        return execution

    def _forget(self, execution_id: str) -> None:
        self.capacity.release(execution_id)
        execution = self._executions.get(execution_id)
        # Keep finished executions with results: the requester may still ask
        # for their reveal or (local publisher) their result folder.
        if execution is None or execution.result_dir is None:
            self._executions.pop(execution_id, None)
        if execution is not None and execution.scope is None:
            execution.done.set()  # dropped before it ran: nobody may wait on it

    def _release_stale_bids(self) -> None:
        now = trio.current_time()
        for execution_id, execution in list(self._executions.items()):
            if execution.scope is None and execution.bid_deadline < now:
                self._forget(execution_id)

    def running(self) -> int:
        return sum(1 for e in self._executions.values() if e.scope is not None and e.result_dir is None)


# Inputs are fetched at different times on different nodes; a program that
# looks at mtimes must still produce the same result everywhere.
INPUT_MTIME = 0


def _normalise_times(path: Path) -> None:
    paths = [path]
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            paths += [Path(dirpath) / name for name in (*dirnames, *filenames)]
    for each in paths:
        os.utime(each, (INPUT_MTIME, INPUT_MTIME), follow_symlinks=False)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(1 << 20)
    except FileNotFoundError:
        return b""


def _falsify(result_dir: Path) -> None:
    """A bad compute actor (devstack --bad-compute-actors) lies about its result."""
    with (result_dir / "stdout").open("ab") as handle:
        handle.write(b"\nforged by a bad compute actor " + secrets.token_hex(4).encode() + b"\n")
