"""Eight CLI clients at once, each running `bacalhau wasm run --wait hello.wasm` again and again: jobs/s.

Each client is a thread that runs the whole command as a user types it (a new
process per job, the module sent inline), one after the other; all start
together. jobs/s = jobs / wall time from the start to the last exit. The same
8 threads running the raw program (`python -m bench.raw_wasm hello.wasm`, a
fresh process each) give the raw rate on the same machine, measured right after.
The clients' own CPU per job (their processes' rusage) and the nodes' (psutil:
each node and its kubo child) show where the 2 cores go. Target: >= 20 jobs/s.
"""

from __future__ import annotations

import resource
import sys
import threading
import time

import psutil

from bench.common import CLI, Result, build_wasm, cli_env, in_thread, run_command

NAME = "clients"
CLIENTS = 8
JOBS_PER_CLIENT = 10


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _nodes_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        node = psutil.Process(pid)
        for process in [node, *node.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _rate(command: list[str], env: dict[str, str] | None, pids: list[int] = ()) -> tuple[float, float, float]:
    """(jobs/s, CPU seconds per job of the commands' processes, of the nodes `pids`) for CLIENTS threads."""
    go = threading.Barrier(CLIENTS + 1)
    errors: list[str] = []

    def client() -> None:
        go.wait()
        try:
            for _ in range(JOBS_PER_CLIENT):
                run_command(command, env=env)
        except RuntimeError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    cpu, nodes_cpu = _children_cpu(), _nodes_cpu(pids)
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {CLIENTS} clients failed; first: {errors[0]}")
    jobs = CLIENTS * JOBS_PER_CLIENT
    return jobs / wall, (_children_cpu() - cpu) / jobs, (_nodes_cpu(pids) - nodes_cpu) / jobs


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    module = build_wasm("hello")
    env = cli_env(nodes[0])
    # --no-memo: each job runs (the same job would be served from a receipt).
    ours_cmd = [*CLI, "wasm", "run", "--wait", "--no-memo", str(module)]
    raw_cmd = [sys.executable, "-m", "bench.raw_wasm", str(module)]
    await in_thread(run_command, ours_cmd, env=env)  # warm-up
    rate, cpu, nodes_cpu = await in_thread(_rate, ours_cmd, env, [node.process.pid for node in nodes])
    raw_rate, raw_cpu, _ = await in_thread(_rate, raw_cmd, None)
    return [
        Result(
            name=f"{CLIENTS} CLI clients at once, wasm run --wait",
            median=round(rate, 1),
            unit="jobs/s",
            raw=round(raw_rate, 1),
            ratio=round(rate / raw_rate, 2),
            target=">= 20 jobs/s",
            met=rate >= 20,
            command=f"python -m bench clients  # {CLIENTS} threads x {JOBS_PER_CLIENT} x "
                    "bacalhau wasm run --wait hello.wasm vs python -m bench.raw_wasm hello.wasm",
            extra={"client_cpu_ms_per_job": round(cpu * 1000, 1), "nodes_cpu_ms_per_job": round(nodes_cpu * 1000, 1),
                   "raw_cpu_ms_per_job": round(raw_cpu * 1000, 1), "jobs": CLIENTS * JOBS_PER_CLIENT},
        )
    ]
