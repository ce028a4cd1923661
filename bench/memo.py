"""A memoized docker job vs the same job run, submit to Completed through the API.

The job runs once first (its requester issues the receipt); then, interleaved
sample by sample, the same job again (served from the receipt: no bid, no
container) and with `memo: false` (bid, container, publish, verify).
Target: the memoized one at least 5x faster.
"""

from __future__ import annotations

import subprocess
import time

from bench.common import IMAGE, Result, client_of, in_thread, median, ms, submit_and_wait

NAME = "memo"
SAMPLES = 10


def _spec() -> dict:
    # Pinned by its ID: a job naming an image by tag is never memoized (the tag may move).
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE], check=True, capture_output=True, text=True
    ).stdout.strip()
    return {"task": {"engine": "docker", "image": image_id, "command": ["echo", "computed once"]}}


def _measure(client) -> tuple[list[float], list[float]]:
    spec = _spec()
    first = submit_and_wait(client, spec)
    assert first["executions"], "the first run must run"
    memoized, ran = [], []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        job = submit_and_wait(client, spec)
        memoized.append(time.perf_counter() - start)
        assert not job["executions"] and "memoized" in job["message"], job["message"]
        start = time.perf_counter()
        job = submit_and_wait(client, {**spec, "memo": False})
        ran.append(time.perf_counter() - start)
        assert job["executions"], "memo: false must run"
    return memoized, ran


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    with client_of(nodes[0]) as client:
        memoized, ran = await in_thread(_measure, client)
    value, base = ms(median(memoized)), ms(median(ran))
    speedup = round(base / value, 1)
    return [
        Result(
            name="memoized docker job, submit -> Completed (API)",
            median=value,
            raw=base,
            ratio=round(value / base, 3),
            target=">= 5x faster than running it",
            met=speedup >= 5,
            samples=[ms(t) for t in memoized],
            command=f"python -m bench memo  # {IMAGE} echo: from its receipt vs memo: false",
            extra={"speedup": speedup, "ran_samples": [ms(t) for t in ran]},
        )
    ]
