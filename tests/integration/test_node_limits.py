"""A node's limits on each job, and what it leaves behind, with real docker, wasmtime and kubo.

Each test runs a REAL node (in this process) configured with its limits, and
the `bacalhau` CLI as users run it (a separate process).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid

import docker
import pytest
import trio
import yaml

from bacalhau_py.compute.limits import JobLimits
from bacalhau_py.devstack.stack import devstack
from bacalhau_py.executor.base import CONTAINER_LABEL
from bacalhau_py.executor.docker import NODE_LABEL
from bacalhau_py.node import Node, NodeConfig

IMAGE = "busybox:latest"


async def start_node(nursery, repo, **config) -> Node:
    node = Node(NodeConfig(repo=repo, api_port=0, swarm_port=0, **config))
    await nursery.start(node.serve)
    return node


def cli(node: Node, cwd):
    """The CLI against `node`: (exit code, stdout, stderr); never a traceback."""
    host, port = node.api_address
    return cli_at({"BACALHAU_API_HOST": host, "BACALHAU_API_PORT": str(port)}, cwd)


def cli_at(api_env: dict[str, str], cwd):
    env = {**os.environ, **api_env}

    async def run(*args: str, stdin: bytes = b"", timeout: float = 120) -> tuple[int, str, str]:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                [sys.executable, "-m", "bacalhau_py.cli.main", *args], stdin=stdin, cwd=cwd, env=env,
                capture_stdout=True, capture_stderr=True, check=False,
            )
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        assert "Traceback" not in stderr, stderr
        return result.returncode, stdout, stderr

    return run


async def describe(bacalhau, job_id: str) -> dict:
    code, out, err = await bacalhau("describe", "--output", "json", job_id)
    assert code == 0, err
    return json.loads(out)


async def test_a_docker_job_over_the_default_memory_is_killed_next_to_one_that_completes(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node", job_limits=JobLimits(default_memory=32 << 20))
    bacalhau = cli(node, tmp_path)
    results = {}

    async def run(name: str, script: str) -> None:
        results[name] = await bacalhau("run", "--wait", "--id-only", IMAGE, "sh", "-c", script)

    async with trio.open_nursery() as jobs:
        # The shell itself holds 100 MB in a variable: over the 32 MiB default.
        jobs.start_soon(run, "hog", "echo before; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
        jobs.start_soon(run, "normal", "echo fine")
    code, hog, err = results["hog"]
    assert code == 1 and "killed for using more than 32 MiB of memory (the job's memory limit)" in err
    job = await describe(bacalhau, hog.strip())
    assert job["state"] == "Failed" and "killed for using more than 32 MiB" in job["message"]
    # What it printed before the kill can be read.
    code, out, err = await bacalhau("logs", hog.strip())
    assert code == 0, err
    assert out == "before\n"

    code, normal, err = results["normal"]
    assert code == 0, err
    code, out, _ = await bacalhau("logs", normal.strip())
    assert out == "fine\n"


async def test_a_docker_job_that_asks_for_nothing_runs_under_the_defaults(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node", job_limits=JobLimits(default_memory=96 << 20, default_cpu=0.5))
    bacalhau = cli(node, tmp_path)
    limits = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes"
    code, job_id, err = await bacalhau("run", "--wait", "--id-only", IMAGE, "sh", "-c", limits)
    assert code == 0, err
    code, out, _ = await bacalhau("logs", job_id.strip())
    assert out.split() == ["50000", str(96 << 20)]
    # What a job asks for wins over the defaults.
    code, job_id, err = await bacalhau("run", "--wait", "--id-only", "--memory", "200Mb", IMAGE, "sh", "-c", limits)
    assert code == 0, err
    code, out, _ = await bacalhau("logs", job_id.strip())
    assert out.split() == ["50000", str(200 << 20)]


async def test_a_wasm_job_over_the_default_memory_fails_naming_it_next_to_one_that_completes(
    nursery, tmp_path, wasm_modules
):
    node = await start_node(nursery, tmp_path / "node", job_limits=JobLimits(default_memory=32 << 20))
    bacalhau = cli(node, tmp_path)
    results = {}

    async def run(name: str, *args: str) -> None:
        results[name] = await bacalhau("wasm", "run", "--wait", "--id-only", *args)

    async with trio.open_nursery() as jobs:
        # 4 GiB asked: the store's limit refuses the memory at 32 MiB, in the node process.
        jobs.start_soon(run, "hog", str(wasm_modules["alloc"]), "4096")
        jobs.start_soon(run, "normal", str(wasm_modules["alloc"]), "8")
    code, hog, err = results["hog"]
    assert code == 1 and "killed for using more than 32 MiB of memory (the job's memory limit)" in err
    job = await describe(bacalhau, hog.strip())
    assert job["state"] == "Failed" and "killed for using more than 32 MiB" in job["message"]
    # What it printed up to then can be read.
    code, _, err = await bacalhau("logs", hog.strip())
    assert code == 0 and err.startswith("allocation failed after ") and int(err.split()[3]) < 32

    code, normal, err = results["normal"]
    assert code == 0, err
    code, out, _ = await bacalhau("logs", normal.strip())
    assert out == "allocated 8 MiB\n"
    # A job that asks for more memory gets it.
    code, job_id, err = await bacalhau(
        "wasm", "run", "--wait", "--id-only", "--memory", "128Mb", str(wasm_modules["alloc"]), "64"
    )
    assert code == 0, err
    code, out, _ = await bacalhau("logs", job_id.strip())
    assert out == "allocated 64 MiB\n"


async def test_outputs_over_the_disk_quota_fail_the_job_and_the_node_keeps_serving(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node", job_limits=JobLimits(disk=4 << 20))
    bacalhau = cli(node, tmp_path)
    write = "head -c {} /dev/zero > /outputs/big; echo written"

    # The node's --limit-job-disk.
    code, _, err = await bacalhau("run", "--wait", IMAGE, "sh", "-c", write.format(5 << 20))
    assert code == 1 and "more than 4194304 bytes written to the outputs (4 MiB, the job's disk limit)" in err
    # The job's own --disk, under the node's limit.
    code, _, err = await bacalhau("run", "--wait", "--disk", "1Mb", IMAGE, "sh", "-c", write.format(2 << 20))
    assert code == 1 and "more than 1048576 bytes written" in err
    # A job that stays under it completes.
    code, job_id, err = await bacalhau("run", "--wait", "--id-only", "--disk", "1Mb", IMAGE, "sh", "-c",
                                       write.format(1000))
    assert code == 0, err
    # A job asking for more than the node allows gets no bid.
    code, _, err = await bacalhau("run", "--wait", "--disk", "1Gb", IMAGE, "true")
    assert code == 1 and "job asks for 1 GiB of disk, over this node's per-job limit of 4 MiB" in err


async def test_a_node_under_its_free_disk_watermark_makes_no_bids(tmp_path):
    """A real `bacalhau serve` process (devstack) with a watermark above any disk."""
    async with devstack(tmp_path / "stack", 1, node_args=[["--min-free-disk", "1000000Tb"]]) as [node]:
        env = {"BACALHAU_API_HOST": node.api_host, "BACALHAU_API_PORT": str(node.api_port)}
        bacalhau = cli_at(env, tmp_path)
        code, _, err = await bacalhau("run", "--wait", IMAGE, "true")
        assert code == 1 and "is under this node's minimum of 1000000 TiB (--min-free-disk)" in err
        code, out, _ = await bacalhau("node", "list", "--output", "json")
        assert json.loads(out)[0]["min_free_disk"] == 1_000_000 << 40


async def test_node_list_shows_the_job_defaults_and_limits(nursery, tmp_path):
    node = await start_node(
        nursery, tmp_path / "node",
        job_limits=JobLimits(default_memory=512 << 20, default_cpu=0.5, disk=10 << 30, min_free_disk=1 << 30),
    )
    bacalhau = cli(node, tmp_path)
    code, out, _ = await bacalhau("node", "list", "--output", "json")
    [info] = json.loads(out)
    assert (info["default_job_cpu"], info["default_job_memory"], info["limit_job_disk"], info["min_free_disk"]) == (
        0.5, 512 << 20, 10 << 30, 1 << 30,
    )
    code, out, _ = await bacalhau("node", "list")
    assert "JOB DEFAULTS" in out and "cpu=0.5 memory=512.0 MiB" in out and "10.0 GiB" in out


async def test_logs_of_a_timed_out_job_can_be_read(nursery, tmp_path, wasm_modules):
    node = await start_node(nursery, tmp_path / "node")
    bacalhau = cli(node, tmp_path)
    code, job_id, err = await bacalhau(
        "run", "--wait", "--id-only", "--timeout", "3", IMAGE, "sh", "-c", "echo started; echo oops >&2; sleep 60"
    )
    assert code == 1 and "timed out after 3s" in err
    code, out, err = await bacalhau("logs", job_id.strip())
    assert code == 0, err
    assert out == "started\n" and err == "oops\n"
    # The same for wasm: what the program printed before its timeout.
    code, job_id, err = await bacalhau(
        "wasm", "run", "--wait", "--id-only", "--timeout", "3", str(wasm_modules["loop"])
    )
    assert code == 1 and "timed out after 3s" in err
    code, out, err = await bacalhau("logs", job_id.strip())
    assert code == 0, err
    assert out == "looping\n"


async def test_logs_of_a_job_that_never_ran_say_why(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node")
    bacalhau = cli(node, tmp_path)
    code, job_id, _ = await bacalhau("run", "--wait", "--id-only", "no-such-image-here:1", "true")
    assert code == 1
    code, out, err = await bacalhau("logs", job_id.strip())
    assert code == 1 and out == ""
    assert "has no results (state Failed: " in err and "no-such-image-here:1" in err
    assert len(err.strip().splitlines()) == 1


async def test_list_shows_noop_jobs(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node")
    bacalhau = cli(node, tmp_path)
    spec = yaml.safe_dump({"task": {"engine": "noop"}}).encode()
    code, job_id, err = await bacalhau("create", "--id-only", "-", stdin=spec)
    assert code == 0, err
    code, _, err = await bacalhau("run", "--wait", IMAGE, "echo", "newest")
    assert code == 0, err
    code, out, err = await bacalhau("list")
    assert code == 0, err
    [noop_row] = [line for line in out.splitlines() if line.startswith(job_id.strip()[:8])]
    assert "noop" in noop_row
    assert "busybox:latest echo newest" in out


async def test_an_input_inside_an_output_folder_is_refused_naming_both(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node")
    bacalhau = cli(node, tmp_path)
    cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    code, _, err = await bacalhau("run", "-v", f"{cid}:/outputs/data", IMAGE, "true")
    assert code == 2 and "input /outputs/data and output /outputs overlap" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def engine():
    client = docker.from_env(timeout=30)
    yield client
    client.close()


async def test_execution_folders_are_gone_once_the_result_is_published(nursery, tmp_path):
    node = await start_node(nursery, tmp_path / "node")
    bacalhau = cli(node, tmp_path)
    code, job_id, err = await bacalhau("run", "--wait", "--id-only", IMAGE, "sh", "-c", "echo data > /outputs/x")
    assert code == 0, err
    [execution] = (await describe(bacalhau, job_id.strip()))["executions"]
    folder = tmp_path / "node" / "work" / "executions" / execution["id"]
    # The compute side removes it right after it reported the result.
    with trio.fail_after(10):
        while folder.exists():
            await trio.sleep(0.05)
    code, _, err = await bacalhau("get", "--output-dir", "out", job_id.strip())
    assert code == 0, err
    assert (tmp_path / "out" / "outputs" / "x").read_text() == "data\n"


async def test_a_starting_node_removes_containers_a_crashed_run_left(nursery, tmp_path, engine):
    repo = tmp_path / "node"
    execution_id = f"leftover-{uuid.uuid4().hex[:8]}"
    labels = {CONTAINER_LABEL: execution_id, NODE_LABEL: str((repo / "work").resolve())}
    other = {CONTAINER_LABEL: execution_id + "-other", NODE_LABEL: "/another/node/work"}
    leftover = engine.containers.run(IMAGE, ["sleep", "120"], detach=True, labels=labels)
    kept = engine.containers.run(IMAGE, ["sleep", "120"], detach=True, labels=other)
    try:
        await start_node(nursery, repo)
        assert engine.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={execution_id}"}) == []
        kept.reload()  # another node's container is left alone
    finally:
        kept.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            leftover.remove(force=True)


async def test_a_stopping_devstack_removes_the_containers_of_a_killed_node(tmp_path, engine):
    """A node SIGKILLed mid-job cannot remove its container: the devstack does, when it stops."""
    execution_id = f"devstack-{uuid.uuid4().hex[:8]}"
    leftovers = {"label": f"{CONTAINER_LABEL}={execution_id}"}
    try:
        async with devstack(tmp_path / "stack", 1) as [node]:
            labels = {CONTAINER_LABEL: execution_id, NODE_LABEL: str((node.repo / "work").resolve())}
            engine.containers.run(IMAGE, ["sleep", "120"], detach=True, labels=labels)
            node.process.kill()
            await node.process.wait()
            assert len(engine.containers.list(all=True, filters=leftovers)) == 1
        assert engine.containers.list(all=True, filters=leftovers) == []
    finally:
        for container in engine.containers.list(all=True, filters=leftovers):
            container.remove(force=True)


def test_devstack_gives_every_node_its_limits(tmp_path):
    """A real `bacalhau devstack` process: its limit flags reach the nodes (`node list`)."""
    repo_dir = tmp_path / "stack"
    env_file = tmp_path / "env"
    process = subprocess.Popen(
        [sys.executable, "-m", "bacalhau_py.cli.main", "devstack", "--nodes", "1", "--repo-dir", str(repo_dir),
         "--env-file", str(env_file), "--default-job-memory", "256Mb", "--limit-job-disk", "1Gb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in process.stderr:
            if line.startswith("devstack ready"):
                break
        exports = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines())
        nodes = subprocess.run(
            [sys.executable, "-m", "bacalhau_py.cli.main", "node", "list", "--output", "json"],
            env={**os.environ, **exports}, capture_output=True, text=True, timeout=60, check=True,
        )
        [info] = json.loads(nodes.stdout)
        assert (info["default_job_memory"], info["limit_job_disk"]) == (256 << 20, 1 << 30)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
