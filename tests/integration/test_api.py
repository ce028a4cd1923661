"""The HTTP API of a REAL node (embedded IPFS, libp2p, docker) over loopback, through APIClient."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import aleph_cid
import httpx
import pytest
import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.errors import NotFound, UserInputError
from bacalhau_py.node import Node, NodeConfig
from jobs_api import Signed

IMAGE = "busybox:latest"
HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # kubo's CID of b"hello world\n"
TERMINAL = ("Completed", "Failed", "Cancelled")


@pytest.fixture
async def node(nursery, tmp_path) -> Node:
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0))
    await nursery.start(node.serve)
    return node


@pytest.fixture
def client(node: Node):
    host, port = node.api_address
    with APIClient(host, port) as client:
        yield client


async def call(function, *args, **kwargs):
    """The client is synchronous: keep it off the trio thread that runs the node."""
    return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


def docker_spec(*command: str, **extra) -> dict:
    return {"task": {"engine": "docker", "image": IMAGE, "command": list(command)}, **extra}


async def until(client: APIClient, job: dict, states=TERMINAL, timeout: float = 60) -> dict:
    with trio.fail_after(timeout):
        while job["state"] not in states and not any(e["state"] in states for e in job["executions"]):
            job = await call(client.wait, job["id"], job["updated_at"], 10)
    return job


async def test_submit_list_describe_logs_and_results(client, tmp_path):
    script = "echo out; echo err >&2; echo data > /outputs/f.txt; mkdir -p /r && echo r > /r/x; exit 3"
    job = await call(client.submit, docker_spec("sh", "-c", script, outputs=[{"name": "r", "path": "/r"}]))
    assert job["state"] == "Pending" and job["spec"]["task"]["image"] == IMAGE

    job = await until(client, job)
    # A non-zero exit inside the job does not fail the job.
    assert job["state"] == "Completed", job
    [execution] = job["executions"]
    assert execution["exit_code"] == 3 and execution["verification"] == "accepted"
    assert execution["result_cid"].startswith("Qm")

    listed = await call(client.list_jobs, 5)
    assert listed[0]["id"] == job["id"]
    described = await call(client.get_job, job["id"][:8])
    assert described["id"] == job["id"]
    assert {"id", "state", "created_at", "spec", "executions", "message"} <= set(described)

    logs = [item async for item in _aiter(client.logs, job["id"])]
    assert dict(logs) == {"stdout": b"out\n", "stderr": b"err\n"}

    names = await call(client.download_results, job["id"], tmp_path / "results")
    assert names == ["exitCode", "outputs", "r", "stderr", "stdout"]
    results = tmp_path / "results"
    assert (results / "exitCode").read_text().strip() == "3"
    assert (results / "outputs" / "f.txt").read_text() == "data\n"
    assert (results / "r" / "x").read_text() == "r\n"


async def _aiter(method, *args, **kwargs):
    for item in await call(lambda: list(method(*args, **kwargs))):
        yield item


async def test_follow_logs_streams_until_the_job_ends(client):
    job = await call(client.submit, docker_spec("sh", "-c", "echo a; sleep 1; echo b"))
    chunks = [item async for item in _aiter(client.logs, job["id"], follow=True)]
    assert b"".join(data for stream, data in chunks if stream == "stdout") == b"a\nb\n"
    assert (await call(client.get_job, job["id"]))["state"] == "Completed"


async def test_an_ipvm_task_is_a_job_too(client):
    task = {"with": IMAGE, "do": "docker/run", "inputs": {"args": ["echo", "from ipvm"]}}
    job = await until(client, await call(client.submit, task))
    assert job["state"] == "Completed"
    assert [item async for item in _aiter(client.logs, job["id"])] == [("stdout", b"from ipvm\n")]


async def test_ipfs_add_then_mount_the_data(client, tmp_path):
    (tmp_path / "hello.txt").write_text("hello world\n")
    assert await call(client.ipfs_add, tmp_path / "hello.txt") == HELLO_CID
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A\n")
    (folder / "sub" / "b.txt").write_text("B\n")
    cid = await call(client.ipfs_add, folder)
    assert cid == aleph_cid.hash_folder(folder, cid_version=0)

    spec = docker_spec("cat", "/data/sub/b.txt", "/hello.txt", inputs=[
        {"source": "ipfs", "cid": cid, "path": "/data"},
        {"source": "ipfs", "cid": HELLO_CID, "path": "/hello.txt"},
    ])
    job = await until(client, await call(client.submit, spec))
    assert job["state"] == "Completed", job
    assert [item async for item in _aiter(client.logs, job["id"])] == [("stdout", b"B\nhello world\n")]


async def test_cancel_stops_a_running_job(client):
    job = await call(client.submit, docker_spec("sleep", "60"))
    await until(client, job, states=("Running",))
    cancelled = await call(client.cancel, job["id"][:8])
    assert cancelled["state"] == "Cancelled"
    # A terminal job answers a wait at once.
    with trio.fail_after(5):
        assert (await call(client.wait, job["id"], cancelled["updated_at"], 30))["state"] == "Cancelled"
    with pytest.raises(NotFound):
        await call(client.download_results, job["id"], Path("/nonexistent/never-written"))


async def test_errors_are_ours_with_one_line(client, node):
    with pytest.raises(UserInputError, match=r"^spec\.task: .*docker task needs `image`"):
        await call(client.submit, {"task": {"engine": "docker"}})
    with pytest.raises(UserInputError, match="ipvm.do"):
        await call(client.submit, {"with": IMAGE, "do": "k8s/run"})
    with pytest.raises(NotFound):
        await call(client.get_job, "00000000-no-such-job")
    with pytest.raises(UserInputError):
        await call(client.get_job, "abc")

    host, port = node.api_address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}/api/v1", auth=Signed()) as raw:
        response = await raw.post("/jobs", content=b"{not json")
        assert response.status_code == 400 and response.json()["kind"] == "UserInputError"
        response = await raw.get("/jobs/00000000-no-such-job")
        assert response.status_code == 404 and set(response.json()) == {"error", "kind"}
        response = await raw.get("/jobs", params={"limit": "many"})
        assert response.status_code == 400 and "limit" in response.json()["error"]
        response = await raw.get("/no/such/route")
        assert response.status_code == 404 and "error" in response.json()
        response = await raw.post("/ipfs/add", content=b"this is not a tar archive" * 40)
        assert response.status_code == 400 and response.json()["error"].startswith("upload:")


async def test_node_nodes_and_version(client, node):
    info = await call(client.node_info)
    assert info["peer_id"] == node.peer_id and set(info["node_types"]) == {"requester", "compute"}
    assert info["addresses"] and info["ipfs_peer_id"]
    assert [n["peer_id"] for n in await call(client.nodes)] == [node.peer_id]
    version = await call(client.version)
    assert version["peer_id"] == node.peer_id and version["version"]


async def test_wait_for_terminal_is_one_long_poll(client):
    job = await call(client.submit, docker_spec("sh", "-c", "sleep 0.5; echo done"))
    # `since` is the JSON updated_at ("...Z") as a client has it: a real long poll, ending at the end.
    done = await call(client.wait, job["id"], job["updated_at"], 60, terminal=True)
    assert done["state"] == "Completed", done
    # Already finished: answered at once, whatever `since` says.
    with trio.fail_after(5):
        again = await call(client.wait, job["id"], done["updated_at"], 30)
    assert again["state"] == "Completed"
