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

import outcome
import trio

from bacalhau_py.auth import job_signature
from bacalhau_py.compute.bidding import BidStrategy, Refusal
from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.compute.limits import JobLimits, bytes_written
from bacalhau_py.concurrency import run_all
from bacalhau_py.errors import BacalhauError, NotFound
from bacalhau_py.executor.base import Executor, Mount, PreparedExecution, RunResult, live_log
from bacalhau_py.models import Engine, ExecutionState, JobSpec, advance_execution
from bacalhau_py.models.spec import describe_size
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    BidReply,
    CancelExecution,
    ExecutionUpdate,
    Reveal,
    ResultProposal,
    ResultVerdict,
)
from bacalhau_py.publisher.base import Publisher
from bacalhau_py.results import LOG_STREAMS, commitment, content_hash, encode_log_frame, write_exit_code
from bacalhau_py.storage.base import StorageProvider
from bacalhau_py.transport import delivery
from bacalhau_py.transport.base import Transport
from bacalhau_py.verifier import VERIFIERS
from bacalhau_py import tarstream

log = logging.getLogger("bacalhau_py.compute")

E = ExecutionState

# A bid holds capacity until the requester decides; a requester that never
# answers must not hold it forever.
BID_HOLD_SECONDS = 60.0
# How often a followed log is checked for new output.
LOG_POLL_SECONDS = 0.2
# How long a stopping node tries to tell a requester that it stopped an execution.
STOP_REPORT_TIMEOUT = 2.0
# How often a running job's outputs are measured against its disk quota.
QUOTA_POLL_SECONDS = 1.0
# How long results stay: local-publisher folders here, result pins in IPFS.
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0


@dataclass
class _Execution:
    """One execution on this node, from its bid until it ends (then it leaves memory)."""

    requester_id: str
    job_id: str
    spec: JobSpec
    bid_deadline: float
    state: ExecutionState = E.ASKED_FOR_BID
    """Changed only by `advance`, through the one transition table."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    """Cancels its `_run` task (which then ends it as Cancelled)."""
    result_hash: str | None = None
    salt: str | None = None
    proposal: ResultProposal | None = None
    """Kept so that a requester that restarted can ask for it again."""
    stop_reason: str | None = None
    """Set when this node stops the execution itself (shutting down): reported to the requester."""
    done: trio.Event = field(default_factory=trio.Event)
    """Set when its `_run` task has ended (container removed), or when it ends unrun."""
    client_id: str = ""
    image_id: str | None = None
    """docker: the image that runs, as checked against the admission policy."""
    partition_index: int = 0

    def advance(self, state: ExecutionState) -> None:
        self.state = advance_execution(self.state, state)


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
        limits: JobLimits = JobLimits(),
        retention: float = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self.transport = transport
        self.work_dir = work_dir
        self.strategy = strategy
        self.capacity = capacity
        self.executors = executors
        self.storages = storages
        self.publishers = publishers
        self.bad_actor = bad_actor
        self.limits = limits
        self.retention = retention
        self._executions: dict[str, _Execution] = {}
        """Unfinished executions only: an execution leaves when it ends (`_end`)."""
        self._local_results: dict[str, tuple[str, Path, float]] = {}
        """Execution ID -> (requester ID, result folder, end time) of ended executions whose
        results the local publisher serves from this node (until the retention)."""
        self._log_readers: dict[str, int] = {}
        """Execution ID -> how many `logs -f` streams read its folder: it stays until they end."""
        self._nursery: trio.Nursery | None = None
        self._stopping: str | None = None

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # Whatever a previous run of this node left (it crashed): no
        # execution of it runs here any more.
        await trio.to_thread.run_sync(shutil.rmtree, self.work_dir / "executions", True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(5)
                self._release_stale_bids()
                await self._expire_local_results()

    # -- messages from requesters ---------------------------------------------

    async def on_ask_bid(self, sender: str, message: AskBid) -> BidReply:
        if message.execution_id in self._executions:
            return BidReply(execution_id=message.execution_id, accepted=True)
        if self._stopping is not None:
            return BidReply(execution_id=message.execution_id, accepted=False, reason=self._stopping)
        forged = job_signature.refusal(message)
        if forged is not None:
            log.warning("refused job %s from requester %s: %s", message.job_id, sender, forged)
            return BidReply(execution_id=message.execution_id, accepted=False, reason=forged)
        refusal = await trio.to_thread.run_sync(self.limits.refusal, message.spec, self.work_dir)
        refusal = refusal or await self.strategy.refusal(message.spec, message.client_id)
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
            client_id=message.client_id,
        )
        return BidReply(execution_id=message.execution_id, accepted=True)

    async def on_bid_decision(self, sender: str, message: BidDecision) -> Ack:
        execution = self._own(sender, message.execution_id)
        if execution.state is not E.ASKED_FOR_BID:
            # A repeated acceptance (the requester retried): already under way.
            if message.accepted:
                return Ack()
            return Ack(ok=False, message=f"execution {message.execution_id} is already {execution.state.value}")
        if not message.accepted:
            self._end(message.execution_id, E.BID_REJECTED)
            return Ack()
        if self._stopping is not None:
            self._end(message.execution_id, E.CANCELLED)
            return Ack(ok=False, message=self._stopping)
        execution.partition_index = message.partition_index
        execution.advance(E.BID_ACCEPTED)
        # Running from now on (inputs are fetched first): this acknowledgement
        # tells the requester so, instead of a report of its own (a round trip
        # on every job's critical path).
        execution.advance(E.RUNNING)
        assert self._nursery is not None
        self._nursery.start_soon(self._run, message.execution_id, execution)
        return Ack()

    async def on_cancel(self, sender: str, message: CancelExecution) -> Ack:
        execution = self._executions.get(message.execution_id)
        if execution is None or execution.requester_id != sender:
            return Ack(ok=False, message=f"no execution {message.execution_id} here")
        if execution.state.active:
            execution.scope.cancel()  # its `_run` task ends it
        else:
            if message.reason:
                log.info("execution %s stopped by its requester: %s", message.execution_id, message.reason)
            self._end(message.execution_id, E.CANCELLED)
        return Ack()

    async def on_result_verdict(self, sender: str, message: ResultVerdict) -> Ack:
        execution = self._own(sender, message.execution_id)
        if execution.state is not E.RESULT_PROPOSED:
            return Ack(ok=False, message=f"execution {message.execution_id} proposed no result")
        self._end(message.execution_id, E.RESULT_ACCEPTED if message.accepted else E.RESULT_REJECTED)
        return Ack()

    async def on_status_request(self, sender: str, execution_id: str) -> ResultProposal | ExecutionUpdate | Ack:
        execution = self._executions.get(execution_id)
        if execution is None or execution.requester_id != sender:
            return Ack(ok=False, message=f"this node does not know execution {execution_id}")
        if execution.state is E.RESULT_PROPOSED:
            return execution.proposal
        if execution.state.active:
            return ExecutionUpdate(job_id=execution.job_id, execution_id=execution_id, state=E.RUNNING)
        return Ack(ok=False, message=f"execution {execution_id} has not started on this node")

    async def on_reveal_request(self, sender: str, execution_id: str) -> Reveal | Ack:
        execution = self._own(sender, execution_id)
        if execution.state is not E.RESULT_PROPOSED or execution.result_hash is None or execution.salt is None:
            return Ack(ok=False, message=f"execution {execution_id} has no result yet")
        return Reveal(execution_id=execution_id, result_hash=execution.result_hash, salt=execution.salt)

    async def result_stream(self, sender: str, execution_id: str) -> AsyncIterator[bytes]:
        """The result folder as a tar stream (for the local publisher)."""
        requester_id, result_dir, _ = self._local_results.get(execution_id, (None, None, None))
        execution = self._executions.get(execution_id)
        if execution is not None and execution.state is E.RESULT_PROPOSED:
            requester_id, result_dir = execution.requester_id, self._result_dir(execution_id)
        if result_dir is None or requester_id != sender:
            raise NotFound(f"execution {execution_id} has no result on this node")
        async for chunk in tarstream.stream_folder(result_dir):
            yield chunk

    async def log_stream(self, sender: str, execution_id: str) -> AsyncIterator[bytes]:
        """stdout and stderr as framed chunks while the execution runs, to its end.

        Executors write the files as the program runs (docker into `live_log`
        until the final copy); what was sent is always a prefix of the final
        file, so one offset per stream carries across that switch.
        """
        execution = self._own(sender, execution_id)
        self._log_readers[execution_id] = self._log_readers.get(execution_id, 0) + 1
        try:
            async for frame in self._log_frames(execution_id, execution):
                yield frame
        finally:
            readers = self._log_readers.pop(execution_id) - 1
            if readers:
                self._log_readers[execution_id] = readers
            with trio.CancelScope(shield=True):
                await self._dispose(execution_id)

    async def _log_frames(self, execution_id: str, execution: _Execution) -> AsyncIterator[bytes]:
        result_dir = self._result_dir(execution_id)
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
            if execution.state.active:
                execution.stop_reason = reason
                execution.scope.cancel()
                stopped.append(execution.done)
        for done in stopped:
            await done.wait()

    # -- running ---------------------------------------------------------------

    async def _run(self, execution_id: str, execution: _Execution) -> None:
        try:
            # The executor's cleanup (a container's removal) goes on here while
            # the result is proposed; the execution is done once it ends.
            async with trio.open_nursery() as cleanup:
                await self._run_once(execution_id, execution, cleanup)
        finally:
            execution.done.set()
            with trio.CancelScope(shield=True):
                await self._dispose(execution_id)

    async def _dispose(self, execution_id: str) -> None:
        """Remove the execution's folder once nothing needs it any more, and a finished run's inputs at once."""
        folder = self.work_dir / "executions" / execution_id
        if not self._folder_needed(execution_id):
            await trio.to_thread.run_sync(shutil.rmtree, folder, True)
        elif execution_id not in self._executions or self._executions[execution_id].done.is_set():
            await trio.to_thread.run_sync(shutil.rmtree, folder / "inputs", True)

    def _folder_needed(self, execution_id: str) -> bool:
        """While it runs, while `logs -f` reads it, and while it holds a result the local publisher serves.

        Results published to IPFS (and failed runs' logs) live there: their folder is not needed.
        """
        if self._log_readers.get(execution_id) or execution_id in self._local_results:
            return True
        execution = self._executions.get(execution_id)
        if execution is None:
            return False
        return not execution.done.is_set() or (
            execution.state is E.RESULT_PROPOSED and execution.spec.publisher == "local"
        )

    async def _run_once(self, execution_id: str, execution: _Execution, cleanup: trio.Nursery) -> None:
        spec = execution.spec
        folder = self.work_dir / "executions" / execution_id
        result_dir = self._result_dir(execution_id)
        proposal = None
        failure = None
        logs_cid = None
        with execution.scope:
            try:
                prepared = await self._prepare(execution_id, execution, folder, result_dir, cleanup)
                with trio.move_on_after(spec.timeout) as deadline:
                    result = await self._execute(prepared)
                if deadline.cancelled_caught:
                    raise BacalhauError(f"timed out after {spec.timeout:g}s")
                write_exit_code(result_dir, result.exit_code)
                if self.bad_actor:
                    _falsify(result_dir)
                cid = await self.publishers[spec.publisher].publish(execution_id, result_dir)
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
                    image_id=execution.image_id,
                )
            except BacalhauError as error:
                failure = error.message
            except Exception as error:
                # A bug must fail this execution visibly, not stop the node.
                log.exception("execution %s crashed", execution_id)
                failure = f"internal error on the compute node: {error!r}"
            finally:
                # Its inputs are removed once the result is proposed (`_dispose`).
                self.capacity.release(execution_id)
            if failure is not None:
                logs_cid = await self._publish_logs(execution_id, folder)
        if execution.scope.cancelled_caught:
            log.info("execution %s cancelled%s", execution_id, f": {execution.stop_reason}" if execution.stop_reason else "")
            self._end(execution_id, E.CANCELLED)
            if execution.stop_reason is not None:
                # Briefly: a requester that is stopping too will not answer.
                await self._update(
                    execution_id, execution, E.FAILED, execution.stop_reason, once=STOP_REPORT_TIMEOUT
                )
            return
        if failure is not None:
            log.info("execution %s failed: %s", execution_id, failure)
            self._end(execution_id, E.FAILED)
            await self._update(execution_id, execution, E.FAILED, failure, logs_cid=logs_cid)
            return
        execution.proposal = proposal
        execution.advance(E.RESULT_PROPOSED)
        reply = await self._send(execution, proposal)
        if isinstance(reply, Ack) and not reply.ok and execution.state is E.RESULT_PROPOSED:
            # The requester gave this execution up (e.g. it took this node for lost).
            log.info("execution %s: result refused by the requester: %s", execution_id, reply.message)
            self._end(execution_id, E.RESULT_REJECTED)

    async def _prepare(
        self, execution_id: str, execution: _Execution, folder: Path, result_dir: Path, cleanup: trio.Nursery
    ) -> PreparedExecution:
        spec = execution.spec
        image = None
        if spec.task.engine is Engine.DOCKER:
            image = await self.executors[Engine.DOCKER.value].prepare_image(spec.task.image)
            execution.image_id = image.id
        # Again, before any data is touched: a tag may point elsewhere than when
        # the node bid, and an archive's image is known only once it is loaded.
        # The container then runs this very ID.
        refusal = await self.strategy.admission(spec, execution.client_id, image)
        if refusal is not None:
            raise BacalhauError(f"refused before running: {refusal.reason}")
        inputs_dir = folder / "inputs"
        await trio.to_thread.run_sync(lambda: inputs_dir.mkdir(parents=True, exist_ok=True))
        mounts: list[Mount | None] = [None] * len(spec.inputs)
        module: list[Path] = []

        async def fetch(index: int) -> None:
            source = spec.inputs[index]
            dest = inputs_dir / str(index)
            await trio.to_thread.run_sync(dest.mkdir)
            path = await self.storages[source.source].prepare(source, dest)
            if path.is_relative_to(dest):
                # Only fetched copies: an allow-listed local path is the owner's own data.
                await trio.to_thread.run_sync(_normalise_times, path)
            mounts[index] = Mount(source=path, target=source.path, read_only=True)

        async def fetch_module() -> None:
            dest = inputs_dir / "module"
            await trio.to_thread.run_sync(dest.mkdir)
            module.append(await self.storages[spec.task.module.source].prepare(spec.task.module, dest))

        imports: list[Path | None] = [None] * len(spec.task.imports)

        async def fetch_import(index: int) -> None:
            dest = inputs_dir / f"import-{index}"
            await trio.to_thread.run_sync(dest.mkdir)
            source = spec.task.imports[index].module
            imports[index] = await self.storages[source.source].prepare(source, dest)

        fetches = [partial(fetch, index) for index in range(len(spec.inputs))]
        if spec.task.module is not None:
            fetches.append(fetch_module)
        fetches += [partial(fetch_import, index) for index in range(len(imports))]
        await run_all(fetches)

        outputs = [Mount(source=result_dir / o.name, target=o.path, read_only=False) for o in spec.outputs]

        def make_output_folders() -> None:
            for mount in outputs:
                mount.source.mkdir(parents=True, exist_ok=True)

        await trio.to_thread.run_sync(make_output_folders)
        return PreparedExecution(
            execution_id=execution_id,
            job_id=execution.job_id,
            spec=self.limits.applied(spec),
            inputs=[m for m in mounts if m is not None],
            outputs=outputs,
            partition_index=execution.partition_index,
            result_dir=result_dir,
            module=module[0] if module else None,
            imports=tuple(path for path in imports if path is not None),
            image_id=execution.image_id,
            cleanup=cleanup,
        )

    async def _execute(self, prepared: PreparedExecution) -> RunResult:
        """Run the executor; stop it and fail if its outputs pass the job's disk quota."""
        executor = self.executors[prepared.spec.task.engine.value]
        quota = prepared.spec.resources.disk
        if quota is None:
            return await executor.run(prepared)
        outputs = [mount.source for mount in prepared.outputs]
        over = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal over
                while await trio.to_thread.run_sync(bytes_written, outputs) <= quota:
                    await trio.sleep(QUOTA_POLL_SECONDS)
                over = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            # Captured: the executor's own error must not reach the caller
            # wrapped in an exception group by this nursery.
            ran = await outcome.acapture(executor.run, prepared)
            nursery.cancel_scope.cancel()
        # Measured again: a run may write more than the quota between two polls.
        if over or await trio.to_thread.run_sync(bytes_written, outputs) > quota:
            raise BacalhauError(
                f"more than {quota} bytes written to the outputs ({describe_size(quota)}, the job's disk limit)"
            )
        return ran.unwrap()

    async def _publish_logs(self, execution_id: str, folder: Path) -> str | None:
        """A failed run's stdout and stderr (as far as they got) to IPFS, so `logs` can show them."""
        result_dir = folder / "result"
        logs = folder / "logs"

        def collect() -> bool:
            logs.mkdir(exist_ok=True)
            found = False
            for name in LOG_STREAMS:
                # The live copy is all there is of a run stopped midway (a timeout).
                for source in (result_dir / name, live_log(result_dir, name)):
                    if source.is_file():
                        shutil.copyfile(source, logs / name)
                        found = True
                        break
            return found

        try:
            if not await trio.to_thread.run_sync(collect):
                return None
            return await self.publishers["ipfs"].publish(execution_id, logs)
        except (BacalhauError, OSError) as error:
            log.warning("execution %s: could not publish the logs of the failed run: %s", execution_id, error)
            return None

    async def _update(
        self,
        execution_id: str,
        execution: _Execution,
        state: ExecutionState,
        message: str = "",
        *,
        once: float | None = None,
        logs_cid: str | None = None,
    ) -> None:
        update = ExecutionUpdate(
            job_id=execution.job_id, execution_id=execution_id, state=state, message=message, logs_cid=logs_cid
        )
        await self._send(execution, update, once=once)

    async def _send(self, execution: _Execution, message, *, once: float | None = None):
        """The requester's reply, sent again until acknowledged (transport/delivery.py); None if it could
        not be reached. `once`: a single attempt, with this timeout."""
        try:
            timeouts = delivery.ATTEMPT_TIMEOUTS if once is None else (once,)
            return await delivery.deliver(self.transport, execution.requester_id, message, timeouts=timeouts)
        except BacalhauError as error:
            # The requester's job timeout fails the job if it never hears back.
            log.warning("could not tell requester %s: %s", execution.requester_id, error)
            return None

    # -- bookkeeping ----------------------------------------------------------

    def _own(self, sender: str, execution_id: str) -> _Execution:
        execution = self._executions.get(execution_id)
        if execution is None or execution.requester_id != sender:
            raise NotFound(f"no execution {execution_id} for requester {sender} on this node")
        return execution

    def _result_dir(self, execution_id: str) -> Path:
        return self.work_dir / "executions" / execution_id / "result"

    def _end(self, execution_id: str, state: ExecutionState) -> None:
        """Move the execution to a terminal `state`: it releases its capacity and leaves memory."""
        execution = self._executions.pop(execution_id)
        ran = execution.state is not E.ASKED_FOR_BID
        execution.advance(state)
        assert state.terminal, f"_end needs a terminal state, not {state.value}"
        self.capacity.release(execution_id)
        if state in (E.RESULT_ACCEPTED, E.RESULT_REJECTED) and execution.spec.publisher == "local":
            # The requester fetches this result from here when a user asks for it
            # (a rejected one too: `get` shows every execution's own results).
            self._local_results[execution_id] = (
                execution.requester_id, self._result_dir(execution_id), trio.current_time()
            )
        if not ran:
            execution.done.set()  # ended before it ran: nobody may wait on it

    async def _expire_local_results(self) -> None:
        """Local-publisher results older than the retention: their folders go."""
        cutoff = trio.current_time() - self.retention
        for execution_id, (_, _, ended_at) in list(self._local_results.items()):
            if ended_at < cutoff:
                del self._local_results[execution_id]
                await self._dispose(execution_id)

    def _release_stale_bids(self) -> None:
        now = trio.current_time()
        for execution_id, execution in list(self._executions.items()):
            if execution.state is E.ASKED_FOR_BID and execution.bid_deadline < now:
                self._end(execution_id, E.CANCELLED)

    def running(self) -> int:
        return sum(1 for e in self._executions.values() if e.state.active)

    def state_of(self, execution_id: str) -> ExecutionState | None:
        """The state of an unfinished execution here; None once it ended (or was never here)."""
        execution = self._executions.get(execution_id)
        return execution.state if execution is not None else None


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
