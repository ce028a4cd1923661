"""Bacalhau's own Python SDK, unchanged, against a REAL devstack (2 nodes).

The SDK (bacalhau-sdk 1.4.2 with bacalhau-apiclient 1.4.1) pins its own
dependencies, so it lives in a venv of its own, `.venv-sdk`, made by
`make install` (scripts/install.sh). `sdk_client.py` runs in it; this test
starts the devstack, runs each step and checks what the SDK got back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import trio

from bacalhau_py.devstack.stack import devstack
from bacalhau_py.ipfs.client import KuboRPC

REPO = Path(__file__).resolve().parents[2]
SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
SDK_CLIENT = Path(__file__).with_name("sdk_client.py")

pytestmark = pytest.mark.devstack


@pytest.fixture
async def stack(tmp_path):
    if not SDK_PYTHON.exists():
        pytest.fail(f"{SDK_PYTHON} is missing: run `make install` (scripts/install.sh makes the SDK's venv)")
    async with devstack(tmp_path / "stack", 2) as nodes:
        yield nodes


async def sdk(node, config_dir: Path, step: str, argument: str) -> dict:
    env = {
        **os.environ,
        "BACALHAU_API_HOST": node.api_host,
        "BACALHAU_API_PORT": str(httpx.URL(node.api).port),
        "BACALHAU_DIR": str(config_dir),
    }
    env.pop("PYTHONPATH", None)  # the SDK's venv only: nothing of ours on its path
    result = await trio.run_process(
        [str(SDK_PYTHON), str(SDK_CLIENT), step, argument], env=env, capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


async def finished(node, job_id: str) -> str:
    async with httpx.AsyncClient(base_url=node.api, timeout=90) as api:
        response = await api.get(f"/api/v1/jobs/{job_id}/wait", params={"terminal": "true", "timeout": 60})
        return response.json()["state"]


async def running(node, job_id: str) -> None:
    async with httpx.AsyncClient(base_url=node.api, timeout=90) as api:
        job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        with trio.fail_after(60):
            while job["state"] != "Running":
                job = (await api.get(f"/api/v1/jobs/{job_id}/wait", params={"since": job["updated_at"]})).json()


async def test_the_sdk_submits_reads_lists_and_stops(stack, tmp_path):
    first = stack[0]
    config = tmp_path / "sdk-config"
    config.mkdir()

    submitted = await sdk(first, config, "submit", "echo Hello World")
    job_id = submitted["job_id"]
    assert submitted["warnings"] == []
    assert await finished(first, job_id) == "Completed"

    got = await sdk(first, config, "read", job_id)
    assert got["job"] == {"id": job_id, "name": "A Simple Docker Job", "type": "batch", "state": "Completed",
                          "image": "busybox:latest"}
    [execution] = got["executions"]
    assert execution["job_id"] == job_id and execution["state"] == 7 and execution["exit_code"] == 0
    assert execution["node_id"] in {node.peer_id for node in stack}
    assert got["included_executions"] == 1 and got["included_history"] == len(got["history"]) > 0
    assert got["history"][-1]["job_state"] == {"previous": "Running", "new": "Completed"}
    assert any(h["type"] == "ExecutionLevel" and h["execution_state"]["new"] == 7 for h in got["history"])
    [result] = got["results"]
    assert result["type"] == "ipfs" and result["params"]["CID"].startswith(("Qm", "b"))
    assert job_id in got["listed"]

    # The result the SDK pointed at holds the job's stdout (in the IPFS of the node that ran it).
    [ran] = [node for node in stack if node.peer_id == execution["node_id"]]
    async with KuboRPC(ran.ipfs_api) as ipfs:
        folder = await ipfs.get(result["params"]["CID"], tmp_path / "result", timeout=30)
    assert (folder / "stdout").read_text() == "Hello World\n"

    long_job = (await sdk(first, config, "submit", "sleep 120"))["job_id"]
    await running(first, long_job)
    assert (await sdk(first, config, "stop", long_job))["evaluation_id"]
    assert await finished(first, long_job) == "Cancelled"
    assert (await sdk(first, config, "read", long_job))["job"]["state"] == "Stopped"
