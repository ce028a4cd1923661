"""The `bacalhau` CLI as users run it (a separate process) against a REAL node over loopback."""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio
import yaml

from bacalhau_py.auth.client_key import ClientKey
from bacalhau_py.node import Node, NodeConfig

IMAGE = "busybox:latest"


@pytest.fixture
async def node(nursery, tmp_path) -> Node:
    node = Node(NodeConfig(repo=tmp_path / "node", api_port=0, swarm_port=0))
    await nursery.start(node.serve)
    return node


@pytest.fixture
def bacalhau(node: Node, tmp_path):
    """Run the CLI in `tmp_path` with the node's address in the environment: (exit code, stdout, stderr)."""
    host, port = node.api_address
    env = {**os.environ, "BACALHAU_API_HOST": host, "BACALHAU_API_PORT": str(port),
           "BACALHAU_IPFS_API": node.ipfs_api}

    async def run(*args: str, stdin: bytes = b"", timeout: float = 120) -> tuple[int, str, str]:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", *args], stdin=stdin, cwd=tmp_path, env=env,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        assert "Traceback" not in stderr, stderr
        return result.returncode, stdout, stderr

    return run


async def test_the_readme_example_runs_as_written(bacalhau, tmp_path):
    (tmp_path / "file.txt").write_text("apples and pears\n")
    code, cid, err = await bacalhau("ipfs", "add", "file.txt")
    assert code == 0, err
    cid = cid.strip()

    code, out, err = await bacalhau(
        "run", "--wait", "-v", f"{cid}:/file.txt", "-o", "apples:/output_folder",
        "busybox", "sh", "-c", "cat /file.txt > /output_folder/file.txt",
    )
    assert code == 0, err
    job_id = out.strip()
    assert "Completed" in err

    code, out, err = await bacalhau("get", job_id[:8])
    assert code == 0, err
    results = tmp_path / f"job-{job_id[:8]}"
    assert (results / "apples" / "file.txt").read_text() == "apples and pears\n"
    assert (results / "exitCode").read_text().strip() == "0"
    assert sorted(p.name for p in results.iterdir()) == ["apples", "exitCode", "outputs", "stderr", "stdout"]
    # With BACALHAU_IPFS_API set every folder is checked against its CID: no warning.
    assert "Warning" not in err

    code, out, _ = await bacalhau("list")
    assert code == 0 and job_id[:8] in out and "Completed" in out
    code, out, _ = await bacalhau("list", "--output", "json", "--limit", "1")
    assert [job["id"] for job in json.loads(out)] == [job_id]

    code, out, _ = await bacalhau("describe", job_id)
    described = yaml.safe_load(out)
    assert described["state"] == "Completed" and described["spec"]["inputs"][0]["cid"] == cid
    [execution] = described["executions"]
    assert {"node_id", "state", "exit_code", "verification", "result_cid"} <= set(execution)
    assert execution["verification"] == "accepted"
    assert described["client_id"] == ClientKey.load_or_create().client_id


async def test_logs_and_download_of_a_wasm_module_sent_inline(bacalhau, wasm_modules, tmp_path):
    code, out, err = await bacalhau(
        "wasm", "run", "--download", "--output-dir", "wasm-results", str(wasm_modules["echo_args"]), "one", "-v",
    )
    assert code == 0, err
    job_id = out.strip()
    stdout = (tmp_path / "wasm-results" / "stdout").read_text()
    assert "one" in stdout and "-v" in stdout
    code, out, _ = await bacalhau("logs", job_id)
    assert code == 0 and out == stdout


async def test_wait_exits_1_with_the_reason_when_the_job_fails(bacalhau):
    code, out, err = await bacalhau("run", "--wait", "--id-only", "busybox", "no-such-program")
    assert code == 1
    assert len(out.split()) == 1  # --id-only: the ID and nothing else on stdout
    assert err.startswith("Error: job ") and "Failed" in err and "no-such-program" in err
    assert len(err.strip().splitlines()) == 1  # quiet: no progress lines


async def test_a_nonzero_exit_inside_the_job_completes_the_job(bacalhau):
    code, out, err = await bacalhau("run", "--wait", "busybox", "sh", "-c", "echo bye; exit 7")
    assert code == 0, err
    code, out, _ = await bacalhau("describe", out.strip(), "--output", "json")
    job = json.loads(out)
    assert job["state"] == "Completed" and job["executions"][0]["exit_code"] == 7


async def test_cancel_a_running_job(bacalhau):
    code, out, _ = await bacalhau("run", "busybox", "sleep", "60")
    job_id = out.strip()
    with trio.fail_after(60):
        while True:
            _, out, _ = await bacalhau("describe", job_id, "--output", "json")
            if json.loads(out)["state"] == "Running":
                break
            await trio.sleep(0.2)
    code, _, err = await bacalhau("cancel", job_id)
    assert code == 0 and "Cancelled" in err
    _, out, _ = await bacalhau("describe", job_id, "--output", "json")
    assert json.loads(out)["state"] == "Cancelled"


async def test_create_from_an_ipvm_task_on_stdin(bacalhau):
    task = {"with": IMAGE, "do": "docker/run", "inputs": {"args": ["echo", "ipvm says hi"]}}
    code, out, err = await bacalhau("create", "--wait", "-", stdin=json.dumps(task).encode())
    assert code == 0, err
    code, logs, _ = await bacalhau("logs", out.strip())
    assert logs == "ipvm says hi\n"


async def test_node_list_id_and_version(bacalhau, node):
    code, out, _ = await bacalhau("node", "list")
    assert code == 0 and node.peer_id in out
    code, out, _ = await bacalhau("id", "--output", "json")
    identity = json.loads(out)
    assert identity["peer_id"] == node.peer_id
    # The client's ID is its key's: the same the node records on the jobs it submits.
    assert identity["client_id"] == ClientKey.load_or_create().client_id
    code, out, _ = await bacalhau("id")
    assert code == 0 and f"client_id: {identity['client_id']}" in out.splitlines()
    code, out, _ = await bacalhau("version")
    assert code == 0 and "Client Version" in out and "Server Version" in out


async def test_unknown_job_is_one_line(bacalhau):
    code, _, err = await bacalhau("describe", "00000000-0000")
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    code, _, err = await bacalhau("get", "abc")
    assert code == 2 and "8" in err


CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
# Job flags whose problem only the spec's rules catch (click parses them all).
SPEC_PROBLEMS = [
    (["run"], ["-v", "notacid:/x", "ubuntu"]),
    (["run"], ["-i", "ipfs://notacid", "-o", "apples:/apples", "ubuntu"]),
    (["run"], ["-o", "stdout:/x", "ubuntu"]),
    (["run"], ["-e", "BAD-NAME=1", "ubuntu"]),
    (["run"], ["--confidence", "2", "ubuntu"]),
    (["run"], ["-v", f"{CID}:/a", "-v", f"{CID}:/a", "ubuntu"]),
    (["run"], ["-w", "relative", "ubuntu"]),
    (["run"], ["bad image!"]),
    (["wasm", "run"], ["-o", "apples:/apples", "-u", "https://example.com/a:/apples/a", CID]),
]
# Runs the CLI as `python -m` would, then says on stderr whether it imported pydantic.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('pydantic imported:', 'pydantic' in sys.modules, file=sys.stderr))\n"
    "from bacalhau_py.cli.main import main\n"
    "main(sys.argv[1:])\n"
)


async def test_the_node_validates_a_job_and_the_cli_names_the_flag(bacalhau, node, tmp_path):
    """The submitting CLI leaves the spec's rules to the node (no pydantic: it was most of its
    start); the node's answer names the flag as well as the CLI's own check does when no node
    answers (the message `tests/unit/test_cli_flags.py` checks)."""
    host, port = node.api_address
    env = {**os.environ, "BACALHAU_API_HOST": host, "BACALHAU_API_PORT": str(port)}
    for command, args in SPEC_PROBLEMS:
        with trio.fail_after(60):
            probed = await trio.run_process(
                [sys.executable, "-c", PROBE, *command, *args], cwd=tmp_path, env=env,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        error, verdict = probed.stderr.decode().strip().splitlines()
        assert (probed.returncode, probed.stdout, verdict) == (2, b"", "pydantic imported: False"), error
        # No node at this port: the CLI checks the spec itself, with the same words.
        code, out, offline = await bacalhau(*command, "--api-port", "1", *args)
        assert (code, out, offline.strip()) == (2, "", error)
