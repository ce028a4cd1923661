"""Burst: 500 no-op and 200 wasm jobs submitted at once from 16 clients.

Each client is a thread with its own HTTP connection to the first node (the
requester users talk to); it submits its share as fast as the API answers,
then long-polls each of its jobs to the end. Throughput uses the server's
own timestamps (the job's `updated_at` when Completed, same machine clock),
so a client's late poll does not count against the network.

Checks, all required: every job Completed; 700 distinct IDs; the requester
lists each exactly once; each job has exactly one accepted execution
(concurrency 1: one result taken), and any other is one the requester gave
up on (Lost: its node was taken for lost or could not be told to start)
before it rescheduled the job. Those jobs are counted (`rescheduled`): such
a first node may have started the job too, and is told to stop when it is
heard from again (its result is refused). Target: >= 60 no-op jobs/s.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime

from bench.common import Result, build_wasm, client_of, in_thread, noop_spec, wait_terminal, wasm_spec

NAME = "burst"
NOOP_JOBS = 500
WASM_JOBS = 200
CLIENTS = 16


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def burst(node, noop: int, wasm: int, clients: int, module) -> dict:
    """Run the burst against `node`; return counts, timings and every problem found."""
    kinds = ["noop"] * noop + ["wasm"] * wasm
    random.Random(5).shuffle(kinds)  # mixed, but the same mix every run
    specs = {"noop": noop_spec(), "wasm": wasm_spec(module)}
    shares = [kinds[i::clients] for i in range(clients)]
    jobs: list[tuple[str, dict]] = []
    errors: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(clients + 1)

    def client_main(share: list[str]) -> None:
        with client_of(node, timeout=120.0) as client:
            go.wait()
            submitted = []
            try:
                for kind in share:
                    submitted.append((kind, client.submit(specs[kind])))
                for kind, job in submitted:
                    done = wait_terminal(client, job, timeout=300.0)
                    with lock:
                        jobs.append((kind, done))
            except Exception as error:  # noqa: BLE001 - reported as a failed check
                with lock:
                    errors.append(f"client: {error}")

    threads = [threading.Thread(target=client_main, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    go.wait()
    start_wall = time.time()
    for thread in threads:
        thread.join()
    elapsed = time.time() - start_wall

    problems = list(errors)
    ids = [job["id"] for _, job in jobs]
    if len(ids) != noop + wasm:
        problems.append(f"{noop + wasm - len(ids)} jobs lost")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicated job IDs")
    rescheduled = 0
    for kind, job in jobs:
        executions = job["executions"]
        accepted = [e for e in executions if e["verification"] == "accepted"]
        given_up = [e for e in executions if e["state"] == "Lost"]
        if job["state"] != "Completed":
            problems.append(f"{kind} job {job['id'][:8]} {job['state']}: {job.get('message')}")
        elif len(accepted) != 1 or len(accepted) + len(given_up) != len(executions):
            problems.append(f"{kind} job {job['id'][:8]} has {len(executions)} executions, {len(accepted)} accepted")
        rescheduled += bool(given_up)
    with client_of(node) as client:
        listed = [j["id"] for j in client.list_jobs(limit=10_000)]
    mine = set(ids)
    if sorted(i for i in listed if i in mine) != sorted(mine):
        problems.append("the requester's job list does not hold each burst job exactly once")

    def done_by(kind: str) -> float:
        ends = [_ts(job["updated_at"]) for k, job in jobs if k == kind and job["state"] == "Completed"]
        return (max(ends) - start_wall) if ends else float("nan")

    return {
        "elapsed": elapsed,
        "noop_done": done_by("noop"),
        "all_done": max(done_by("noop"), done_by("wasm")),
        "completed": sum(1 for _, job in jobs if job["state"] == "Completed"),
        "rescheduled": rescheduled,
        "problems": problems,
    }


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    module = build_wasm("hello")
    stats = await in_thread(burst, nodes[0], NOOP_JOBS, WASM_JOBS, CLIENTS, module)
    noop_rate = NOOP_JOBS / stats["noop_done"]
    all_rate = (NOOP_JOBS + WASM_JOBS) / stats["all_done"]
    ok = not stats["problems"]
    return [
        Result(
            name=f"burst {NOOP_JOBS} noop + {WASM_JOBS} wasm, {CLIENTS} clients",
            median=round(noop_rate, 1),
            unit="noop jobs/s",
            target=">= 60 noop jobs/s, all Completed, none lost/duplicated",
            met=ok and noop_rate >= 60,
            command="python -m bench burst",
            extra={
                "all_jobs_per_s": round(all_rate, 1),
                "completed": stats["completed"],
                "rescheduled": stats["rescheduled"],
                "wall_s": round(stats["elapsed"], 1),
                "problems": stats["problems"][:20],
                "problem_count": len(stats["problems"]),
            },
        )
    ]
