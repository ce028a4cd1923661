"""`python -m bench [NAME...]`: run benchmarks, print the table, write .state/bench/results.json.

One 3-node devstack is shared by the benchmarks that need "the devstack"
(started on first use, stopped at the end); data and scale start their own.
Results of a partial run are merged into results.json, so one row can be
re-measured without losing the others.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from contextlib import AsyncExitStack

import psutil
import trio

from bench.common import RESULTS, STATE, Result, load_results, stack

# Run order: cheap first; burst after the single-job rows (it fills the job
# store); the data and scale rows start devstacks of their own.
MODULES = ["cli_start", "noop", "docker_job", "wasm_job", "cli_clients", "memo", "burst", "data", "scale", "devstack_start", "lost_node"]
# Run alone only when named: `scale` runs them as its own part.
PARTS = ["simulate"]


class Context:
    def __init__(self, exits: AsyncExitStack) -> None:
        self._exits = exits
        self._nodes = None

    async def stack(self):
        if self._nodes is None:
            self._nodes = await self._exits.enter_async_context(stack("stack3", 3))
        return self._nodes


def _selected(names: list[str]):
    modules = [importlib.import_module(f"bench.{name}") for name in MODULES]
    if not names:
        return modules
    parts = {name: importlib.import_module(f"bench.{name}") for name in PARTS}
    by_name = {m.NAME: m for m in modules} | {name: m for name, m in zip(MODULES, modules)} | parts
    unknown = [n for n in names if n not in by_name]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; expected some of {', '.join(m.NAME for m in modules)}")
    return [by_name[n] for n in names]


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[Result]) -> None:
    header = f"{'benchmark':44} {'median':>10} {'unit':11} {'raw':>9} {'ratio':>6}  {'target':34} met"
    print(header)
    print("-" * len(header))
    for row in rows:
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        print(f"{row.name[:44]:44} {_fmt(row.median):>10} {row.unit:11} {_fmt(row.raw):>9} "
              f"{_fmt(row.ratio, 2):>6}  {row.target[:34]:34} {met}")


def machine() -> dict:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


async def main(names: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    about = machine()
    rows: list[Result] = []
    failures = 0
    started = time.monotonic()
    async with AsyncExitStack() as exits:
        ctx = Context(exits)
        for module in _selected(names):
            print(f"== {module.NAME}", file=sys.stderr, flush=True)
            begin = time.monotonic()
            try:
                got = await module.run(ctx)
            except Exception as error:  # noqa: BLE001 - one broken benchmark must not hide the rest
                failures += 1
                print(f"   {module.NAME} FAILED: {error!r}", file=sys.stderr, flush=True)
                continue
            for row in got:
                row.extra["module"] = module.NAME
                print(f"   {row.name}: {row.median} {row.unit}"
                      + (f" (raw {row.raw}, ratio {row.ratio})" if row.raw is not None else ""),
                      file=sys.stderr, flush=True)
            print(f"   ({time.monotonic() - begin:.0f} s)", file=sys.stderr, flush=True)
            rows.extend(got)
    merged = load_results() | {row.name: row.as_dict() for row in rows}
    RESULTS.write_text(json.dumps({"machine": about, "results": merged}, indent=2) + "\n")
    print()
    print_table(rows)
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s; machine: {about['cpus']} CPUs "
          f"{about['cpu_model']}, load {about['load_avg_at_start']}; written to {RESULTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
