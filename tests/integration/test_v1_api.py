"""Bacalhau v1's orchestrator and agent API on a REAL node (embedded IPFS, libp2p, docker), over loopback."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from bacalhau_py.node import Node, NodeConfig

IMAGE = "busybox:latest"
V1 = "/api/v1/orchestrator"


@pytest.fixture
async def node(nursery, tmp_path) -> Node:
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0, labels={"zone": "eu", "gpus": "0"}))
    await nursery.start(node.serve)
    return node


@pytest.fixture
async def api(node: Node):
    host, port = node.api_address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=90) as client:
        yield client


def v1_job(*command: str, **task) -> dict:
    return {
        "Name": "v1-test", "Type": "batch", "Count": 1,
        "Tasks": [{
            "Name": "main",
            "Engine": {"Type": "docker", "Params": {"Image": IMAGE, "Entrypoint": ["sh", "-c"], "Parameters": list(command)}},
            "Publisher": {"Type": "ipfs"},
            **task,
        }],
    }


async def submit(api: httpx.AsyncClient, job: dict) -> str:
    response = await api.put(f"{V1}/jobs", json={"Job": job})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"JobID", "EvaluationID", "Warnings"}
    return body["JobID"]


async def finished(api: httpx.AsyncClient, job_id: str) -> dict:
    """The v1 job once it is over, waiting with the node's own long poll (one request)."""
    response = await api.get(f"/api/v1/jobs/{job_id}/wait", params={"terminal": "true", "timeout": 60})
    assert response.json()["state"] in ("Completed", "Failed", "Cancelled")
    return (await api.get(f"{V1}/jobs/{job_id}", params={"include": "executions,history"})).json()


async def test_submit_read_back_results_and_logs(api, node):
    script = 'echo "job=$BACALHAU_JOB_ID exec=$BACALHAU_EXECUTION_ID part=$BACALHAU_PARTITION_INDEX/$BACALHAU_PARTITION_COUNT"; echo r > /results/r.txt; echo oops >&2'
    job_id = await submit(api, v1_job(script, ResultPaths=[{"Name": "results", "Path": "/results"}]))
    got = await finished(api, job_id)

    job = got["Job"]
    assert job["ID"] == job_id and job["Name"] == "v1-test" and job["Namespace"] == "default"
    assert job["State"]["StateType"] == "Completed", got
    assert job["Tasks"][0]["Engine"]["Params"]["Image"] == IMAGE
    assert {"Name": "results", "Path": "/results"} in job["Tasks"][0]["ResultPaths"]
    [execution] = got["Executions"]["Items"]
    assert execution["JobID"] == job_id and execution["NodeID"] == node.peer_id
    assert execution["ComputeState"]["StateType"] == 7 and execution["RunOutput"]["ExitCode"] == 0
    cid = execution["PublishedResult"]["Params"]["CID"]
    history = got["History"]["Items"]
    assert history[-1]["JobState"]["New"] == "Completed"
    assert any(h["Type"] == "ExecutionLevel" and h["ExecutionID"] == execution["ID"] for h in history)

    assert (await api.get(f"{V1}/jobs/{job_id}/executions")).json()["Items"][0]["ID"] == execution["ID"]
    assert (await api.get(f"{V1}/jobs/{job_id}/history", params={"event_type": "job"})).json()["Items"][-1]["JobState"]["New"] == "Completed"
    results = (await api.get(f"{V1}/jobs/{job_id}/results")).json()
    assert results == {"Items": [{"Type": "ipfs", "Params": {"CID": cid}}], "NextToken": ""}

    # The job saw Bacalhau's variables; its logs come over plain HTTP and over v1's websocket.
    expected = f"job={job_id} exec={execution['ID']} part=0/1\n"
    lines = [json.loads(line) for line in (await api.get(f"{V1}/jobs/{job_id}/logs")).text.splitlines()]
    assert [m["value"]["Line"] for m in lines if m["value"]["Type"] == 1] == [expected]
    assert [m["value"]["Line"] for m in lines if m["value"]["Type"] == 2] == ["oops\n"]
    host, port = node.api_address
    streamed = []
    async with open_websocket_url(f"ws://{host}:{port}{V1}/jobs/{job_id}/logs") as websocket:
        with trio.fail_after(30):
            while len(streamed) < 2:
                streamed.append(json.loads(await websocket.get_message())["value"])
    assert {(m["Type"], m["Line"]) for m in streamed} == {(1, expected), (2, "oops\n")}


async def test_a_wasm_job_with_an_inline_module(api, wasm_modules):
    module = "data:application/wasm;base64," + base64.b64encode(wasm_modules["hello"].read_bytes()).decode()
    job_id = await submit(api, {"Type": "batch", "Tasks": [{"Name": "main", "Engine": {"Type": "wasm", "Params": {
        "EntryModule": {"Source": {"Type": "inline", "Params": {"URL": module}}, "Target": "/app/hello.wasm"},
        "EntryPoint": "_start",
    }}}]})
    assert (await finished(api, job_id))["Job"]["State"]["StateType"] == "Completed"
    lines = [json.loads(line) for line in (await api.get(f"{V1}/jobs/{job_id}/logs")).text.splitlines()]
    assert [m["value"]["Line"] for m in lines] == ["hello world\n"]


async def test_list_pages_newest_first(api):
    ids = [await submit(api, v1_job(f"echo {n}")) for n in range(3)]
    for job_id in ids:
        await finished(api, job_id)
    first = (await api.get(f"{V1}/jobs", params={"limit": 2})).json()
    assert [j["ID"] for j in first["Items"]] == ids[::-1][:2] and first["NextToken"]
    second = (await api.get(f"{V1}/jobs", params={"limit": 2, "next_token": first["NextToken"]})).json()
    assert [j["ID"] for j in second["Items"]] == ids[:1] and second["NextToken"] == ""
    oldest_first = (await api.get(f"{V1}/jobs", params={"reverse": "true"})).json()
    assert [j["ID"] for j in oldest_first["Items"]] == ids


async def test_stop_a_running_job(api):
    job_id = await submit(api, v1_job("sleep 60"))
    with trio.fail_after(60):
        while (await api.get(f"{V1}/jobs/{job_id}")).json()["Job"]["State"]["StateType"] != "Running":
            await api.get(f"/api/v1/jobs/{job_id}/wait", params={"since": (await api.get(f"/api/v1/jobs/{job_id}")).json()["updated_at"]})
    response = await api.delete(f"{V1}/jobs/{job_id}", params={"reason": "enough"})
    assert response.status_code == 200 and "EvaluationID" in response.json()
    assert (await finished(api, job_id))["Job"]["State"]["StateType"] == "Stopped"


async def test_constraints_pick_nodes_by_label(api):
    ok = await submit(api, {**v1_job("echo fits"), "Constraints": [
        {"Key": "zone", "Operator": "in", "Values": ["eu", "us"]}, {"Key": "gpus", "Operator": "lt", "Values": ["1"]}]})
    assert (await finished(api, ok))["Job"]["State"]["StateType"] == "Completed"
    refused = await submit(api, {**v1_job("echo never"), "Constraints": [{"Key": "zone", "Operator": "=", "Values": ["asia"]}]})
    got = await finished(api, refused)
    assert got["Job"]["State"]["StateType"] == "Failed"
    assert "constraint zone" in got["Job"]["State"]["Message"]


async def test_errors_in_v1_shape_and_the_node_keeps_serving(api, node):
    bad = v1_job("true")
    bad["Tasks"][0]["Resources"] = {"Disk": "lots"}
    response = await api.put(f"{V1}/jobs", json={"Job": bad})
    assert response.status_code == 400
    body = response.json()
    assert body["Status"] == 400 and body["Message"].startswith("Job.Tasks[0].Resources.Disk:") and body["message"] == body["Message"]
    for payload in (b"{not json", b'{"Job": 3}', b"[]"):
        response = await api.put(f"{V1}/jobs", content=payload)
        assert response.status_code == 400 and "\n" not in response.json()["Message"]
    response = await api.get(f"{V1}/jobs/00000000-no-such-job")
    assert response.status_code == 404 and response.json()["Code"] == "NotFound"
    response = await api.get(f"{V1}/jobs", params={"next_token": "forged"})
    assert response.status_code == 400 and response.json()["Message"].startswith("next_token:")
    response = await api.get(f"{V1}/jobs", params={"limit": "-1"})
    assert response.status_code == 400 and response.json()["Message"].startswith("query.limit:")
    response = await api.get(f"{V1}/jobs/00000000-no-such-job", params={"include": "secrets"})
    assert response.status_code == 404
    host, port = node.api_address
    async with open_websocket_url(f"ws://{host}:{port}{V1}/jobs/00000000-no-such-job/logs") as websocket:
        with trio.fail_after(30):
            message = json.loads(await websocket.get_message())
    assert "00000000-no-such-job" in message["error"]
    assert (await api.get("/api/v1/agent/alive")).json() == {"Status": "OK"}


async def test_agent_and_nodes(api, node):
    assert (await api.get("/api/v1/agent/alive")).json() == {"Status": "OK"}
    assert (await api.get("/api/v1/agent/version")).json()["GitVersion"].startswith("v")
    me = (await api.get("/api/v1/agent/node")).json()
    assert me["Info"]["NodeID"] == node.peer_id and me["Info"]["NodeType"] == "Compute"
    assert me["Info"]["Labels"] == {"zone": "eu", "gpus": "0"}
    assert "docker" in me["Info"]["ComputeNodeInfo"]["ExecutionEngines"]
    nodes = (await api.get(f"{V1}/nodes")).json()
    assert [n["Info"]["NodeID"] for n in nodes["Items"]] == [node.peer_id]
    assert (await api.get(f"{V1}/nodes/{node.peer_id}")).json()["Node"]["Info"]["NodeID"] == node.peer_id
    response = await api.get(f"{V1}/nodes/QmNoSuchNode")
    assert response.status_code == 404 and response.json()["Code"] == "NotFound"
