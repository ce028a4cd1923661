"""URL inputs to the node's own network: refused by a plain `serve`, allowed in a devstack."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import trio

from bacalhau_py.devstack.stack import devstack
from jobs_api import finished, stdout_of

DATA = b"from the private network\n"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        self.wfile.write(DATA)


@contextmanager
def web_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@asynccontextmanager
async def serve(repo, *flags: str):
    """A `bacalhau serve` process on free ports; yields its API address once it says it is ready."""
    log = open(repo.parent / "serve.log", "ab")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bacalhau_py.cli.main", "serve", "--repo", str(repo), "--peer", "none",
         "--api-port", "0", "--swarm-port", "0", "--ipfs-swarm-port", "0", "--exit-on-stdin-eof", *flags],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    try:
        output = b""
        with trio.fail_after(90):
            while b"\n" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, f"serve exited before it was ready: {(repo.parent / 'serve.log').read_text()[-2000:]}"
                output += chunk
        fields = dict(part.split("=", 1) for part in output.decode().split()[1:])
        yield fields["api"]
    finally:
        process.terminate()
        with trio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def url_job(url: str) -> dict:
    return {
        "task": {"engine": "docker", "image": "busybox", "command": ["cat", "/inputs/data"]},
        "inputs": [{"source": "url", "url": url, "path": "/inputs"}],
    }


async def test_serve_refuses_a_url_input_to_loopback_with_one_line(tmp_path):
    with web_server() as base:
        async with serve(tmp_path / "node") as node_api, httpx.AsyncClient(timeout=30) as api:
            job_id = (await api.post(f"{node_api}/api/v1/jobs", json=url_job(f"{base}/data"))).json()["id"]
            job = await finished(api, node_api, job_id)
    assert job["state"] == "Failed"
    refusal = (f"refused to download {base}/data: 127.0.0.1 resolves to 127.0.0.1 (loopback); "
               "URL inputs may reach public addresses only (serve --allow-private-urls lifts this)")
    assert refusal in job["message"] and "\n" not in job["message"]


async def test_devstack_allows_url_inputs_to_its_own_network(tmp_path):
    with web_server() as base:
        async with devstack(tmp_path / "stack", 1) as (node,), httpx.AsyncClient(timeout=30) as api:
            job_id = (await api.post(f"{node.api}/api/v1/jobs", json=url_job(f"{base}/data"))).json()["id"]
            job = await finished(api, node.api, job_id)
            assert job["state"] == "Completed", job["message"]
            assert await stdout_of(api, node.api, job_id) == DATA
