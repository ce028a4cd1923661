"""The requester role: take a job, find compute nodes by bidding, verify and record results.

One task per job (`_drive`) lives in the service's nursery: bid, wait for
results, reveal, verify. Compute nodes report through direct messages, which
update the job store; `_drive` waits on the store's change events.

A compute node that stops announcing itself is lost (`NodeDirectory`): its
running executions become Lost, and `_drive` bids for a replacement of each,
within the job's retry budget (`JobSpec.retries`). So does an execution whose
node cannot be told that its bid was accepted (unreachable), or no longer
holds its bid; it never ran, and costs no retry (`_reschedule`).

Bid acceptances and verdicts are sent again until acknowledged
(transport/delivery.py); compute nodes do the same with their reports, and
a repeat is acknowledged again without a second transition.
"""

from __future__ import annotations

import logging
import math
from functools import partial
import uuid
from dataclasses import dataclass
from pathlib import Path

import trio

from bacalhau_py.directory import RESTARTED, NodeDirectory
from bacalhau_py.errors import BacalhauError, InvalidMessage, NotFound, TransportError
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore.sqlite import (
    ExecutionChange, JobChange, LostIfActive, Memoized, NewExecution, Reported, Started,
)
from bacalhau_py.models import Execution, ExecutionState, Job, JobSpec, JobState
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    BidReply,
    CancelExecution,
    ExecutionStatusRequest,
    ExecutionUpdate,
    Reveal,
    ResultProposal,
    RevealRequest,
    ResultVerdict,
)
from bacalhau_py.models.signature import SignedRequest
from bacalhau_py.requester import selection
from bacalhau_py.requester.results import ResultFetcher
from bacalhau_py.results import commitment
from bacalhau_py.transport import delivery
from bacalhau_py.transport.base import Transport
from bacalhau_py.verifier import VERIFIERS
from bacalhau_py.verifier.base import Proposal
from bacalhau_py.workflow.instruction import instruction_cid, memoized_by_default
from bacalhau_py.workflow.memo import ReceiptBook
from bacalhau_py.workflow.receipts import receipt_cid, serves

log = logging.getLogger("bacalhau_py.requester")

E = ExecutionState

# A job whose nodes are all busy is asked for again after these delays (growing).
QUEUE_RETRY_FIRST = 0.25
QUEUE_RETRY_MAX = 2.0
# Nodes asked for a bid beyond the ones needed, in the first round.
SPARE_BIDDERS = 1
# Jobs in a bid round at the same time, at most. A burst of submissions
# otherwise opened streams to every node for every job at once: the nodes
# thrashed on busy refusals, and streams failed (jobs failed with them).
BIDDING_AT_ONCE = 16
# Rounds of delivery (transport/delivery.py, 23 s each) of a bid acceptance
# to a node still heard from. Two stay within the 60 s a compute node holds
# its bid (compute/service.py BID_HOLD_SECONDS).
ACCEPTANCE_ROUNDS = 2
# How often node liveness is checked, at most (a fraction of the lost-after period).
LIVENESS_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class RequesterTimeouts:
    bid: float = 5.0
    """How long to wait for enough bids."""
    grace: float = 120.0
    """Beyond the job's own timeout: input fetching, publishing, reporting back."""
    acknowledgement: tuple[float, ...] = delivery.ATTEMPT_TIMEOUTS
    """The wait for a compute node's acknowledgement of a bid acceptance or verdict, at each attempt."""


class RequesterService:
    def __init__(
        self,
        *,
        transport: Transport,
        store: JobStore,
        directory: NodeDirectory,
        results: ResultFetcher,
        timeouts: RequesterTimeouts = RequesterTimeouts(),
        receipts: ReceiptBook | None = None,
    ) -> None:
        self.receipts = receipts
        self.transport = transport
        self.store = store
        self.directory = directory
        self.results = results
        self.timeouts = timeouts
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping: str | None = None
        self._to_resume: list[tuple[str, bool]] = []
        """(job ID, reattach) left unfinished by a previous run of this node."""
        self._given_up: dict[str, set[tuple[str, str]]] = {}
        """Lost node -> (job ID, execution ID) it still runs, to stop when it is heard from again."""
        self._bidding = trio.CapacityLimiter(BIDDING_AT_ONCE)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._to_resume = await self._recover_jobs()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            nursery.start_soon(self._check_quiet_executions)
            await self._watch_liveness()

    # -- client side ----------------------------------------------------------

    async def submit(
        self,
        spec: JobSpec,
        instruction: str | None = None,
        *,
        client_id: str | None = None,
        client_request: SignedRequest | None = None,
    ) -> Job:
        """Store and start the job. `instruction` is its instruction CID when it is not the spec's own
        (a workflow task's, whose awaits the spec has resolved)."""
        if self._stopping is not None:
            raise BacalhauError(f"this node is stopping: {self._stopping}")
        job = await self.store.create(
            str(uuid.uuid4()), spec, self.transport.peer_id, instruction_cid=instruction or instruction_cid(spec),
            client_id=client_id, client_request=client_request,
        )
        self._start(job.id)
        return job

    async def resume(self, settle: float) -> None:
        """Take up the jobs a previous run of this node left unfinished.

        Pending jobs are offered again; Running ones are followed again where
        their executions run. Called once the node has joined its peers;
        `settle` gives the rest of the network one announce period to be
        rediscovered first.
        """
        await trio.sleep(settle)
        for job_id, reattach in self._to_resume:
            note = "following its executions again" if reattach else "offering the job again"
            await self.store.note(job_id, f"the requester node restarted: {note}")
            self._start(job_id, reattach=reattach)
        self._to_resume = []

    def _start(self, job_id: str, *, reattach: bool = False) -> None:
        scope = trio.CancelScope()
        self._scopes[job_id] = scope
        assert self._nursery is not None, "requester is not serving"
        self._nursery.start_soon(partial(self._drive, job_id, scope, reattach=reattach))

    async def cancel(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job.state.terminal:
            return job
        scope = self._scopes.pop(job.id, None)
        if scope is not None:
            scope.cancel()
        job = await self.store.set_job_state(job.id, JobState.CANCELLED, "cancelled by the user")
        await self._stop_executions(job, "cancelled by the user")
        return await self.store.get(job.id)

    async def stop_all(self, reason: str) -> None:
        """A stopping node: fail its running jobs and stop their executions on the compute nodes.

        Jobs still Pending stay Pending: nothing runs for them, and they are
        offered again when the node restarts (`resume`).

        Called while the transport still works, so remote containers stop now
        instead of running on for nobody until the job's timeout.
        """
        self._stopping = reason
        for scope in list(self._scopes.values()):
            scope.cancel()
        async with trio.open_nursery() as nursery:
            for job in await self.store.unfinished():
                if job.waiting_to_start():
                    # Nothing runs for it anywhere: it is offered again when the node restarts.
                    nursery.start_soon(self.store.note, job.id, f"{reason}; the job waits for the restart")
                else:
                    nursery.start_soon(self._fail, job.id, reason)

    # -- messages from compute nodes ------------------------------------------

    async def on_execution_update(self, sender: str, message: ExecutionUpdate) -> Ack:
        execution = await self._execution_of(sender, message.job_id, message.execution_id)
        if execution.state.terminal or execution.state is message.state:
            return Ack()
        if message.state not in (E.RUNNING, E.FAILED):
            raise InvalidMessage(f"compute nodes may only report Running or Failed, not {message.state.value}")
        logs = {"logs_cid": message.logs_cid} if message.logs_cid else {}
        change = ExecutionChange(message.execution_id, message.state, message.message, logs)
        # Reported: a repeat may race the first copy (the node did not hear our acknowledgement in time).
        await self.store.apply(message.job_id, Reported(change))
        return Ack()

    async def on_result_proposal(self, sender: str, message: ResultProposal) -> Ack:
        execution = await self._execution_of(sender, message.job_id, message.execution_id)
        if execution.state in (E.RESULT_PROPOSED, E.RESULT_ACCEPTED, E.RESULT_REJECTED):
            # A repeat (the node did not hear our acknowledgement): taken already.
            return Ack()
        if execution.state.terminal:
            return Ack(ok=False, message=f"execution is already {execution.state.value}")
        proposed = ExecutionChange(
            message.execution_id,
            E.RESULT_PROPOSED,
            fields={
                "exit_code": message.exit_code,
                "result_cid": message.result_cid,
                "publisher": message.publisher,
                "commitment": message.commitment,
                "image_id": message.image_id,
            },
        )
        # Started first: the proposal may overtake the acknowledgement that the run started.
        await self.store.apply(message.job_id, Started(message.execution_id), Reported(proposed))
        return Ack()

    async def _execution_of(self, sender: str, job_id: str, execution_id: str):
        job = await self.store.get(job_id)
        for execution in job.executions:
            if execution.id == execution_id:
                if execution.node_id != sender:
                    raise InvalidMessage(f"node {sender} reported on another node's execution")
                return execution
        raise NotFound(f"execution {execution_id} of job {job_id} not found")

    # -- node liveness ----------------------------------------------------------

    async def _watch_liveness(self) -> None:
        period = min(LIVENESS_CHECK_SECONDS, self.directory.lost_after / 3)
        while True:
            await trio.sleep(period)
            lost, back = self.directory.liveness_changes()
            for peer_id, why in lost:
                await self._node_lost(peer_id, why)
            for peer_id in back:
                self._nursery.start_soon(self._node_back, peer_id)

    async def _node_lost(self, peer_id: str, why: str) -> None:
        """Mark the node's running executions Lost; each job's `_drive` reschedules them.

        A restart is noticed at the next check, and the node's new run may
        have taken a job meanwhile: only executions recorded before the
        restart was heard died with the old run.
        """
        reason = f"node {_short(peer_id)} lost: {why}"
        log.warning("%s", reason)
        before = self.directory.restarted_at.get(peer_id) if why == RESTARTED else None
        for job in await self.store.unfinished():
            for execution in job.executions:
                if execution.node_id == peer_id and execution.state.active \
                        and (before is None or execution.created_at < before):
                    await self._give_up(job.id, execution.id, peer_id, reason)

    async def _give_up(self, job_id: str, execution_id: str, peer_id: str, reason: str) -> None:
        """The execution's node is lost: Lost if the execution is still active when written (its result
        may have come in since the job was read); its node is told to stop if it is heard from again."""
        marked = await self.store.apply(job_id, LostIfActive(execution_id, reason))
        if any(e.id == execution_id and e.state is E.LOST for e in marked.executions):
            self._given_up.setdefault(peer_id, set()).add((job_id, execution_id))

    async def _node_back(self, peer_id: str) -> None:
        """A lost node is heard from again: it stops what it runs for us (its results would be refused)."""
        given_up = self._given_up.pop(peer_id, set())
        log.info("node %s is back; telling it %d execution(s) were given up", peer_id, len(given_up))
        for job_id, execution_id in sorted(given_up):
            reason = "given up: the requester took this node for lost"
            await self._notify(peer_id, CancelExecution(job_id=job_id, execution_id=execution_id, reason=reason))

    # -- one job's life -------------------------------------------------------

    async def _drive(self, job_id: str, scope: trio.CancelScope, *, reattach: bool = False) -> None:
        job = await self.store.get(job_id)
        deadline = self.timeouts.bid + job.spec.timeout + self.timeouts.grace
        try:
            with scope:
                with trio.fail_after(deadline) as limit:
                    if not reattach and await self._memoized(job):
                        return
                    if await (self._reattach(job) if reattach else self._bid(job)):
                        while lost := _unreplaced_lost(job := await self._await_results(job_id)):
                            if lost.id in _ran(job):
                                # A new run gets the whole time a job has.
                                limit.deadline = trio.current_time() + deadline
                            if not await self._reschedule(job_id, lost):
                                return
                        await self._verify(job_id)
        except trio.TooSlowError:
            await self._fail(job_id, f"timed out: no result within {deadline:g}s")
        except BacalhauError as error:
            await self._fail(job_id, error.message)
        except Exception as error:
            log.exception("job %s: internal error", job_id)
            await self._fail(job_id, f"internal error on the requester: {error!r}")
        finally:
            self._scopes.pop(job_id, None)

    async def _fail(self, job_id: str, message: str) -> None:
        job = await self.store.get(job_id)
        if job.state.terminal:
            return
        job = await self.store.set_job_state(job_id, JobState.FAILED, message)
        with trio.CancelScope(shield=True):
            await self._stop_executions(job, message)

    async def _reschedule(self, job_id: str, lost: Execution) -> bool:
        """Bid for a node to replace the lost execution, within the retry budget. False if the job failed."""
        job = await self.store.get(job_id)
        budget = job.spec.retries
        # Retries are spent on runs lost on their way. An execution whose node
        # could not be told to start it (or no longer held its bid) never ran
        # as far as this requester knows; on a loaded network that is the
        # requester's own delay as often as the node's, and costs no retry.
        # The job's deadline, not extended for it, bounds such attempts.
        ran = _ran(job)
        given_up = [e for e in job.executions if e.state is E.LOST]
        spent = sum(1 for e in given_up if e.id in ran)
        # What happened to the node ("node 12D3...ab lost", "... unreachable"): a Lost message's start.
        why = lost.message.partition(":")[0] or f"node {_short(lost.node_id)} lost"
        if spent > budget:
            await self._fail(job_id, f"{why}; no retry left (the job allows {budget})")
            return False
        if lost.id in ran:
            await self.store.note(job_id, f"rescheduled: {why} (retry {spent} of {budget})")
        else:
            await self.store.note(job_id, f"rescheduled: {why}; it had not started (no retry spent)")
        # Distinct nodes: a job that runs on several must not run twice on one.
        # Nor is a node asked again that could not start it.
        exclude = frozenset(
            [e.node_id for e in job.executions if not e.state.terminal]
            + [e.node_id for e in given_up if e.id not in ran]
        )
        return await self._bid(job, needed=1, exclude=exclude, because=f"{why}, and ")

    async def _memoized(self, job: Job) -> bool:
        """Complete the job from a receipt of its instruction, if it may be and one is found."""
        if self.receipts is None or job.instruction_cid is None or not memoized_by_default(job.spec):
            return False
        receipt = await self.receipts.find(job.instruction_cid)
        if receipt is None or not serves(receipt, job.spec):
            return False
        if receipt.issuer != self.transport.peer_id and self.directory.approval(receipt.issuer) != "approved":
            # A node this requester would not send work to (manual approval) cannot vouch for a result either.
            return False
        message = f"memoized from receipt {receipt_cid(receipt)} issued by {receipt.issuer}: not run again"
        await self.store.apply(job.id, Memoized(receipt, message))
        return True

    async def _bid(
        self, job: Job, *, needed: int | None = None, exclude: frozenset[str] = frozenset(), because: str = ""
    ) -> bool:
        """Find `needed` compute nodes by bidding (a few first, then more). False if the job failed.

        By default the job's own `concurrency` nodes; when rescheduling, one
        node not in `exclude`, and a failure message starting with `because`.
        """
        spec = job.spec
        candidates = selection.ranked(
            job.id, spec, (info for info in self.directory.compute_nodes() if info.peer_id not in exclude)
        )
        accepting = spec.deal.concurrency if needed is None else needed
        needed = max(spec.deal.concurrency, spec.deal.min_bids) if needed is None else needed
        if len(candidates) < needed:
            unapproved = self.directory.awaiting_approval()
            note = f" ({len(unapproved)} more not approved: 'bacalhau node approve PEER_ID')" if unapproved else ""
            if because:
                await self._fail(job.id, f"{because}no other compute node can take the job{note}")
            else:
                await self._fail(job.id, f"the network has {len(candidates)} compute node(s){note}; the job needs {needed}")
            return False
        # No gossip announcement of the job: nobody acts on one, and each cost
        # every other node about 8 ms of CPU (signature checks, forwarding).
        delay = QUEUE_RETRY_FIRST
        # Each node asked costs it and us a round trip: ask a few first, and
        # twice as many each round when those are not enough (requester/selection.py).
        asking = candidates[: needed + SPARE_BIDDERS]
        while True:
            async with self._bidding:
                bids, refusals, busy, unread, receive = await self._bid_round(job, asking, needed)
            try:
                if len(bids) >= needed:
                    break
                await self._reject(job, bids + unread, "not enough bids")
                bids, unread = [], []
                if len(asking) < len(candidates):
                    asking = selection.widened(candidates, len(asking))
                    continue
                if busy:
                    # Every node that could run it is busy: the job waits,
                    # visibly, until one has room or the job's deadline passes.
                    if delay == QUEUE_RETRY_FIRST:
                        await self.store.note(job.id, "queued: " + "; ".join(refusals))
                    await trio.sleep(delay)
                    delay = min(delay * 1.5, QUEUE_RETRY_MAX)
                    continue
                why = "; ".join(refusals) or f"no reply within {self.timeouts.bid:g}s"
                got = f"{len(bids)} of {needed} needed bids" if bids else "no node bid for the job"
                await self._fail(job.id, f"{because}{got}: {why}")
                return False
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._reject(job, bids + unread + _close_bidding(receive), "the job was cancelled")
                raise

        try:
            accepted, extra = bids[:accepting], bids[accepting:]
            changes = []
            for peer_id, execution_id in accepted:
                changes += [NewExecution(execution_id, peer_id), ExecutionChange(execution_id, E.BID_ACCEPTED)]
            if job.state is JobState.PENDING:
                changes.append(JobChange(JobState.RUNNING))
            await self.store.apply(job.id, *changes)
        except BaseException:
            # Cancelled (by the user, or the node stopping) before any execution
            # started: every bidder holds capacity for this job; release it.
            # (Executions already recorded also get a CancelExecution; both are harmless.)
            leftover = bids + unread + _close_bidding(receive)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._reject(job, leftover, "the job was cancelled")
            raise
        # Off the critical path: the surplus bidders release their capacity.
        self._nursery.start_soon(self._reject, job, extra + unread, "enough bids were accepted")

        async def accept(peer_id: str, execution_id: str, partition_index: int) -> None:
            decision = BidDecision(
                job_id=job.id, execution_id=execution_id, accepted=True, partition_index=partition_index
            )
            for round_ in range(1, ACCEPTANCE_ROUNDS + 1):
                try:
                    reply = await delivery.deliver(
                        self.transport, peer_id, decision, timeouts=self.timeouts.acknowledgement
                    )
                    break
                except TransportError as error:
                    if round_ < ACCEPTANCE_ROUNDS and self.directory.alive(peer_id) is not None:
                        # Heard from lately: busy, not gone. Its bid holds the
                        # place, and a repeat is acknowledged without a second
                        # start, so tell it again rather than place the job
                        # anew (a bid round on a network that is this loaded).
                        log.info("job %s: node %s is slow to acknowledge its start (%s); telling it again",
                                 job.id, _short(peer_id), error.message)
                        continue
                    # A node that cannot be told to start is as good as lost: the job is rescheduled.
                    reason = f"node {_short(peer_id)} unreachable: {error.message}"
                    log.warning("job %s: %s", job.id, reason)
                    await self._give_up(job.id, execution_id, peer_id, reason)
                    return
            if isinstance(reply, Ack) and not reply.ok:
                # It no longer holds the bid (it waited past its hold) or is stopping: the job runs elsewhere.
                reason = f"node {_short(peer_id)} could not start it: {reply.message}"
                log.warning("job %s: %s", job.id, reason)
                await self._give_up(job.id, execution_id, peer_id, reason)
                return
            # The compute node starts the run as it acknowledges.
            await self.store.apply(job.id, Started(execution_id))

        async with trio.open_nursery() as nursery:
            for partition_index, (peer_id, execution_id) in enumerate(accepted):
                nursery.start_soon(accept, peer_id, execution_id, partition_index)
        return True

    async def _reattach(self, job: Job) -> bool:
        """After a restart: learn from each compute node where its execution is.

        A result proposed while this node was down is taken now; an execution
        still running reports as usual when it ends; one its node no longer
        knows has failed.
        """

        async with trio.open_nursery() as nursery:
            for execution in job.executions:
                if not execution.state.terminal and execution.state is not E.RESULT_PROPOSED:
                    nursery.start_soon(partial(self._ask_where, job.id, execution, after_restart=True))
        return True

    async def _ask_where(self, job_id: str, execution: Execution, *, after_restart: bool) -> None:
        """Ask the execution's node where it is, and take its answer as the report it would have sent."""
        try:
            reply = await self.transport.request(execution.node_id, ExecutionStatusRequest(execution_id=execution.id))
        except BacalhauError as error:
            if after_restart:
                # Its node is gone (as good as lost): the job is rescheduled.
                reason = f"node {_short(execution.node_id)} lost: it did not answer after the restart: {error.message}"
                await self._give_up(job_id, execution.id, execution.node_id, reason)
            # Otherwise the node's liveness decides (`_watch_liveness`).
            return
        match reply:
            case ResultProposal():
                await self.on_result_proposal(execution.node_id, reply)
            case ExecutionUpdate():
                await self.on_execution_update(execution.node_id, reply)
            case _ if after_restart:
                reason = "lost while the requester node restarted: " + (getattr(reply, "message", "") or "?")
                await self.store.set_execution_state(job_id, execution.id, E.FAILED, reason)
            # Otherwise a node that forgot the execution restarted: its new boot ID makes it lost.

    async def _check_quiet_executions(self) -> None:
        """Ask the nodes of executions quiet for a while where they are.

        A compute node stops sending its report after 5 attempts (23 s); a
        requester too busy to take it meanwhile (seen with 50 nodes on 2
        cores) would otherwise wait for it until the job's timeout. The node
        keeps the result, so asking gets it. Quiet means unchanged since the
        previous look, `lost_after` earlier (on trio's clock); a long job is
        asked once per `lost_after`: one message, not growing with the network.
        """
        seen: dict[str, object] = {}
        while True:
            await trio.sleep(self.directory.lost_after)
            now_seen: dict[str, object] = {}
            async with trio.open_nursery() as nursery:
                for job in await self.store.unfinished():
                    for execution in job.executions:
                        if not execution.state.active:
                            continue
                        now_seen[execution.id] = execution.updated_at
                        if seen.get(execution.id) == execution.updated_at:
                            nursery.start_soon(partial(self._ask_where, job.id, execution, after_restart=False))
            seen = now_seen

    async def _bid_round(self, job: Job, candidates: list[str], needed: int):
        """Ask every candidate once; return (bids, refusals, busy, unread, channel).

        `busy` is true when a node refused only for now (no free capacity).
        """
        send, receive = trio.open_memory_channel[tuple[str, str, BidReply | None, str]](math.inf)
        assert self._nursery is not None
        async with send:
            for peer_id in candidates:
                self._nursery.start_soon(self._ask, peer_id, job, send.clone())
        bids: list[tuple[str, str]] = []
        refusals: list[str] = []
        busy = False
        silent = set(candidates)
        try:
            with trio.move_on_after(self.timeouts.bid):
                async for peer_id, execution_id, reply, error in receive:
                    silent.discard(peer_id)
                    if reply is not None and reply.accepted:
                        bids.append((peer_id, execution_id))
                        if len(bids) >= needed:
                            break
                    else:
                        busy = busy or (reply is not None and reply.retry)
                        refusals.append(f"{_short(peer_id)}: {reply.reason if reply else error}")
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._reject(job, bids + _close_bidding(receive), "the job was cancelled")
            raise
        if len(bids) < needed:
            # Name the nodes that did not answer in time, too.
            refusals += [f"{_short(p)}: no reply within {self.timeouts.bid:g}s" for p in sorted(silent)]
        # Bids that arrived but were not read are rejected with the extras;
        # later ones find the channel closed and are rejected by `_ask`.
        return bids, refusals, busy, _close_bidding(receive), receive

    async def _ask(self, peer_id: str, job: Job, send: trio.MemorySendChannel) -> None:
        execution_id = str(uuid.uuid4())
        ask = AskBid(
            job_id=job.id, execution_id=execution_id, spec=job.spec,
            # Only a signature vouches for a client: an unsigned job travels as anonymous.
            client_id=job.client_id if job.client_request is not None else None,
            client_request=job.client_request,
        )
        reply: BidReply | None = None
        error = ""
        try:
            if self.directory.approval(peer_id) != "approved":
                # Checked at the last moment: an operator may reject a node while a job waits in the queue.
                raise BacalhauError("not approved by this node's operators")
            answer = await self.transport.request(peer_id, ask, timeout=self.timeouts.bid)
            if isinstance(answer, BidReply):
                reply = answer
            else:
                error = getattr(answer, "message", "") or f"unexpected reply {answer.kind}"
        except BacalhauError as failure:
            error = failure.message
        async with send:
            try:
                send.send_nowait((peer_id, execution_id, reply, error))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if reply is not None and reply.accepted:
                    await self._reject(job, [(peer_id, execution_id)], "bidding closed")

    async def _reject(self, job: Job, bids: list[tuple[str, str]], reason: str) -> None:
        async def reject(peer_id: str, execution_id: str) -> None:
            try:
                await self.transport.request(
                    peer_id, BidDecision(job_id=job.id, execution_id=execution_id, accepted=False, reason=reason)
                )
            except BacalhauError as error:
                log.info("job %s: could not reject bid of %s: %s", job.id, peer_id, error)

        async with trio.open_nursery() as nursery:
            for peer_id, execution_id in bids:
                nursery.start_soon(reject, peer_id, execution_id)

    async def _await_results(self, job_id: str) -> Job:
        """The job once every execution proposed a result or ended, or one needs replacing (lost)."""
        while True:
            changed = self.store.changed(job_id)
            job = await self.store.get(job_id)
            if _unreplaced_lost(job) or all(e.state.terminal or e.state is E.RESULT_PROPOSED for e in job.executions):
                return job
            await changed.wait()

    async def _verify(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        proposed = [e for e in job.executions if e.state is E.RESULT_PROPOSED]
        if not proposed:
            failures = [f"{_short(e.node_id)}: {e.message}" for e in job.executions if e.message]
            await self._fail(job_id, "every execution failed: " + ("; ".join(failures) or "no reason given"))
            return

        verifier = VERIFIERS.load(job.spec.verifier)()
        revealed: dict[str, str | None] = {}

        async def reveal(execution) -> None:
            try:
                revealed[execution.id] = await self._reveal(execution)
            except BacalhauError as error:
                await self.store.set_execution_state(job_id, execution.id, E.RESULT_REJECTED, error.message)

        if verifier.needs_result_hashes:
            async with trio.open_nursery() as nursery:
                for execution in proposed:
                    nursery.start_soon(reveal, execution)
        else:
            revealed = dict.fromkeys(e.id for e in proposed)
        proposals = [
            Proposal(
                execution_id=execution.id,
                node_id=execution.node_id,
                exit_code=execution.exit_code,
                result_cid=execution.result_cid,
                publisher=execution.publisher or job.spec.publisher,
                result_hash=revealed[execution.id],
            )
            for execution in proposed
            if execution.id in revealed
        ]
        verdict = await verifier.verify(job.spec, proposals, self.results)
        hashes = {p.execution_id: p.result_hash for p in proposals}
        rejection = verdict.message or "result rejected by the verifier"
        changes = [
            *(ExecutionChange(i, E.RESULT_ACCEPTED, "", {"result_hash": hashes[i]}) for i in sorted(verdict.accepted)),
            *(ExecutionChange(i, E.RESULT_REJECTED, rejection, {"result_hash": hashes[i]}) for i in sorted(verdict.rejected)),
        ]
        if verdict.accepted:
            job = await self.store.apply(job_id, *changes, JobChange(JobState.COMPLETED))
            if self.receipts is not None:
                await self.receipts.issue(job)
        else:
            await self.store.apply(job_id, *changes)
        # Off the critical path: the compute nodes may forget these executions.
        for execution in proposed:
            verdict_message = ResultVerdict(
                job_id=job_id, execution_id=execution.id, accepted=execution.id in verdict.accepted
            )
            self._nursery.start_soon(self._notify, execution.node_id, verdict_message)
        if not verdict.accepted:
            await self._fail(job_id, verdict.message or "no result was accepted by the verifier")

    async def _notify(self, peer_id: str, message) -> None:
        """Sent again until acknowledged, but no more: a node that misses it only keeps an execution longer."""
        try:
            await delivery.deliver(
                self.transport, peer_id, message, timeouts=self.timeouts.acknowledgement
            )
        except BacalhauError as error:
            log.info("could not send %s to %s: %s", message.kind, peer_id, error)

    async def _reveal(self, execution) -> str:
        """Ask the node for the hash it committed to; check it against the commitment."""
        reveal = await self.transport.request(execution.node_id, RevealRequest(execution_id=execution.id))
        if not isinstance(reveal, Reveal) or reveal.execution_id != execution.id:
            raise InvalidMessage("the node did not reveal its result hash")
        if execution.commitment is None or (
            commitment(execution.id, reveal.salt, reveal.result_hash) != execution.commitment
        ):
            raise InvalidMessage("the revealed hash does not match the node's commitment")
        return reveal.result_hash

    async def _stop_executions(self, job: Job, reason: str) -> None:
        """Tell compute nodes to stop, and close every unfinished execution record."""

        async def stop(execution) -> None:
            # A node that proposed a result still keeps it for us: it may forget it.
            if execution.state.active or execution.state is E.RESULT_PROPOSED:
                try:
                    await self.transport.request(
                        execution.node_id,
                        CancelExecution(job_id=job.id, execution_id=execution.id, reason=reason),
                        timeout=5.0,
                    )
                except BacalhauError as error:
                    log.info("job %s: could not cancel on %s: %s", job.id, execution.node_id, error)
            state = E.CANCELLED if job.state is JobState.CANCELLED else E.FAILED
            await self.store.set_execution_state(job.id, execution.id, state, reason)

        async with trio.open_nursery() as nursery:
            for execution in job.executions:
                if not execution.state.terminal:
                    nursery.start_soon(stop, execution)

    async def _recover_jobs(self) -> list[tuple[str, bool]]:
        """Jobs a previous run of this node left unfinished: never lost, never silently stuck.

        Returned as (job ID, reattach): a Pending job has nothing running
        anywhere (a compute node releases an unanswered bid within a minute)
        and is offered again; a Running one is followed again where its
        executions run (`_reattach`). A graceful stop (`stop_all`) has already
        failed the running jobs; this is for a node that died.
        """
        return [(job.id, not job.waiting_to_start()) for job in await self.store.unfinished()]


def _ran(job: Job) -> set[str]:
    """The executions that ran, as far as this requester knows: their node acknowledged the start or reported."""
    return {event.execution_id for event in job.events if event.execution_state in _RAN}


_RAN = frozenset({E.RUNNING, E.RESULT_PROPOSED, E.RESULT_ACCEPTED, E.RESULT_REJECTED, E.FAILED})


def _unreplaced_lost(job: Job) -> Execution | None:
    """The first lost execution with no replacement yet, if any.

    A job starts with `concurrency` executions and each replacement adds one,
    so the lost ones beyond the replacements made still need one.
    """
    lost = [e for e in job.executions if e.state is E.LOST]
    replaced = len(job.executions) - job.spec.deal.concurrency
    return lost[replaced] if len(lost) > replaced else None


def _close_bidding(receive: trio.MemoryReceiveChannel) -> list[tuple[str, str]]:
    """Close the bid channel; return the accepted bids still unread in it.

    Synchronous, so no bid can slip in between the last read and the close.
    """
    unread = []
    while True:
        try:
            peer_id, execution_id, reply, _ = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            break
        if reply is not None and reply.accepted:
            unread.append((peer_id, execution_id))
    receive.close()
    return unread


def _short(peer_id: str) -> str:
    return peer_id[-8:]
