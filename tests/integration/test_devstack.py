"""The devstack as a test bed: starts that do not fail under load, one-line start failures, dead nodes reported."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
import trio

from bacalhau_py.devstack.stack import devstack
from bacalhau_py.errors import BacalhauError
from jobs_api import finished

NOOP_JOB = {"task": {"engine": "noop"}}
ROUNDS = 5


def _bacalhau(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bacalhau_py.cli.main", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (a repo path): what a failed start left running."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.devstack
async def test_three_devstacks_started_at_the_same_instant_all_start(tmp_path):
    """Two 3-node stacks and a 10-node stack, five times over, on one 2-core machine."""
    for round_ in range(ROUNDS):
        shapes = {"a": 3, "b": 3, "c": 10}
        ready: dict[str, int] = {}
        all_ready = trio.Event()

        async def run(name: str, size: int) -> None:
            async with devstack(tmp_path / f"{round_}-{name}", size, node_args=[["--engines", "noop"]] * size) as nodes:
                ready[name] = len(nodes)
                if len(ready) == len(shapes):
                    all_ready.set()
                # Serving, not only started: each stack runs a job while the others are up.
                async with httpx.AsyncClient(timeout=30) as api:
                    response = await api.post(f"{nodes[-1].api}/api/v1/jobs", json=NOOP_JOB)
                    assert response.status_code == 200, response.text
                    job = await finished(api, nodes[-1].api, response.json()["id"])
                    assert job["state"] == "Completed", job["message"]
                await all_ready.wait()

        async with trio.open_nursery() as nursery:
            for name, size in shapes.items():
                nursery.start_soon(run, name, size)
        assert ready == shapes, f"round {round_}"


def test_serve_with_an_unusable_repo_says_so_in_one_line(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = _bacalhau("serve", "--repo", str(not_a_folder / "repo"), "--api-port", "0", "--swarm-port", "0",
                       "--ipfs-swarm-port", "0")
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert str(not_a_folder / "repo") in line and "Not a directory" in line


def test_serve_on_a_taken_swarm_port_says_so_and_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        repo = tmp_path / "repo"
        result = _bacalhau("serve", "--repo", str(repo), "--api-port", "0", "--swarm-port", str(port),
                           "--ipfs-swarm-port", "0")
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert f"/tcp/{port}" in line and "in use" in line
    assert "ready " not in result.stdout
    assert _processes_mentioning(str(repo)) == []


async def test_a_devstack_whose_node_fails_to_start_stops_the_rest(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BacalhauError) as raised:
            async with devstack(tmp_path, 3, node_args=[[], ["--swarm-port", str(port)], []]):
                pytest.fail("the devstack started with a node that cannot listen")
    message = str(raised.value)
    assert message.startswith("node 1 failed to start") and "in use" in message
    assert str(tmp_path / "node-1" / "node.log") in message
    assert "\n" not in message
    assert _processes_mentioning(str(tmp_path)) == []


def test_devstack_command_reports_a_start_failure_in_one_line(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = _bacalhau("devstack", "--nodes", "2", "--repo-dir", str(not_a_folder / "stack"))
    assert result.returncode == 1
    assert "node 0" in _one_error_line(result.stderr)


async def test_a_node_killed_under_a_running_devstack_is_reported_and_the_rest_keep_serving(tmp_path):
    reports: list[str] = []
    reported = trio.Event()

    def on_exit(message: str) -> None:
        reports.append(message)
        reported.set()

    async with devstack(tmp_path, 3, on_exit=on_exit) as nodes:
        victim = nodes[2]
        os.kill(victim.process.pid, signal.SIGKILL)
        with trio.fail_after(30):
            await reported.wait()
        assert len(reports) == 1
        first_line = reports[0].splitlines()[0]
        assert f"node 2 ({victim.peer_id}) was killed by SIGKILL" in first_line
        assert str(victim.log) in first_line
        assert "ready" in reports[0]  # the tail of its log comes along
        assert all(node.process.returncode is None for node in nodes[:2])
        async with httpx.AsyncClient(timeout=30) as api:
            response = await api.post(f"{nodes[0].api}/api/v1/jobs", json=NOOP_JOB)
            assert response.status_code == 200, response.text
            job = await finished(api, nodes[0].api, response.json()["id"])
            assert job["state"] == "Completed", job["message"]
            assert all(e["node_id"] != victim.peer_id for e in job["executions"] if e["verification"] == "accepted")
    # Stopping the stack on purpose is no news.
    assert len(reports) == 1
