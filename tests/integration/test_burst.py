"""Correctness under load (not timed): a burst of jobs against a REAL 3-node devstack.

40 no-op and 10 wasm jobs, submitted at once by 8 concurrent clients (threads,
each with its own connection) to the first node. Every job must end
Completed; none may be lost (each submitted ID comes back Completed and the
requester lists it) or duplicated (IDs unique); none may run twice (each job
has exactly `concurrency` = 1 execution, and it is the accepted one).
Throughput is measured in bench/burst.py, never here.
"""

from __future__ import annotations

import base64
import random
import threading
import time

import pytest
import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.devstack.stack import devstack

pytestmark = pytest.mark.devstack

NOOP_JOBS = 40
WASM_JOBS = 10
CLIENTS = 8
TERMINAL = ("Completed", "Failed", "Cancelled")


def _until_terminal(client: APIClient, job: dict, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while job["state"] not in TERMINAL:
        assert time.monotonic() < deadline, f"job {job['id']} still {job['state']} after {timeout:g}s"
        job = client.wait(job["id"], job["updated_at"], 10.0, terminal=True)
    return job


def _burst(host: str, port: int, specs: list[dict]) -> tuple[list[tuple[dict, dict]], list[BaseException]]:
    """Submit `specs` from CLIENTS threads at once; return (spec, final job) pairs and client errors."""
    shares = [specs[i::CLIENTS] for i in range(CLIENTS)]
    results: list[tuple[dict, dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client_main(share: list[dict]) -> None:
        try:
            with APIClient(host, port, timeout=60.0) as client:
                start.wait()
                submitted = [(spec, client.submit(spec)) for spec in share]
                for spec, job in submitted:
                    final = _until_terminal(client, job)
                    with lock:
                        results.append((spec, final))
        except BaseException as error:  # noqa: BLE001 - re-raised by the test
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=client_main, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


async def test_a_burst_completes_every_job_exactly_once(tmp_path, wasm_modules):
    module = base64.b64encode(wasm_modules["hello"].read_bytes()).decode()
    # Not memoized: every job must run (identical jobs would otherwise be served from a receipt).
    noop = {"task": {"engine": "noop"}, "memo": False}
    wasm = {"task": {"engine": "wasm", "module": {"source": "inline", "path": "/module.wasm", "content": module}},
            "memo": False}
    specs = [noop] * NOOP_JOBS + [wasm] * WASM_JOBS
    random.Random(7).shuffle(specs)

    async with devstack(tmp_path / "stack", 3) as nodes:
        first = nodes[0]
        results, errors = await trio.to_thread.run_sync(_burst, first.api_host, first.api_port, specs)
        assert not errors, errors[:3]
        with APIClient(first.api_host, first.api_port) as client:
            listed = await trio.to_thread.run_sync(lambda: [j["id"] for j in client.list_jobs(limit=1000)])

    ids = [job["id"] for _, job in results]
    assert len(ids) == len(specs), "jobs lost"
    assert len(set(ids)) == len(ids), "duplicated job IDs"
    assert sorted(listed) == sorted(ids), "the requester does not list each job exactly once"
    not_completed = [f"{job['spec']['task']['engine']} {job['state']}: {job.get('message')}"
                     for _, job in results if job["state"] != "Completed"]
    assert not not_completed, f"{len(not_completed)} jobs did not complete, e.g. {not_completed[:3]}"
    for spec, job in results:
        assert job["spec"]["task"]["engine"] == spec["task"]["engine"]
        executions = job["executions"]
        # concurrency 1: exactly one execution, and it is the accepted one (nothing ran twice)
        assert len(executions) == 1, (job["id"], [e["state"] for e in executions])
        assert executions[0]["verification"] == "accepted" and executions[0]["exit_code"] == 0
