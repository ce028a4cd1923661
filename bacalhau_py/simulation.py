"""A network of hundreds or thousands of nodes in one process, on simulated time.

Each node is a real `Node` (its dispatch, its membership, its directory)
with the real `RequesterService` and `ComputeService`; only the transport
(`MemoryNetwork`, with latency and loss) and the clock (trio's `MockClock`)
differ from a real network, and the node runs no IPFS and no HTTP API.
Compute nodes run the noop executor and publish locally, so a job costs
exactly the network's work: announce, bid, accept, report, verify.

`run(size, ...)` builds the network, submits jobs to one requester and
measures, for each job, the messages that carried it, the simulated time to
placement (every needed bid accepted) and to its end. Loss, if any, starts
with the first job. A gossiped announcement (a node's join) reaches each
member once, as GossipSub delivers it to each subscriber (its mesh's
duplicate copies are not modelled).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import psutil
import trio
import trio.testing

from bacalhau_py.compute.capacity import Capacity
from bacalhau_py.context import ProviderContext
from bacalhau_py.directory import NodeDirectory
from bacalhau_py.ipfs.base import IPFSIdentity
from bacalhau_py.jobstore import JobStore
from bacalhau_py.membership import Membership
from bacalhau_py.models import JobSpec, JobState
from bacalhau_py.models.messages import AskBid, Message
from bacalhau_py.node import Node, NodeConfig
from bacalhau_py.requester.service import RequesterService, RequesterTimeouts
from bacalhau_py.transport.memory import Conditions, MemoryNetwork, MemoryTransport

# Each node offers this much: enough for a few noop jobs at once.
NODE_CAPACITY = Capacity(cpu=4, memory=8 << 30, gpu=0)
# The simulated jobs' own timeout and the requester's grace beyond it: a job
# whose messages were lost fails within seconds of simulated time.
JOB_TIMEOUT = 2.0
GRACE = 3.0
# After the last job ends: the messages that follow a job's end (verdicts) arrive.
SETTLE = 1.0


class SimulatedNode(Node):
    """A `Node` wired as `Node.serve` wires it, less IPFS and the HTTP API."""

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        self.transport = self._transport
        self.ipfs_identity = IPFSIdentity(peer_id=f"ipfs-{self.transport.peer_id}", addresses=[])
        self.directory = NodeDirectory(self._own_info, lost_after=config.node_lost_after)
        self.membership = Membership(self.transport, self.directory, self._own_info)
        self.receipts = None
        work = config.repo / "work"
        ctx = ProviderContext(ipfs=None, work_dir=work, labels=config.labels)
        self.compute = await self._build_compute(ctx) if "compute" in config.node_types else None
        self.store = JobStore.open(None) if "requester" in config.node_types else None
        self.requester = (
            RequesterService(
                transport=self.transport, store=self.store, directory=self.directory, results=None,
                timeouts=config.timeouts,
            )
            if "requester" in config.node_types
            else None
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._serve_transport)
                if self.compute:
                    await nursery.start(self.compute.serve)
                if self.requester:
                    await nursery.start(self.requester.serve)
                await self._join_network(nursery)
                task_status.started(self)
        finally:
            if self.store is not None:
                self.store.close()


@dataclass
class JobOutcome:
    job_id: str
    state: str
    message: str
    placed_after: float | None
    """Simulated seconds from submit to every needed bid accepted (None: never placed)."""
    ended_after: float | None
    messages: int = 0
    """Direct messages about this job: requests and their replies."""


@dataclass
class SimulationResult:
    nodes: int
    conditions: Conditions
    jobs: list[JobOutcome]
    background: Counter = field(default_factory=Counter)
    """Messages about no job (joins, heartbeats, repair), by kind."""
    simulated_seconds: float = 0.0
    """From the first node's start to the end of the last job (and `SETTLE`)."""
    real_seconds: float = 0.0
    rss_mb: float = 0.0
    """This process's resident memory with the whole network up."""

    @property
    def completed(self) -> int:
        return sum(1 for j in self.jobs if j.state == JobState.COMPLETED.value)

    def summary(self) -> dict:
        placed = [j.placed_after for j in self.jobs if j.placed_after is not None]
        ended = [j.ended_after for j in self.jobs if j.state == JobState.COMPLETED.value]
        return {
            "nodes": self.nodes,
            "loss": self.conditions.loss,
            "latency_ms": [round(x * 1000, 1) for x in self.conditions.latency],
            "jobs": len(self.jobs),
            "completed": self.completed,
            "placed": len(placed),
            "messages_per_job": _median([j.messages for j in self.jobs]),
            "messages_per_job_max": max((j.messages for j in self.jobs), default=None),
            "placement_ms": _ms(_median(placed)),
            "placement_p95_ms": _ms(_percentile(placed, 95)),
            "completed_ms": _ms(_median(ended)),
            "messages_about_no_job": sum(self.background.values()),
            "simulated_s": round(self.simulated_seconds, 1),
            "real_s": round(self.real_seconds, 1),
            "rss_mb": round(self.rss_mb),
            "failures": sorted({j.message for j in self.jobs if j.state != JobState.COMPLETED.value})[:5],
        }


def run(
    size: int,
    *,
    jobs: int = 20,
    concurrency: int = 1,
    conditions: Conditions = Conditions(latency=(0.001, 0.020)),
    submit_every: float = 0.1,
) -> SimulationResult:
    """Simulate `size` compute nodes (one of them also the requester) and `jobs` noop jobs."""
    clock = trio.testing.MockClock()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bacalhau-sim-") as folder:
        result = trio.run(
            _on_simulated_time, clock, partial(_simulate, Path(folder), size, jobs, concurrency, conditions, submit_every),
            clock=clock,
        )
    result.real_seconds = time.perf_counter() - began
    return result


async def _on_simulated_time(clock: trio.testing.MockClock, simulate):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_advance_time, clock)
        # The network's own shutdown waits on the clock too (bids released within 5 s, ...).
        result = await simulate()
        nursery.cancel_scope.cancel()
    return result


async def _simulate(
    folder: Path, size: int, jobs: int, concurrency: int, conditions: Conditions, submit_every: float
) -> SimulationResult:
    counts = _MessageCounts()
    # Loss starts with the first job: a lost join costs its node the request's timeout (10 s),
    # and the nodes' start is not what is measured.
    network = MemoryNetwork(replace(conditions, loss=0.0), tap=counts.carried)
    timeouts = RequesterTimeouts(grace=GRACE)
    spec = JobSpec.model_validate({
        "task": {"engine": "noop"}, "publisher": "local", "timeout": JOB_TIMEOUT,
        "deal": {"concurrency": concurrency},
    })
    async with trio.open_nursery() as nursery:
        def node(index: int, peers: tuple[str, ...]) -> SimulatedNode:
            roles = {"requester", "compute"} if index == 0 else {"compute"}
            config = NodeConfig(
                repo=folder / f"node-{index}", node_types=frozenset(roles), engines=("noop",),
                limit_total=NODE_CAPACITY, timeouts=timeouts, peers=peers,
            )
            # Eight characters: messages name a node by the last eight of its peer ID.
            return SimulatedNode(config, transport=MemoryTransport(network, f"sim{index:05d}"))

        # The first node is the requester; the others join it, all at once.
        first = await nursery.start(node(0, ()).serve)
        async with trio.open_nursery() as joining:
            for index in range(1, size):
                joining.start_soon(nursery.start, node(index, tuple(first.transport.addresses)).serve)
        requester = first.requester
        network.conditions = conditions
        outcomes: list[JobOutcome] = [None] * jobs  # type: ignore[list-item]

        async def follow(index: int) -> None:
            job = await requester.submit(spec)
            submitted = trio.current_time()
            placed = None
            while True:
                changed = requester.store.changed(job.id)
                job = await requester.store.get(job.id)
                if placed is None and job.state is not JobState.PENDING:
                    placed = trio.current_time() - submitted if job.executions else None
                if job.state.terminal:
                    break
                await changed.wait()
            outcomes[index] = JobOutcome(
                job_id=job.id, state=job.state.value, message=job.message, placed_after=placed,
                ended_after=trio.current_time() - submitted,
            )

        async with trio.open_nursery() as submitting:
            for index in range(jobs):
                submitting.start_soon(follow, index)
                await trio.sleep(submit_every)
        # Verdicts and releases go out after a job ends: they count too.
        await trio.sleep(SETTLE)
        for outcome in outcomes:
            outcome.messages = counts.by_job[outcome.job_id]
        simulated = trio.current_time()
        rss = psutil.Process().memory_info().rss / (1 << 20)
        nursery.cancel_scope.cancel()
    return SimulationResult(size, conditions, outcomes, counts.background, simulated, rss_mb=rss)


class _MessageCounts:
    """Who each carried message was about: a job (by its ID, or an execution's), or none."""

    def __init__(self) -> None:
        self.by_job: Counter[str] = Counter()
        self.background: Counter[str] = Counter()
        self._job_of_execution: dict[str, str] = {}

    def carried(self, sender: str, receiver: str, message: Message, answering: Message | None) -> None:
        about = answering or message
        if isinstance(about, AskBid):
            self._job_of_execution[about.execution_id] = about.job_id
        fields = type(about).model_fields
        job_id = about.job_id if "job_id" in fields else (
            self._job_of_execution.get(about.execution_id) if "execution_id" in fields else None
        )
        if job_id is None:
            self.background[message.kind] += 1
        else:
            self.by_job[job_id] += 1


async def _advance_time(clock: trio.testing.MockClock) -> None:
    """MockClock's autojump, which waits for worker threads (the job store's sqlite, file writes).

    With `autojump_threshold=0` the clock would jump whenever every task
    waits, a task waiting on a thread included: simulated time would pass
    while sqlite writes. Here time stands still until the thread is done, as
    on a machine whose disk is fast next to its network.
    """
    threads = trio.to_thread.current_default_thread_limiter()
    while True:
        if threads.statistics().borrowed_tokens:
            # Real time, not the clock's: the run loop sleeps until the thread reports back.
            await trio.testing.wait_all_tasks_blocked(cushion=0.0005)
            continue
        await trio.testing.wait_all_tasks_blocked()
        if threads.statistics().borrowed_tokens:
            continue
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if 0 < jump < math.inf:
            clock.jump(jump)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(percent / 100 * len(ordered)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
