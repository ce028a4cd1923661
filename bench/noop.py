"""A no-op job, submit to Completed through the API: what the network itself costs.

One client, jobs one after another, each timed from the POST to the moment
the long-poll returns it Completed. Target: median <= 15 ms.
"""

from __future__ import annotations

import time

from bench.common import Result, client_of, in_thread, median, ms, noop_spec, submit_and_wait

NAME = "noop"
SAMPLES = 40
WARMUP = 5


def _measure(client, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        submit_and_wait(client, noop_spec())
        times.append(time.perf_counter() - start)
    return times


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    with client_of(nodes[0]) as client:
        await in_thread(_measure, client, WARMUP)
        times = await in_thread(_measure, client, SAMPLES)
    value = ms(median(times))
    return [
        Result(
            name="noop job, submit -> Completed (API)",
            median=value,
            target="<= 15 ms",
            met=value <= 15,
            samples=[ms(t) for t in times],
            command="python -m bench noop",
            extra={"p90": ms(sorted(times)[int(len(times) * 0.9)])},
        )
    ]
