"""The requester's bidding against scripted compute nodes, over the in-memory transport.

Fast and deterministic where the devstack tests (tests/integration/
test_network.py) cannot be: slow bidders, cancels that land mid-bidding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.jobstore import JobStore
from bacalhau_py.models import JobSpec
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    BidReply,
    CancelExecution,
    ExecutionUpdate,
    NodeInfo,
    ResultProposal,
    Reveal,
    RevealRequest,
)
from bacalhau_py.models.states import ExecutionState, JobState
from bacalhau_py.requester.service import SPARE_BIDDERS, RequesterService, RequesterTimeouts
from bacalhau_py.results import commitment
from bacalhau_py.transport import MemoryNetwork, MemoryTransport

SPEC = {"task": {"engine": "docker", "image": "busybox", "command": ["true"]}}


@dataclass
class FakeCompute:
    """A compute node that bids (or refuses) and, once accepted, proposes a result."""

    peer_id: str
    transport: MemoryTransport
    refuse: str = ""
    bid_delay: float = 0.0
    decisions: list[BidDecision] = field(default_factory=list)
    cancels: list[CancelExecution] = field(default_factory=list)
    reserved: set[str] = field(default_factory=set)
    nursery: trio.Nursery | None = None

    async def on_request(self, sender, message):
        match message:
            case AskBid():
                await trio.sleep(self.bid_delay)
                if self.refuse:
                    return BidReply(execution_id=message.execution_id, accepted=False, reason=self.refuse)
                self.reserved.add(message.execution_id)
                return BidReply(execution_id=message.execution_id, accepted=True)
            case BidDecision():
                self.decisions.append(message)
                if not message.accepted:
                    self.reserved.discard(message.execution_id)
                else:
                    self.nursery.start_soon(self._run, sender, message)
                return Ack()
            case CancelExecution():
                self.cancels.append(message)
                self.reserved.discard(message.execution_id)
                return Ack()
            case RevealRequest():
                return Reveal(execution_id=message.execution_id, result_hash="h", salt="s")
        return Ack(ok=False, message=f"unexpected {message.kind}")

    async def _run(self, requester: str, decision: BidDecision) -> None:
        await self.transport.request(
            requester,
            ExecutionUpdate(job_id=decision.job_id, execution_id=decision.execution_id, state=ExecutionState.RUNNING),
        )
        await self.transport.request(
            requester,
            ResultProposal(
                job_id=decision.job_id,
                execution_id=decision.execution_id,
                exit_code=0,
                result_cid="bafy",
                publisher="ipfs",
                commitment=commitment(decision.execution_id, "s", "h"),
            ),
        )
        self.reserved.discard(decision.execution_id)

    async def on_gossip(self, sender, message):
        pass

    async def on_stream_request(self, sender, message):
        if False:
            yield b""


class RequesterNode:
    """Just enough of a node around `RequesterService` to route its messages."""

    def __init__(self, service: RequesterService) -> None:
        self.service = service

    async def on_request(self, sender, message):
        if isinstance(message, ExecutionUpdate):
            return await self.service.on_execution_update(sender, message)
        if isinstance(message, ResultProposal):
            return await self.service.on_result_proposal(sender, message)
        return Ack(ok=False, message=f"unexpected {message.kind}")

    async def on_gossip(self, sender, message):
        pass

    async def on_stream_request(self, sender, message):
        if False:
            yield b""


@pytest.fixture
async def network(nursery):
    net = MemoryNetwork()
    store = JobStore.open(None)
    transport = MemoryTransport(net, "requester")
    info = lambda: NodeInfo(peer_id="requester", node_types=["requester"])  # noqa: E731
    directory = NodeDirectory(info)
    requester = RequesterService(
        transport=transport, store=store, directory=directory, results=None,
        timeouts=RequesterTimeouts(bid=1.0, grace=5.0),
    )
    await nursery.start(transport.serve, RequesterNode(requester))
    await nursery.start(requester.serve)

    async def add_compute(name: str, **behaviour) -> FakeCompute:
        compute_transport = MemoryTransport(net, name)
        compute = FakeCompute(name, compute_transport, nursery=nursery, **behaviour)
        await nursery.start(compute_transport.serve, compute)
        directory.update(NodeInfo(peer_id=name, node_types=["compute"]))
        return compute

    yield requester, store, add_compute
    store.close()


async def wait_terminal(store: JobStore, job_id: str, timeout: float = 5.0):
    with trio.fail_after(timeout):
        while True:
            changed = store.changed(job_id)
            job = await store.get(job_id)
            if job.state.terminal:
                return job
            await changed.wait()


async def test_concurrency_accepts_that_many_distinct_nodes_and_rejects_the_rest(network):
    requester, store, add_compute = network
    computes = [await add_compute(f"c{i}") for i in range(4)]
    job = await requester.submit(JobSpec.model_validate({**SPEC, "deal": {"concurrency": 2}}))
    job = await wait_terminal(store, job.id)
    assert job.state.value == "Completed", job.message
    assert len({e.node_id for e in job.executions}) == 2
    assert all(e.state is ExecutionState.RESULT_ACCEPTED for e in job.executions)
    await trio.sleep(0.1)  # late bids are rejected in the background
    accepted = [d for c in computes for d in c.decisions if d.accepted]
    rejected = [d for c in computes for d in c.decisions if not d.accepted]
    # Only concurrency + SPARE_BIDDERS nodes were asked; the spare one is rejected.
    assert len(accepted) == 2 and len(rejected) == SPARE_BIDDERS
    assert all(not c.reserved for c in computes)  # nobody holds capacity for the job


async def test_when_the_first_nodes_asked_refuse_everyone_is_asked(network):
    requester, store, add_compute = network
    for i in range(3):
        await add_compute(f"r{i}", refuse="node labels do not match selector zone=x")
    willing = await add_compute("willing")
    for _ in range(5):  # whichever nodes the random first round picks
        job = await wait_terminal(store, (await requester.submit(JobSpec.model_validate(SPEC))).id)
        assert job.state.value == "Completed", job.message
        assert [e.node_id for e in job.executions] == [willing.peer_id]


async def test_no_bids_fails_at_once_with_every_reason(network):
    requester, store, add_compute = network
    await add_compute("c1", refuse="engine docker is not installed on this node")
    await add_compute("c2", refuse="node labels do not match selector zone=x")
    start = trio.current_time()
    job = await wait_terminal(store, (await requester.submit(JobSpec.model_validate(SPEC))).id)
    assert trio.current_time() - start < 0.5  # every node answered: no waiting for the bid timeout
    assert job.state.value == "Failed"
    assert "no node bid" in job.message
    assert "not installed" in job.message and "zone=x" in job.message


async def test_silent_nodes_fail_the_job_after_the_bid_timeout(network):
    requester, store, add_compute = network
    await add_compute("slow", bid_delay=30)
    start = trio.current_time()
    job = await wait_terminal(store, (await requester.submit(JobSpec.model_validate(SPEC))).id)
    assert 0.9 < trio.current_time() - start < 3
    assert job.state.value == "Failed" and "no node bid" in job.message, job.message
    assert "slow: no reply within 1s" in job.message, job.message  # the silent node is named


async def test_a_cancel_during_bidding_releases_every_bid(network):
    requester, store, add_compute = network
    fast = await add_compute("fast")
    slow = await add_compute("slow", bid_delay=0.3)
    job = await requester.submit(JobSpec.model_validate({**SPEC, "deal": {"concurrency": 2}}))
    with trio.fail_after(2):
        while not fast.reserved:
            await trio.sleep(0.01)
    job = await requester.cancel(job.id)  # "slow" has not answered yet
    assert job.state.value == "Cancelled"
    await trio.sleep(0.6)
    # Both bids were released: neither node holds capacity for a cancelled job.
    assert not fast.reserved and not slow.reserved, (fast.reserved, slow.reserved)
    assert not [d for d in fast.decisions + slow.decisions if d.accepted]
    assert (await store.get(job.id)).state.value == "Cancelled"


async def test_a_restarted_requester_offers_pending_jobs_again_and_follows_running_ones(nursery, tmp_path):
    store = JobStore.open(tmp_path / "jobs.sqlite")
    spec = JobSpec.model_validate(SPEC)
    # What a previous run of the node left behind.
    queued = await store.create("queued-job-0001", spec, "requester")
    running = await store.create("running-job-0001", spec, "requester")
    await store.add_execution(running.id, "exec-1", "c1")
    await store.set_execution_state(running.id, "exec-1", ExecutionState.BID_ACCEPTED)
    await store.set_job_state(running.id, JobState.RUNNING)

    net = MemoryNetwork()
    transport = MemoryTransport(net, "requester")
    directory = NodeDirectory(lambda: NodeInfo(peer_id="requester", node_types=["requester"]))
    requester = RequesterService(
        transport=transport, store=store, directory=directory, results=None,
        timeouts=RequesterTimeouts(bid=1.0, grace=5.0),
    )
    await nursery.start(transport.serve, RequesterNode(requester))
    await nursery.start(requester.serve)
    compute_transport = MemoryTransport(net, "c1")
    await nursery.start(compute_transport.serve, FakeCompute("c1", compute_transport, nursery=nursery))
    directory.update(NodeInfo(peer_id="c1", node_types=["compute"]))

    # Nothing is decided before the node has rejoined the network.
    assert (await store.get(running.id)).state is JobState.RUNNING
    assert (await store.get(queued.id)).state is JobState.PENDING

    await requester.resume(settle=0)
    job = await wait_terminal(store, queued.id)
    assert job.state is JobState.COMPLETED, job.message
    assert any("offering the job again" in e.message for e in job.events)
    # c1 does not know exec-1 (it never ran it): the job fails, saying why.
    failed = await wait_terminal(store, running.id)
    assert failed.state is JobState.FAILED and "restarted" in failed.message
    assert [e.state for e in failed.executions] == [ExecutionState.FAILED]
    store.close()
