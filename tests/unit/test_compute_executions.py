"""An execution's life on the compute side, through the one transition table, over the in-memory transport.

The compute service runs noop jobs (no container) published locally (no
IPFS); a scripted requester records what it hears and answers as told.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bacalhau_py.compute.bidding import BidPolicy, BidStrategy
from bacalhau_py.compute.capacity import Capacity, CapacityTracker
from bacalhau_py.compute.service import ComputeService
from bacalhau_py.context import ProviderContext
from bacalhau_py.executor.noop import NoopExecutor
from bacalhau_py.models import ExecutionState, JobSpec
from bacalhau_py.models.messages import (
    Ack,
    AskBid,
    BidDecision,
    CancelExecution,
    ExecutionStatusRequest,
    ExecutionUpdate,
    ResultProposal,
    ResultVerdict,
)
from bacalhau_py.publisher.local import LocalPublisher
from bacalhau_py.transport import MemoryNetwork, MemoryTransport

E = ExecutionState
NOOP = JobSpec.model_validate({"task": {"engine": "noop"}, "publisher": "local"})


class Requester:
    """Records the compute node's reports; refuses result proposals when told to."""

    def __init__(self) -> None:
        self.proposals: list[ResultProposal] = []
        self.updates: list[ExecutionUpdate] = []
        self.refuse_results = ""
        self.unanswered = 0
        """How many result proposals get no answer (their acknowledgement lost)."""
        self.heard = trio.Event()

    async def on_request(self, sender, message):
        match message:
            case ResultProposal():
                self.proposals.append(message)
            case ExecutionUpdate():
                self.updates.append(message)
        self.heard.set()
        self.heard = trio.Event()
        if isinstance(message, ResultProposal) and self.unanswered:
            self.unanswered -= 1
            await trio.sleep_forever()  # until the sender gives up on this attempt
        if isinstance(message, ResultProposal) and self.refuse_results:
            return Ack(ok=False, message=self.refuse_results)
        return Ack()

    async def on_gossip(self, sender, message):
        pass

    async def on_stream_request(self, sender, message):
        if False:
            yield b""


class ComputeNode:
    def __init__(self, service: ComputeService) -> None:
        self.service = service

    async def on_request(self, sender, message):
        match message:
            case AskBid():
                return await self.service.on_ask_bid(sender, message)
            case BidDecision():
                return await self.service.on_bid_decision(sender, message)
            case CancelExecution():
                return await self.service.on_cancel(sender, message)
            case ResultVerdict():
                return await self.service.on_result_verdict(sender, message)
            case ExecutionStatusRequest():
                return await self.service.on_status_request(sender, message.execution_id)
        return Ack(ok=False, message=f"unexpected {message.kind}")

    async def on_gossip(self, sender, message):
        pass

    async def on_stream_request(self, sender, message):
        if False:
            yield b""


@pytest.fixture
async def pair(nursery, tmp_path):
    net = MemoryNetwork()
    requester_transport = MemoryTransport(net, "requester")
    requester = Requester()
    await nursery.start(requester_transport.serve, requester)
    compute_transport = MemoryTransport(net, "compute")
    ctx = ProviderContext(ipfs=None, work_dir=tmp_path)
    capacity = CapacityTracker(Capacity(cpu=4, memory=1 << 30, gpu=0))
    service = ComputeService(
        transport=compute_transport,
        work_dir=tmp_path,
        strategy=BidStrategy(BidPolicy(labels={}), capacity, {"noop"}, {}),
        capacity=capacity,
        executors={"noop": NoopExecutor(ctx)},
        storages={},
        publishers={"local": LocalPublisher(ctx)},
    )
    await nursery.start(compute_transport.serve, ComputeNode(service))
    await nursery.start(service.serve)
    return requester_transport, requester, service, capacity


async def bid_and_accept(transport, execution_id: str) -> None:
    reply = await transport.request("compute", AskBid(job_id="job-1", execution_id=execution_id, spec=NOOP))
    assert reply.accepted, reply
    ack = await transport.request("compute", BidDecision(job_id="job-1", execution_id=execution_id, accepted=True))
    assert ack.ok, ack


async def proposed(requester: Requester) -> ResultProposal:
    with trio.fail_after(10):
        while not requester.proposals:
            await requester.heard.wait()
    return requester.proposals[-1]


async def test_an_execution_runs_proposes_and_leaves_memory_with_its_verdict(pair):
    transport, requester, service, capacity = pair
    await bid_and_accept(transport, "e1")
    proposal = await proposed(requester)
    assert proposal.execution_id == "e1" and proposal.exit_code == 0
    # Kept until the verdict: a restarted requester may ask for the proposal again.
    assert service.state_of("e1") is E.RESULT_PROPOSED
    assert await transport.request("compute", ExecutionStatusRequest(execution_id="e1")) == proposal

    ack = await transport.request("compute", ResultVerdict(job_id="job-1", execution_id="e1", accepted=True))
    assert ack.ok
    assert service.state_of("e1") is None and service.running() == 0
    assert capacity.free == capacity.total
    # A second verdict is refused in one line, not a crash.
    again = await transport.request("compute", ResultVerdict(job_id="job-1", execution_id="e1", accepted=True))
    assert not again.ok and "e1" in again.message


async def test_a_refused_result_ends_the_execution(pair):
    transport, requester, service, _ = pair
    requester.refuse_results = "execution is already Lost"
    await bid_and_accept(transport, "e2")
    await proposed(requester)
    await trio.testing.wait_all_tasks_blocked()
    assert service.state_of("e2") is None and service.running() == 0


async def test_a_held_bid_cancelled_or_rejected_leaves_memory_and_frees_capacity(pair):
    transport, _, service, capacity = pair
    for execution_id, message in [
        ("e3", CancelExecution(job_id="job-1", execution_id="e3", reason="given up")),
        ("e4", BidDecision(job_id="job-1", execution_id="e4", accepted=False)),
    ]:
        reply = await transport.request("compute", AskBid(job_id="job-1", execution_id=execution_id, spec=NOOP))
        assert reply.accepted
        assert service.state_of(execution_id) is E.ASKED_FOR_BID
        assert (await transport.request("compute", message)).ok
        assert service.state_of(execution_id) is None
    assert capacity.free == capacity.total


async def test_a_rejection_after_acceptance_is_refused_not_a_bug(pair):
    transport, requester, service, _ = pair
    await bid_and_accept(transport, "e5")
    late = await transport.request("compute", BidDecision(job_id="job-1", execution_id="e5", accepted=False))
    # Refused in one line; the execution goes on to its result.
    assert not late.ok and "already" in late.message
    assert (await proposed(requester)).execution_id == "e5"


async def test_a_repeated_acceptance_is_acknowledged_again_and_runs_once(pair):
    transport, requester, service, _ = pair
    await bid_and_accept(transport, "e6")
    again = await transport.request("compute", BidDecision(job_id="job-1", execution_id="e6", accepted=True))
    assert again.ok
    assert (await proposed(requester)).execution_id == "e6"
    assert (await transport.request("compute", ResultVerdict(job_id="job-1", execution_id="e6", accepted=True))).ok
    await trio.testing.wait_all_tasks_blocked()
    assert [p.execution_id for p in requester.proposals] == ["e6"]
    assert service.state_of("e6") is None


async def test_a_result_proposal_is_sent_again_until_acknowledged(pair):
    transport, requester, service, _ = pair
    requester.unanswered = 1
    await bid_and_accept(transport, "e7")
    with trio.fail_after(10):
        while len(requester.proposals) < 2:
            await requester.heard.wait()
    first, second = requester.proposals
    assert first == second and first.execution_id == "e7"
    assert service.state_of("e7") is E.RESULT_PROPOSED
