"""Which nodes a requester asks to bid (requester/selection.py), alone and through `RequesterService`."""

from __future__ import annotations

import random
import uuid
from collections import Counter

from bacalhau_py.models import JobSpec
from bacalhau_py.models.messages import AskBid, NodeInfo
from bacalhau_py.requester.selection import ranked, widened
from bacalhau_py.requester.service import SPARE_BIDDERS

from test_bidding import SPEC, network, wait_terminal  # noqa: F401 - `network` is a fixture

JOB = JobSpec.model_validate(SPEC)


def nodes(count: int, **labels: str) -> list[NodeInfo]:
    return [NodeInfo(peer_id=f"node-{i:04d}", node_types=["compute"], labels=labels) for i in range(count)]


def job_ids(count: int) -> list[str]:
    rng = random.Random(14)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def test_jobs_spread_evenly_over_the_nodes():
    network = nodes(100)
    firsts = Counter(ranked(job_id, JOB, network)[0] for job_id in job_ids(10_000))
    expected = 10_000 / 100
    chi_square = sum((firsts[n.peer_id] - expected) ** 2 / expected for n in network)
    # 99 degrees of freedom: mean 99, and above 150 with probability under 0.1%.
    assert chi_square < 150, chi_square
    assert max(firsts.values()) < 1.5 * expected


def test_a_node_leaving_moves_only_the_jobs_it_ranked_first_for():
    network = nodes(50)
    gone = network[7].peer_id
    for job_id in job_ids(500):
        before = ranked(job_id, JOB, network)
        after = ranked(job_id, JOB, [n for n in network if n.peer_id != gone])
        assert after == [p for p in before if p != gone]


def test_nodes_whose_labels_meet_the_selector_and_constraints_rank_first():
    spec = JobSpec.model_validate(
        {**SPEC, "selector": {"zone": "a"}, "constraints": [{"key": "gpu", "operator": "exists"}]}
    )
    matching = nodes(3, zone="a", gpu="1")
    others = nodes(40, zone="b", gpu="1") + nodes(40, zone="a")
    others = [n.model_copy(update={"peer_id": f"other-{i}"}) for i, n in enumerate(others)]
    for job_id in job_ids(50):
        ranking = ranked(job_id, spec, others + matching)
        assert set(ranking[:3]) == {n.peer_id for n in matching}
        assert len(ranking) == 83  # the others are still there, last


def test_each_round_asks_twice_as_many():
    ranking = [n.peer_id for n in nodes(20)]
    rounds = [ranking[:2]]
    while len(rounds[-1]) < len(ranking):
        rounds.append(widened(ranking, len(rounds[-1])))
    assert [len(r) for r in rounds] == [2, 4, 8, 16, 20]
    assert all(r[: len(p)] == p for p, r in zip(rounds, rounds[1:]))  # a round includes the one before


# -- through the requester ------------------------------------------------------


class Asks:
    """Counts the AskBid messages that reach scripted compute nodes."""

    def __init__(self) -> None:
        self.by_job: Counter[str] = Counter()

    def wrap(self, compute):
        on_request = compute.on_request

        async def counted(sender, message):
            if isinstance(message, AskBid):
                self.by_job[message.job_id] += 1
            return await on_request(sender, message)

        compute.on_request = counted
        return compute


async def test_the_first_round_is_as_big_whatever_the_network(network):
    requester, store, add_compute = network
    asks = Asks()
    for size in (5, 60):
        while len(requester.directory.compute_nodes()) < size:
            asks.wrap(await add_compute(f"c{len(requester.directory.compute_nodes()):03d}"))
        for concurrency in (1, 3):
            spec = JobSpec.model_validate({**SPEC, "deal": {"concurrency": concurrency}})
            job = await wait_terminal(store, (await requester.submit(spec)).id)
            assert job.state.value == "Completed", job.message
            assert asks.by_job[job.id] == concurrency + SPARE_BIDDERS


async def test_refusals_widen_the_rounds_by_doubling_until_a_node_bids(network):
    requester, store, add_compute = network
    asks = Asks()
    refusers = [asks.wrap(await add_compute(f"r{i:02d}", refuse="busy elsewhere")) for i in range(30)]
    willing = asks.wrap(await add_compute("willing"))
    infos = requester.directory.compute_nodes()
    for _ in range(5):
        job = await wait_terminal(store, (await requester.submit(JOB)).id)
        assert job.state.value == "Completed", job.message
        assert [e.node_id for e in job.executions] == [willing.peer_id]
        rank = ranked(job.id, JOB, infos).index(willing.peer_id)
        rounds = [1 + SPARE_BIDDERS]
        while rounds[-1] <= rank:
            rounds.append(min(2 * rounds[-1], len(infos)))
        assert asks.by_job[job.id] == sum(rounds)
    assert refusers  # every refuser answered; none holds capacity
    assert all(not c.reserved for c in refusers)

