"""Real devstacks for the scenarios: `bacalhau devstack` processes, one per stack shape.

A devstack is started the first time a shape is asked for and kept for the
session; stopping it (SIGINT, as a user's Ctrl-C) is part of the test: it must
exit cleanly and leave no container behind.
"""

from __future__ import annotations

import http.server
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scenario import BACALHAU, Stack  # noqa: E402

START_TIMEOUT = 90


@pytest.fixture(scope="session")
def devstacks(tmp_path_factory):
    running: dict[Stack, tuple[subprocess.Popen, list[tuple[str, int]]]] = {}

    def get(stack: Stack) -> list[tuple[str, int]]:
        if stack not in running:
            # Two cores: one devstack at a time.
            for other in list(running):
                _stop(*running.pop(other))
            running[stack] = _start(stack, tmp_path_factory.mktemp(f"devstack-{stack.nodes}-{stack.bad_actors}"))
        return running[stack][1]

    yield get
    for process, apis in running.values():
        _stop(process, apis)


def _start(stack: Stack, folder: Path):
    log = folder / "devstack.log"
    process = subprocess.Popen(
        [*BACALHAU, "devstack", "--nodes", str(stack.nodes), "--bad-compute-actors", str(stack.bad_actors),
         "--repo-dir", str(folder / "repos"), "--env-file", str(folder / "env")],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while "devstack ready" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"devstack {stack} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    apis = [(m.group(1), int(m.group(2))) for m in re.finditer(r"api=http://([\d.]+):(\d+)", log.read_text())]
    assert len(apis) == stack.nodes
    return process, apis


def _stop(process: subprocess.Popen, apis) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("devstack did not stop within 60 s of Ctrl-C")


class _Files(dict):
    base = ""


@pytest.fixture(scope="session")
def http_files():
    """A local HTTP server (127.0.0.1) serving this dict's name -> bytes."""
    files = _Files()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    files.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield files
    server.shutdown()
