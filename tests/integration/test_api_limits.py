"""What a client may send to a REAL node's API: body sizes, JSON nesting, NUL bytes, inline totals."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from functools import partial

import httpx
import pytest
import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.api.limits import MAX_JSON_DEPTH
from bacalhau_py.errors import RequestTooLarge, UserInputError
from bacalhau_py.node import Node, NodeConfig

SPEC_LIMIT = 4 << 20
UPLOAD_LIMIT = 6 << 20  # over the spec limit, as uploads are larger than specs


@pytest.fixture
async def node(nursery, tmp_path) -> Node:
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0, max_upload_bytes=UPLOAD_LIMIT))
    await nursery.start(node.serve)
    return node


@pytest.fixture
def client(node: Node):
    host, port = node.api_address
    with APIClient(host, port) as client:
        yield client


@pytest.fixture
async def http(node: Node):
    host, port = node.api_address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}/api/v1", timeout=60) as http:
        yield http


async def call(function, *args, **kwargs):
    return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


def spec(**task) -> dict:
    return {"task": {"engine": "docker", "image": "busybox", "command": ["true"], **task}}


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message
    return message


async def test_an_oversized_job_spec_is_413_and_not_stored(client):
    big = spec(env={"PAD": "x" * SPEC_LIMIT})
    with pytest.raises(RequestTooLarge) as refused:
        await call(client.submit, big)
    size = len(json.dumps(big))
    assert str(refused.value) == f"request body: {size} bytes is over this node's limit of {SPEC_LIMIT} bytes"
    assert await call(client.list_jobs) == []


async def test_a_chunked_body_is_counted_as_it_arrives(http, client):
    body = json.dumps(spec(env={"PAD": "x" * SPEC_LIMIT})).encode()

    async def chunks():
        # No Content-Length: the node can only count.
        for start in range(0, len(body), 1 << 16):
            yield body[start:start + (1 << 16)]

    response = await http.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert one_line_error(response, 413) == f"request body: over this node's limit of {SPEC_LIMIT} bytes"
    assert response.json()["kind"] == "RequestTooLarge"
    assert await call(client.list_jobs) == []
    # The node keeps serving.
    assert (await http.post("/jobs", json=spec())).status_code == 200


async def test_uploads_have_their_own_larger_limit(client, tmp_path):
    fits = tmp_path / "fits.bin"
    fits.write_bytes(os.urandom(5 << 20))  # over the spec limit, under the upload limit
    assert (await call(client.ipfs_add, fits)).startswith("Qm")
    too_big = tmp_path / "big.bin"
    too_big.write_bytes(os.urandom(UPLOAD_LIMIT))  # plus the tar headers: over
    refusal = rf"^upload: \d+ bytes is over this node's limit of {UPLOAD_LIMIT} bytes$"
    with pytest.raises(RequestTooLarge, match=refusal):
        await call(client.ipfs_add, too_big)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
async def test_deeply_nested_json_is_400(http, depth):
    body = '{"task": ' + "[" * depth + "]" * depth + "}"
    response = await http.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert one_line_error(response, 400) == f"request body: JSON nested more than {MAX_JSON_DEPTH} levels deep"


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"env": {"GREETING": "hi\0there"}}, "spec.task.env.GREETING"),
        ({"command": ["echo", "a\0b"]}, "spec.task.command.1"),
        ({"entrypoint": ["/bin/sh\0"]}, "spec.task.entrypoint.0"),
    ],
)
async def test_a_nul_byte_is_400_naming_the_field(client, task, field):
    with pytest.raises(UserInputError) as refused:
        await call(client.submit, spec(**task))
    expected = "contains a NUL byte (not allowed in a command argument or an environment value)"
    assert str(refused.value) == f"{field}: {expected}"


async def test_inline_inputs_are_limited_per_job_in_total(client):
    def inline(path: str, size: int) -> dict:
        return {"source": "inline", "path": path, "content": base64.b64encode(b"x" * size).decode()}

    # Each under the 1 MiB per input, together over the 2 MiB per job (and the body under 4 MiB).
    inputs = [inline("/a", 1 << 20), inline("/b", 1 << 20), inline("/c", 1 << 19)]
    with pytest.raises(UserInputError, match=r"^spec: inline inputs total 2621440 bytes, over 2097152 bytes per job"):
        await call(client.submit, {**spec(), "inputs": inputs})
    assert (await call(client.submit, {**spec(), "inputs": inputs[:2]}))["state"] == "Pending"


async def test_the_cli_shows_413_as_one_line_and_exits_1(node, tmp_path):
    host, port = node.api_address
    file = tmp_path / "big.json"
    file.write_text(json.dumps(spec(env={"PAD": "x" * SPEC_LIMIT})))
    env = {**os.environ, "BACALHAU_API_HOST": host, "BACALHAU_API_PORT": str(port)}
    result = await trio.run_process([sys.executable, "-m", "bacalhau_py.cli.main", "create", str(file)], env=env,
                                    capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert re.fullmatch(rf"Error: request body: \d+ bytes is over this node's limit of {SPEC_LIMIT} bytes", line)
