"""Receipts, memoization and workflows on a real devstack: docker, wasm, embedded kubo, `serve` processes.

The CLI is the real one (a subprocess), as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from bacalhau_py.devstack.stack import DevNode, devstack, restart
from jobs_api import Signed

REPO = Path(__file__).resolve().parents[2]


# Pinned by its ID: a tag can move, so only a pinned image makes a job content-addressed (memoized by default).
BUSYBOX = "busybox@" + subprocess.run(
    ["docker", "image", "inspect", "--format", "{{.Id}}", "busybox:latest"], capture_output=True, text=True, check=True
).stdout.strip()

def bacalhau(node: DevNode, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACALHAU_API_HOST": node.api_host,
           "BACALHAU_API_PORT": str(node.api_port)}
    done = subprocess.run([sys.executable, "-m", "bacalhau_py.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def describe(node: DevNode, job_id: str) -> dict:
    return json.loads(bacalhau(node, "describe", job_id, "--output", "json").stdout)


def describe_workflow(node: DevNode, workflow_id: str) -> dict:
    return json.loads(bacalhau(node, "workflow", "describe", workflow_id, "--output", "json").stdout)


async def in_thread(function, *args, **kwargs):
    return await trio.to_thread.run_sync(lambda: function(*args, **kwargs))


async def test_the_same_work_runs_once_and_its_signed_receipt_is_found_on_any_node(tmp_path):
    async with devstack(tmp_path, 2) as (first, second):
        command = [BUSYBOX, "sh", "-c", "echo computed once"]
        ran = (await in_thread(bacalhau, first, "run", "--wait", "--id-only", *command)).stdout.strip()
        job = describe(first, ran)
        assert job["state"] == "Completed" and len(job["executions"]) == 1
        cid = job["instruction_cid"]

        # The same command with another timeout is the same work: served from the receipt.
        again = (await in_thread(bacalhau, first, "run", "--wait", "--id-only", "--timeout", "99", *command)).stdout
        memoized = describe(first, again.strip())
        assert memoized["state"] == "Completed" and memoized["executions"] == []
        assert memoized["instruction_cid"] == cid
        assert "memoized from receipt" in memoized["message"] and first.peer_id in memoized["message"]
        assert (await in_thread(bacalhau, first, "logs", memoized["id"])).stdout == "computed once\n"
        results = tmp_path / "memoized"
        await in_thread(bacalhau, first, "get", memoized["id"], "--output-dir", str(results))
        assert (results / "stdout").read_text() == "computed once\n"

        # --no-memo runs it again.
        fresh = (await in_thread(bacalhau, first, "run", "--wait", "--id-only", "--no-memo", *command)).stdout
        assert len(describe(first, fresh.strip())["executions"]) == 1

        # Asked of the other node, which did not issue it; the client checks the signature itself.
        shown = json.loads((await in_thread(bacalhau, second, "receipt", cid, "--output", "json")).stdout)
        assert shown["verified"] is True
        assert shown["receipt"]["ran"] == cid and shown["receipt"]["issuer"] == first.peer_id
        assert shown["receipt"]["out"]["exit_code"] == 0
        assert shown["receipt"]["executors"] == [job["executions"][0]["node_id"]]

        unknown = await in_thread(bacalhau, second, "receipt",
                                  "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae", check=False)
        assert unknown.returncode == 1 and unknown.stderr.startswith("Error: no receipt for instruction")


def _workflow(cat_cid: str, *, last_nonce: str = "", missing: bool = False) -> dict:
    build = {
        "name": "build",
        "with": BUSYBOX,
        "do": "docker/run",
        "inputs": {
            "args": ["sh", "-c", "cp /inputs/cat.wasm /outputs/cat.wasm && echo made in docker > /outputs/note.txt"],
            "mounts": {"/inputs/cat.wasm": {"/": cat_cid}},
        },
    }
    run = {
        "name": "run",
        "with": {"await/ok": "build", "path": "outputs/missing.wasm" if missing else "outputs/cat.wasm"},
        "do": "wasm32-wasi/run",
        "inputs": {"args": ["/data/note.txt"], "mounts": {"/data": {"await/ok": "build", "path": "outputs"}}},
        **({"nnc": last_nonce} if last_nonce else {}),
    }
    report = {
        "name": "report",
        "with": BUSYBOX,
        "do": "docker/run",
        "inputs": {"args": ["cat", "/in/stdout"], "mounts": {"/in": {"await/ok": "run"}}},
    }
    return {"tasks": [build, run, *([report] if missing else [])]}


async def test_a_docker_task_builds_what_a_wasm_task_runs_and_reruns_come_from_receipts(tmp_path, wasm_modules):
    async with devstack(tmp_path, 2) as (first, _):
        cat_cid = (await in_thread(bacalhau, first, "ipfs", "add", str(wasm_modules["cat"]))).stdout.strip()
        flow = tmp_path / "flow.json"
        flow.write_text(json.dumps(_workflow(cat_cid)))
        workflow_id = (await in_thread(bacalhau, first, "workflow", "run", str(flow), "--wait", "--id-only")).stdout
        described = describe_workflow(first, workflow_id.strip())
        assert described["state"] == "Completed"
        assert [t["name"] for t in described["tasks"]] == ["build", "run"]
        assert all(t["state"] == "Completed" and t["result_cid"] and t["job_id"] for t in described["tasks"])
        assert described["tasks"][1]["awaits"] == ["build"]

        results = tmp_path / "results"
        await in_thread(bacalhau, first, "workflow", "get", workflow_id.strip(), "--output-dir", str(results))
        assert (results / "build" / "outputs" / "cat.wasm").read_bytes() == wasm_modules["cat"].read_bytes()
        assert (results / "run" / "stdout").read_text() == "made in docker\n"

        # The same workflow again: every task from its receipt, nothing runs.
        again = (await in_thread(bacalhau, first, "workflow", "run", str(flow), "--wait", "--id-only")).stdout
        rerun = describe_workflow(first, again.strip())
        assert [t["instruction_cid"] for t in rerun["tasks"]] == [t["instruction_cid"] for t in described["tasks"]]
        for task in rerun["tasks"]:
            job = describe(first, task["job_id"])
            assert job["executions"] == [] and "memoized from receipt" in job["message"], task["name"]

        # A changed last task: only it runs.
        flow.write_text(json.dumps(_workflow(cat_cid, last_nonce="changed")))
        changed = (await in_thread(bacalhau, first, "workflow", "run", str(flow), "--wait", "--id-only")).stdout
        build, run = describe_workflow(first, changed.strip())["tasks"]
        assert describe(first, build["job_id"])["executions"] == []
        assert len(describe(first, run["job_id"])["executions"]) == 1
        assert run["result_cid"] and run["state"] == "Completed"


async def test_a_task_awaiting_a_failed_task_fails_naming_it(tmp_path, wasm_modules):
    async with devstack(tmp_path, 1) as (node,):
        cat_cid = (await in_thread(bacalhau, node, "ipfs", "add", str(wasm_modules["cat"]))).stdout.strip()
        flow = tmp_path / "flow.json"
        flow.write_text(json.dumps(_workflow(cat_cid, missing=True)))
        done = await in_thread(bacalhau, node, "workflow", "run", str(flow), "--wait", "--id-only", check=False)
        assert done.returncode == 1 and done.stderr.startswith("Error: workflow ")
        build, run, report = describe_workflow(node, done.stdout.strip())["tasks"]
        assert build["state"] == "Completed"
        assert run["state"] == "Failed"
        assert run["message"] == "could not start: awaited task 'build' has no 'outputs/missing.wasm' in its result"
        assert report["state"] == "Failed" and report["job_id"] is None
        assert report["message"].startswith("awaited task 'run' Failed: could not start")


async def test_a_workflow_survives_a_requester_restart(tmp_path):
    far = {"bacalhau/config": {"selector": {"zone": "far"}}}
    flow = {"tasks": [
        {"name": "slow", "with": BUSYBOX, "do": "docker/run", "meta": far,
         "inputs": {"args": ["sh", "-c", "sleep 2; echo first > /outputs/first.txt"], "network": "none"}},
        {"name": "next", "with": BUSYBOX, "do": "docker/run", "meta": far,
         "inputs": {"args": ["cat", "/in/outputs/first.txt"], "mounts": {"/in": {"await/ok": "slow"}}}},
    ]}
    async with devstack(tmp_path, 2, node_args=[[], ["--labels", "zone=far"]]) as stack:
        requester, _ = stack
        async with httpx.AsyncClient(timeout=60, auth=Signed()) as api:
            workflow = (await api.post(f"{requester.api}/api/v1/workflows", json=flow)).json()
            with trio.fail_after(60):
                while (await api.get(f"{requester.api}/api/v1/workflows/{workflow['id']}")).json()["state"] != "Running":
                    await trio.sleep(0.1)
            # Killed, not stopped: the workflow stays Running in its store.
            requester.process.kill()
            await requester.process.wait()
            await restart(requester, stack)

            with trio.fail_after(180):
                while workflow["state"] not in ("Completed", "Failed"):
                    workflow = (await api.get(f"{requester.api}/api/v1/workflows/{workflow['id']}/wait",
                                              params={"timeout": 30})).json()
        assert workflow["state"] == "Completed", workflow
        results = tmp_path / "results"
        await in_thread(bacalhau, requester, "workflow", "get", workflow["id"], "--output-dir", str(results))
        assert (results / "next" / "stdout").read_text() == "first\n"
