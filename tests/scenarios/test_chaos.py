"""Chaos on real devstacks: nodes and their IPFS child die mid-job; the network keeps its jobs.

Each case starts its own small devstack (`bacalhau serve` processes) with a
short `--node-lost-after`, breaks something for real (SIGKILL), and checks
the job's describe output with the job checkers of `scenario.py`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import docker
import httpx
import pytest
import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.devstack.stack import DevNode, devstack, kill, start_again
from bacalhau_py.errors import BacalhauError
from bacalhau_py.executor.base import CONTAINER_LABEL
from scenario import check_job, execution_states, history_contains, job_state, message_contains

pytestmark = pytest.mark.devstack

LOST_AFTER = ["--node-lost-after", "3s"]
REQUESTER_ONLY = [*LOST_AFTER, "--node-type", "requester"]
JOB_TIMEOUT = 120


def sleeper(seconds: int, word: str, **spec) -> dict:
    return {"task": {"engine": "docker", "image": "busybox",
                     "command": ["sh", "-c", f"sleep {seconds}; echo {word}"]}, **spec}


async def submit(api: httpx.AsyncClient, node: DevNode, spec: dict) -> dict:
    response = await api.post(f"{node.api}/api/v1/jobs", json=spec)
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for(api: httpx.AsyncClient, node: DevNode, job: dict, done) -> dict:
    """The job once `done(job)` holds, waiting on the API's change notifications."""
    with trio.fail_after(JOB_TIMEOUT):
        while not done(job):
            params = {"since": job["updated_at"], "timeout": 10}
            job = (await api.get(f"{node.api}/api/v1/jobs/{job['id']}/wait", params=params)).json()
    return job


def running_execution(job: dict) -> dict | None:
    active = [e for e in job["executions"] if e["state"] == "Running"]
    return active[0] if active else None


def terminal(job: dict) -> bool:
    return job["state"] in ("Completed", "Failed", "Cancelled")


def containers_of(execution_id: str) -> list:
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={execution_id}"})
    finally:
        client.close()


async def stdout_of(api: httpx.AsyncClient, node: DevNode, job_id: str) -> str:
    logs = (await api.get(f"{node.api}/api/v1/jobs/{job_id}/logs")).text
    frames = [json.loads(line) for line in logs.splitlines()]
    return b"".join(base64.b64decode(f["data"]) for f in frames if f.get("stream") == "stdout").decode()


async def test_a_compute_node_killed_mid_job_its_job_completes_elsewhere_and_its_container_goes(tmp_path):
    # Node 0 only takes jobs; nodes 1 and 2 run them.
    async with devstack(tmp_path, 3, node_args=[REQUESTER_ONLY, LOST_AFTER, LOST_AFTER]) as stack:
        requester = stack[0]
        async with httpx.AsyncClient(timeout=30) as api:
            job = await submit(api, requester, sleeper(6, "survived"))
            job = await wait_for(api, requester, job, running_execution)
            first = running_execution(job)
            victim = next(n for n in stack if n.peer_id == first["node_id"])
            with trio.fail_after(JOB_TIMEOUT):
                while not containers_of(first["id"]):
                    await trio.sleep(0.2)  # the container starts once the node has the image ready

            await kill(victim)
            job = await wait_for(api, requester, job, terminal)
            check_job(job, [
                job_state("Completed"),
                execution_states("Lost", "ResultAccepted"),
                history_contains(f"rescheduled: node {victim.peer_id[-8:]} lost"),
            ])
            assert job["executions"][1]["node_id"] not in (victim.peer_id, requester.peer_id)
            assert await stdout_of(api, requester, job["id"]) == "survived\n"

            # The crash left the first run's container behind; the node removes it when it starts again.
            assert containers_of(first["id"])
            await start_again(victim, stack)
            assert not containers_of(first["id"])


async def test_a_lost_node_with_no_other_to_take_over_fails_its_job_naming_it(tmp_path):
    async with devstack(tmp_path, 2, node_args=[REQUESTER_ONLY, LOST_AFTER]) as stack:
        requester, compute = stack
        async with httpx.AsyncClient(timeout=30) as api:
            job = await submit(api, requester, sleeper(30, "never"))
            job = await wait_for(api, requester, job, running_execution)
            await kill(compute)
            job = await wait_for(api, requester, job, terminal)
            check_job(job, [
                job_state("Failed"),
                message_contains(f"node {compute.peer_id[-8:]} lost"),
                execution_states("Lost"),
            ])


async def test_a_killed_requester_takes_its_jobs_up_again_after_a_restart(tmp_path):
    async with devstack(tmp_path, 2, node_args=[LOST_AFTER, [*LOST_AFTER, "--labels", "zone=far"]]) as stack:
        requester, far = stack
        async with httpx.AsyncClient(timeout=30) as api:
            job = await submit(api, requester, sleeper(3, "picked up", selector={"zone": "far"}))
            job = await wait_for(api, requester, job, running_execution)
            # Killed, not stopped: no drain, the job stays Running in its store.
            await kill(requester)
            await start_again(requester, stack)
            job = await wait_for(api, requester, job, terminal)
            check_job(job, [
                job_state("Completed"),
                execution_states("ResultAccepted"),
                history_contains("the requester node restarted: following its executions again"),
            ])
            assert job["executions"][0]["node_id"] == far.peer_id
            assert await stdout_of(api, requester, job["id"]) == "picked up\n"


async def test_a_killed_ipfs_child_is_restarted_and_a_later_job_reads_its_data(tmp_path):
    async with devstack(tmp_path, 1, node_args=[LOST_AFTER]) as stack:
        (node,) = stack
        kubo = _children(node.process.pid)
        assert len(kubo) == 1, f"expected one kubo child of the node, found {kubo}"
        os.kill(kubo[0], signal.SIGKILL)

        data = tmp_path / "data.txt"
        data.write_text("kept in ipfs\n")
        async with httpx.AsyncClient(timeout=30) as api:
            cid = await _ipfs_add_once_recovered(node, data)
            spec = {"task": {"engine": "docker", "image": "busybox", "command": ["cat", "/inputs/data.txt"]},
                    "inputs": [{"source": "ipfs", "cid": cid, "path": "/inputs/data.txt"}]}
            job = await wait_for(api, node, await submit(api, node, spec), terminal)
            check_job(job, [job_state("Completed"), execution_states("ResultAccepted")])
            assert await stdout_of(api, node, job["id"]) == "kept in ipfs\n"
        assert _children(node.process.pid) != kubo, "the kubo child was not replaced"


async def _ipfs_add_once_recovered(node: DevNode, path: Path) -> str:
    """Add `path` through the node's API, retrying while its IPFS child restarts."""
    client = APIClient(node.api_host, node.api_port)
    with trio.fail_after(60):
        while True:
            try:
                return await trio.to_thread.run_sync(client.ipfs_add, path)
            except BacalhauError:
                await trio.sleep(0.5)


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return sorted(children)
