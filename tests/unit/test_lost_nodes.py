"""Lost compute nodes, over the in-memory transport: their work is rescheduled, within the job's retries.

A node is alive while its NodeInfo keeps arriving (here: a heartbeat task per
node); one that stops is lost after `LOST_AFTER` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.errors import IllegalTransition
from bacalhau_py.jobstore import JobStore
from bacalhau_py.jobstore.sqlite import ExecutionChange, Reported
from bacalhau_py.models import ExecutionState, JobSpec, JobState
from bacalhau_py.models.messages import (
    Ack, AskBid, BidDecision, CancelExecution, ExecutionStatusRequest, ExecutionUpdate, NodeInfo, ResultProposal,
)
from bacalhau_py.requester.service import RequesterService, RequesterTimeouts
from bacalhau_py.transport import MemoryNetwork, MemoryTransport

from test_bidding import SPEC, FakeCompute, RequesterNode, wait_terminal

E = ExecutionState
LOST_AFTER = 0.5


@dataclass
class HangingCompute(FakeCompute):
    """Reports Running, then proposes its result only once `release` is set (or never)."""

    release: trio.Event = field(default_factory=trio.Event)
    told_to_stop: trio.Event = field(default_factory=trio.Event)
    proposal_reply: list = field(default_factory=list)
    replied: trio.Event = field(default_factory=trio.Event)

    async def on_request(self, sender, message):
        if isinstance(message, CancelExecution):
            self.told_to_stop.set()
        return await super().on_request(sender, message)

    async def _run(self, requester: str, decision: BidDecision) -> None:
        await self.release.wait()
        reply = await self.transport.request(
            requester,
            ResultProposal(job_id=decision.job_id, execution_id=decision.execution_id, exit_code=0,
                           result_cid="bafy", publisher="ipfs", commitment=None),
        )
        self.proposal_reply.append(reply)
        self.replied.set()


@dataclass
class UnheardCompute(FakeCompute):
    """Runs its job, but its report never reaches the requester (it gave up: the requester was too busy).

    It keeps the result, and gives it when asked where the execution is.
    """

    asked: list = field(default_factory=list)

    async def on_request(self, sender, message):
        if isinstance(message, ExecutionStatusRequest):
            self.asked.append(message.execution_id)
            job_id = next(d.job_id for d in self.decisions if d.execution_id == message.execution_id)
            return ResultProposal(job_id=job_id, execution_id=message.execution_id, exit_code=0,
                                  result_cid="bafy", publisher="ipfs", commitment=None)
        return await super().on_request(sender, message)

    async def _run(self, requester: str, decision: BidDecision) -> None:
        pass


@pytest.fixture
async def network(nursery):
    net = MemoryNetwork()
    store = JobStore.open(None)
    transport = MemoryTransport(net, "requester")
    directory = NodeDirectory(lambda: NodeInfo(peer_id="requester", node_types=["requester"]), lost_after=LOST_AFTER)
    requester = RequesterService(
        transport=transport, store=store, directory=directory, results=None,
        # Short waits for acknowledgements: a node that is gone is given up on within a second.
        timeouts=RequesterTimeouts(bid=1.0, grace=5.0, acknowledgement=(0.1, 0.2, 0.4)),
    )
    await nursery.start(transport.serve, RequesterNode(requester))
    await nursery.start(requester.serve)
    beating: dict[str, trio.CancelScope] = {}
    boots: dict[str, str] = {}

    async def heartbeat(name: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            beating[name] = scope
            task_status.started()
            while True:
                directory.update(NodeInfo(peer_id=name, node_types=["compute"], boot_id=boots.get(name, "")))
                await trio.sleep(LOST_AFTER / 5)

    async def add_compute(name: str, kind=FakeCompute, **behaviour) -> FakeCompute:
        compute_transport = MemoryTransport(net, name)
        compute = kind(name, compute_transport, nursery=nursery, **behaviour)
        await nursery.start(compute_transport.serve, compute)
        await nursery.start(heartbeat, name)
        return compute

    def silence(name: str) -> None:
        beating.pop(name).cancel()

    async def revive(name: str) -> None:
        await nursery.start(heartbeat, name)

    def reboot(name: str) -> None:
        """The node's process starts again: it goes on announcing itself, with a new boot ID."""
        boots[name] = boots.get(name, "") + "+"

    yield requester, store, add_compute, silence, revive, reboot
    store.close()


async def running_on(store: JobStore, job_id: str) -> str:
    """The node of the job's first execution once the job runs."""
    with trio.fail_after(5):
        while True:
            changed = store.changed(job_id)
            job = await store.get(job_id)
            if job.state is JobState.RUNNING:
                return job.executions[0].node_id
            await changed.wait()


async def first_execution_lost(store: JobStore, job_id: str) -> None:
    """Wait until the requester has given up the job's first execution."""
    with trio.fail_after(5):
        while True:
            changed = store.changed(job_id)
            if (await store.get(job_id)).executions[0].state is E.LOST:
                return
            await changed.wait()


def history(job) -> list[str]:
    return [event.message for event in job.events if event.message]


async def test_a_lost_node_s_job_is_rescheduled_on_another_node_and_its_late_result_refused(network):
    requester, store, add_compute, silence, revive, _ = network
    hanging = await add_compute("hanging", HangingCompute)
    job = await requester.submit(JobSpec.model_validate({**SPEC, "selector": {}}))
    assert await running_on(store, job.id) == "hanging"
    healthy = await add_compute("healthy")
    silence("hanging")

    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    assert [(e.node_id, e.state) for e in job.executions] == [("hanging", E.LOST), ("healthy", E.RESULT_ACCEPTED)]
    assert "node hanging lost: silent for 0.5s" in job.executions[0].message
    assert "rescheduled: node hanging lost (retry 1 of 2)" in history(job)
    assert healthy.decisions[-1].accepted

    # The lost node comes back: it is told its execution was given up, and its result is refused.
    await revive("hanging")
    with trio.fail_after(5):
        await hanging.told_to_stop.wait()
    assert [c.execution_id for c in hanging.cancels] == [job.executions[0].id]
    assert "given up" in hanging.cancels[0].reason
    hanging.release.set()
    with trio.fail_after(5):
        await hanging.replied.wait()
    refused = hanging.proposal_reply[0]
    assert not refused.ok and "Lost" in refused.message
    assert (await store.get(job.id)).executions[0].state is E.LOST


async def test_with_no_other_node_the_job_fails_naming_the_lost_node(network):
    requester, store, add_compute, silence, _, _ = network
    await add_compute("only", HangingCompute)
    job = await requester.submit(JobSpec.model_validate(SPEC))
    await running_on(store, job.id)
    silence("only")
    job = await wait_terminal(store, job.id)
    assert job.state is JobState.FAILED
    assert job.message == "node only lost, and no other compute node can take the job"
    assert [e.state for e in job.executions] == [E.LOST]


async def test_the_retry_budget_counts_lost_nodes(network):
    requester, store, add_compute, silence, _, _ = network
    await add_compute("first", HangingCompute)
    job = await requester.submit(JobSpec.model_validate({**SPEC, "retries": 0}))
    await running_on(store, job.id)
    await add_compute("second")
    silence("first")
    job = await wait_terminal(store, job.id)
    assert job.state is JobState.FAILED
    assert job.message == "node first lost; no retry left (the job allows 0)"


async def test_a_program_that_fails_is_not_rescheduled(network):
    requester, store, add_compute, _, _, _ = network

    @dataclass
    class FailingCompute(FakeCompute):
        async def _run(self, requester_id: str, decision: BidDecision) -> None:
            await self.transport.request(requester_id, ExecutionUpdate(
                job_id=decision.job_id, execution_id=decision.execution_id, state=E.FAILED, message="image missing"))

    await add_compute("failing", FailingCompute)
    job = await requester.submit(JobSpec.model_validate(SPEC))
    await running_on(store, job.id)
    await add_compute("other")
    job = await wait_terminal(store, job.id)
    assert job.state is JobState.FAILED and "image missing" in job.message
    assert [e.node_id for e in job.executions] == ["failing"]
    assert not any(m.startswith("rescheduled") for m in history(job))


async def test_a_node_that_restarts_within_the_lost_after_period_is_lost_too(network):
    requester, store, add_compute, _, _, reboot = network
    rebooted = await add_compute("rebooted", HangingCompute)
    job = await requester.submit(JobSpec.model_validate(SPEC))
    assert await running_on(store, job.id) == "rebooted"
    await add_compute("healthy")
    reboot("rebooted")
    await first_execution_lost(store, job.id)
    # Back from its restart, the node runs what it is given (the job may land on it again).
    rebooted.release.set()
    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    assert [e.state for e in job.executions] == [E.LOST, E.RESULT_ACCEPTED]
    assert job.executions[0].message == "node rebooted lost: restarted"


async def test_a_restarted_node_loses_only_what_it_held_before_its_restart(network):
    # The restart is noticed at the next liveness check; a job placed on the
    # node's new run in between is that run's, and must not be given up with
    # the old run's executions.
    requester, store, add_compute, _, _, reboot = network
    node = await add_compute("node", HangingCompute)
    old = await requester.submit(JobSpec.model_validate(SPEC))
    assert await running_on(store, old.id) == "node"
    reboot("node")
    requester.directory.update(NodeInfo(peer_id="node", node_types=["compute"], boot_id="+"))
    new = await requester.submit(JobSpec.model_validate(SPEC))
    assert await running_on(store, new.id) == "node"
    await first_execution_lost(store, old.id)
    node.release.set()
    new = await wait_terminal(store, new.id)
    assert new.state is JobState.COMPLETED, new.message
    assert [e.state for e in new.executions] == [E.RESULT_ACCEPTED]
    assert (await store.get(old.id)).executions[0].message == "node node lost: restarted"


@dataclass
class VanishingCompute(FakeCompute):
    """Bids, then its process is killed before the acceptance reaches it: it can no longer be reached."""

    serving: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def on_request(self, sender, message):
        reply = await super().on_request(sender, message)
        if isinstance(message, AskBid):
            self.serving.cancel()
        return reply


async def test_a_node_that_cannot_be_told_its_bid_was_accepted_is_lost_and_the_job_runs_elsewhere(
    network, nursery
):
    requester, store, add_compute, _, revive, _ = network
    vanished = VanishingCompute("vanished", MemoryTransport(requester.transport.network, "vanished"))

    async def serve(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with vanished.serving:
            await vanished.transport.serve(vanished, task_status=task_status)

    await nursery.start(serve)
    # Still announced (its last announcement is recent: not yet lost by silence).
    await revive("vanished")
    job = await requester.submit(JobSpec.model_validate({**SPEC, "selector": {}}))
    healthy = await add_compute("healthy")

    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    assert [(e.node_id, e.state) for e in job.executions] == [("vanished", E.LOST), ("healthy", E.RESULT_ACCEPTED)]
    assert job.executions[0].message.startswith("node vanished unreachable: not acknowledged after 3 attempts")
    assert "rescheduled: node vanished unreachable; it had not started (no retry spent)" in history(job)
    assert not vanished.decisions and healthy.decisions[-1].accepted


@dataclass
class ForgetfulCompute(FakeCompute):
    """Bids, but no longer holds the bid when the acceptance comes (it waited past its hold)."""

    async def on_request(self, sender, message):
        if isinstance(message, BidDecision) and message.accepted:
            return Ack(ok=False, message=f"no execution {message.execution_id} for requester {sender} on this node")
        return await super().on_request(sender, message)


async def test_a_job_no_node_could_start_spends_no_retry_and_runs_on_the_next(network):
    """Even with no retry allowed: starts that never happened are not runs that were lost."""
    requester, store, add_compute, _, _, _ = network
    for name in ("forgetful-1", "forgetful-2"):
        await add_compute(name, ForgetfulCompute)
    job = await requester.submit(JobSpec.model_validate({**SPEC, "selector": {}, "retries": 0}))
    healthy = await add_compute("healthy")

    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    assert [e.state for e in job.executions][-1] is E.RESULT_ACCEPTED and job.executions[-1].node_id == "healthy"
    assert all(e.state is E.LOST and "could not start it: no execution" in e.message for e in job.executions[:-1])
    tried = [e.node_id for e in job.executions[:-1]]
    assert tried and len(set(tried)) == len(tried), "a node that could not start the job is not asked again"
    assert f"rescheduled: node {tried[0][-8:]} could not start it; it had not started (no retry spent)" in history(job)
    assert healthy.decisions[-1].accepted


@dataclass
class SlowToStartCompute(FakeCompute):
    """Alive (it keeps announcing itself) but so busy that its acknowledgement of a start comes late.

    Its first `ignored` acceptances get no reply in time (the requester's wait ends first).
    """

    ignored: int = 0

    async def on_request(self, sender, message):
        if isinstance(message, BidDecision) and message.accepted and self.ignored > 0:
            self.ignored -= 1
            await trio.sleep_forever()
        return await super().on_request(sender, message)


async def test_a_live_node_slow_to_acknowledge_its_start_is_told_again_and_runs_the_job(network):
    requester, store, add_compute, _, _, _ = network
    # Four unanswered acceptances: a whole delivery round (3 attempts) and the first of the next.
    slow = await add_compute("slow", SlowToStartCompute, ignored=4)
    job = await requester.submit(JobSpec.model_validate({**SPEC, "selector": {}}))

    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    assert [(e.node_id, e.state) for e in job.executions] == [("slow", E.RESULT_ACCEPTED)]
    assert not any("rescheduled" in line for line in history(job)), "no retry spent on a node that is there"
    assert len([d for d in slow.decisions if d.accepted]) == 1, "started once"


async def test_a_repeated_report_is_acknowledged_again_and_changes_nothing(network):
    requester, store, add_compute, _, _, _ = network
    node = await add_compute("node", HangingCompute)
    job = await requester.submit(JobSpec.model_validate(SPEC))
    await running_on(store, job.id)
    execution_id = (await store.get(job.id)).executions[0].id

    def count(state: ExecutionState) -> int:
        return sum(1 for event in job.events if event.execution_state is state)

    running = ExecutionUpdate(job_id=job.id, execution_id=execution_id, state=E.RUNNING)
    assert [(await node.transport.request("requester", running)).ok for _ in range(2)] == [True, True]
    job = await store.get(job.id)
    assert count(E.RUNNING) == 1
    # A genuinely illegal report is still the bug it is.
    with pytest.raises(IllegalTransition):
        await store.apply(job.id, Reported(ExecutionChange(execution_id, E.BID_ACCEPTED)))

    # Twice at once: the node did not hear the first acknowledgement in time and sent it again.
    proposal = ResultProposal(job_id=job.id, execution_id=execution_id, exit_code=0, result_cid="bafy",
                              publisher="ipfs", commitment=None)
    replies = []

    async def propose() -> None:
        replies.append(await node.transport.request("requester", proposal))

    async with trio.open_nursery() as both:
        both.start_soon(propose)
        both.start_soon(propose)
    job = await wait_terminal(store, job.id)
    assert job.state is JobState.COMPLETED, job.message
    # Once more after the verdict: still the proposal that was taken.
    await propose()
    assert [reply.ok for reply in replies] == [True, True, True]
    job = await store.get(job.id)
    assert count(E.RESULT_PROPOSED) == 1 and job.executions[0].state is E.RESULT_ACCEPTED


async def test_a_result_whose_report_never_arrived_is_taken_by_asking_its_node(network):
    requester, store, add_compute, _, _, _ = network
    node = await add_compute("unheard", UnheardCompute)
    job = await requester.submit(JobSpec.model_validate(SPEC))
    # Quiet for lost_after (and seen unchanged twice): then asked.
    job = await wait_terminal(store, job.id, timeout=4 * LOST_AFTER + 2)
    assert job.state is JobState.COMPLETED, job.message
    assert node.asked == [job.executions[0].id]
    assert [e.state for e in job.executions] == [E.RESULT_ACCEPTED]
