"""CLI start: `bacalhau --help` through the launcher, vs a bare `python -c pass`.

Target: <= 150 ms. The bare interpreter start is the floor the CLI cannot go
under; the ratio shows what our imports add.
"""

from __future__ import annotations

import sys

from bench.common import CLI, Result, in_thread, median, ms, run_command, timed

NAME = "cli"
SAMPLES = 15


def _measure() -> tuple[list[float], list[float]]:
    ours, bare = [], []
    run_command([*CLI, "--help"])  # warm the page cache and .pyc files
    for _ in range(SAMPLES):
        # Interleaved, so both see the same machine load.
        ours.append(timed(lambda: run_command([*CLI, "--help"])))
        bare.append(timed(lambda: run_command([sys.executable, "-c", "pass"])))
    return ours, bare


async def run(ctx) -> list[Result]:
    ours, bare = await in_thread(_measure)
    value, raw = ms(median(ours)), ms(median(bare))
    return [
        Result(
            name="CLI start (bacalhau --help)",
            median=value,
            raw=raw,
            ratio=round(value / raw, 2),
            target="<= 150 ms",
            met=value <= 150,
            samples=[ms(t) for t in ours],
            command="python -m bench cli  # cmd/bacalhau --help vs python -c pass",
        )
    ]
