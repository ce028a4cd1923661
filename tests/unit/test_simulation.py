"""A simulated network (bacalhau_py/simulation.py): every job placed, at a cost per job that does not grow with the network."""

from __future__ import annotations

from bacalhau_py import simulation
from bacalhau_py.transport.memory import Conditions

LATENCY = Conditions(latency=(0.001, 0.020), seed=7)


def test_every_job_is_placed_and_completes_at_a_cost_independent_of_the_network_size():
    small = simulation.run(50, jobs=6, conditions=LATENCY, submit_every=0.05)
    big = simulation.run(200, jobs=6, conditions=LATENCY, submit_every=0.05)
    for result in (small, big):
        assert [job.state for job in result.jobs] == ["Completed"] * 6, result.summary()["failures"]
        assert all(job.placed_after is not None for job in result.jobs)
        # Placed within a few round trips of 1-20 ms, not after a timeout.
        assert max(job.placed_after for job in result.jobs) < 0.5
    # Ask (2 nodes), accept, reject the spare, running, result, verdict: each a request and a reply.
    assert max(job.messages for job in big.jobs) <= 14
    assert max(job.messages for job in big.jobs) <= max(job.messages for job in small.jobs) + 1


def test_jobs_asking_for_three_nodes_cost_in_proportion_to_three():
    result = simulation.run(200, jobs=4, concurrency=3, conditions=LATENCY, submit_every=0.05)
    assert [job.state for job in result.jobs] == ["Completed"] * 4, result.summary()["failures"]
    # 4 bidders asked; 3 accepted, 1 rejected; each of the 3 reports twice and hears its verdict.
    assert max(job.messages for job in result.jobs) <= 2 * (4 + 4 + 3 * 3)


def test_with_five_percent_of_messages_lost_every_job_still_completes():
    # A lost bid request is covered by the spare bidder; a lost acceptance, report, result or
    # acknowledgement is sent again (transport/delivery.py) well within the job's deadline.
    lossy = Conditions(latency=(0.001, 0.020), loss=0.05, seed=7)
    result = simulation.run(200, jobs=10, conditions=lossy, submit_every=0.05)
    assert [job.state for job in result.jobs] == ["Completed"] * 10, result.summary()["failures"]
