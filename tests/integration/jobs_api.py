"""Helpers for integration tests that drive a node's HTTP API with httpx."""

import base64
import json

import httpx
import trio

from bacalhau_py.auth.client_key import ClientKey

TERMINAL = ("Completed", "Failed", "Cancelled")


async def finished(api: httpx.AsyncClient, node_api: str, job_id: str, timeout: float = 60) -> dict:
    """The job once it is Completed, Failed or Cancelled."""
    with trio.fail_after(timeout):
        while True:
            job = (await api.get(f"{node_api}/api/v1/jobs/{job_id}")).json()
            if job["state"] in TERMINAL:
                return job
            await trio.sleep(0.2)


async def stdout_of(api: httpx.AsyncClient, node_api: str, job_id: str) -> bytes:
    logs = (await api.get(f"{node_api}/api/v1/jobs/{job_id}/logs")).text
    frames = [json.loads(line) for line in logs.splitlines()]
    return b"".join(base64.b64decode(f["data"]) for f in frames if f.get("stream") == "stdout")


class Signed(httpx.Auth):
    """Sign each request as the CLI does, with `key` (default: the test session's client key)."""

    requires_request_body = True

    def __init__(self, key: ClientKey | None = None) -> None:
        self.key = key or ClientKey.load_or_create()

    def auth_flow(self, request: httpx.Request):
        request.headers.update(self.key.headers(request.method, request.url.raw_path.decode(), request.content))
        yield request
