"""Devstack start: seconds from `devstack()` to every node knowing every other, 5 starts each of 3 and 10 nodes.

Each start is a fresh stack (new repos: new keys, new IPFS repos), as a
user's first `bacalhau devstack` is. The spread (min, median, max) matters as
much as the median: a test bed whose start time wanders makes every suite
built on it flaky. No raw tool to compare with: this is the project's own cost.
"""

from __future__ import annotations

import time

from bench.common import Result, fresh_dir, median
from bacalhau_py.devstack.stack import devstack

NAME = "devstack"
SIZES = (3, 10)
STARTS = 5


async def run(ctx) -> list[Result]:
    rows = []
    for size in SIZES:
        samples = []
        for start in range(STARTS):
            root = fresh_dir(f"devstack-start-{size}-{start}")
            begin = time.perf_counter()
            async with devstack(root, size):
                samples.append(time.perf_counter() - begin)
        rows.append(Result(
            name=f"devstack start, {size} nodes (s; min/median/max)",
            median=round(median(samples), 2),
            unit="s",
            target="every start succeeds",
            met=len(samples) == STARTS,
            command=f"devstack({size}) x{STARTS}, fresh repos",
            samples=[round(s, 2) for s in samples],
            extra={"min": round(min(samples), 2), "max": round(max(samples), 2)},
        ))
    return rows
