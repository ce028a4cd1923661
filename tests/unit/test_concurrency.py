"""The event-loop stall watch, on trio's mock clock."""

from __future__ import annotations

import trio
import trio.testing

from bacalhau_py.concurrency import watch_stalls


async def test_a_loop_that_runs_late_is_reported_and_one_on_time_is_not(mock_clock):
    reports: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_stalls, reports.append)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(1.0)  # on time
        await trio.testing.wait_all_tasks_blocked()
        assert reports == []
        mock_clock.jump(3.5)  # the loop could not run for 3.5 s
        await trio.testing.wait_all_tasks_blocked()
        assert reports == [2.5]
        nursery.cancel_scope.cancel()
