"""The docker executor against the real engine and the local `busybox:latest` image."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid
from pathlib import Path

import docker
import pytest
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import CONTAINER_LABEL, Mount, PreparedExecution
from bacalhau_py.executor import docker as docker_executor
from bacalhau_py.executor.docker import NODE_LABEL, DockerExecutor
from bacalhau_py.models import JobSpec, Resources, Task

IMAGE = "busybox:latest"
# Execution IDs of this test session: other sessions may run containers too.
PREFIX = f"dkt-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        client.images.get(IMAGE)
    except docker.errors.DockerException as error:
        # A missing engine is a failure, never a skip: `make install` provides it.
        pytest.fail(f"needs a running docker engine with {IMAGE} (make install): {error}")
    yield client
    client.close()


def ours(engine: docker.DockerClient, execution_id: str | None = None) -> list:
    """Containers (running or not) that carry this session's label value."""
    containers = engine.containers.list(all=True, filters={"label": CONTAINER_LABEL})
    return [
        c for c in containers
        if c.labels.get(CONTAINER_LABEL, "").startswith(execution_id or PREFIX)
    ]


@pytest.fixture
def executor(engine, tmp_path: Path):
    executor = DockerExecutor(ProviderContext(ipfs=None, work_dir=tmp_path / "node"))  # type: ignore[arg-type]
    yield executor
    # Every run, whatever its end, removed its container.
    assert ours(engine) == []


_counter = 0


def make_execution(
    tmp_path: Path,
    command: list[str],
    *,
    entrypoint: list[str] | None = None,
    env: dict[str, str] | None = None,
    inputs: list[Mount] | None = None,
    memory: int | str | None = None,
    cpu: float | None = None,
    workdir: str | None = None,
    network: str = "none",
    image: str = IMAGE,
) -> PreparedExecution:
    global _counter
    _counter += 1
    execution_id = f"{PREFIX}-{_counter}"
    result_dir = tmp_path / execution_id
    outputs_dir = result_dir / "outputs"
    outputs_dir.mkdir(parents=True)
    spec = JobSpec(
        task=Task(
            engine="docker", image=image, entrypoint=entrypoint, command=command,
            env=env or {}, workdir=workdir, network=network,
        ),
        resources=Resources(memory=memory, cpu=cpu),
    )
    return PreparedExecution(
        execution_id=execution_id,
        job_id="job-1",
        spec=spec,
        inputs=inputs or [],
        outputs=[Mount(outputs_dir, "/outputs", read_only=False)],
        result_dir=result_dir,
    )


def out(execution: PreparedExecution, name: str = "stdout") -> str:
    return (execution.result_dir / name).read_text()


async def test_stdout_stderr_and_exit_code(executor, tmp_path):
    execution = make_execution(tmp_path, ["sh", "-c", "echo to out; echo to err >&2; exit 3"])
    result = await executor.run(execution)
    assert result.exit_code == 3
    assert out(execution) == "to out\n"
    assert out(execution, "stderr") == "to err\n"


async def test_the_result_folder_holds_only_the_result(executor, tmp_path):
    # It is hashed by the deterministic verifier: a stray file (a live copy
    # of the logs) made honest nodes disagree.
    for _ in range(5):
        execution = make_execution(tmp_path, ["sh", "-c", "echo out; echo err >&2"])
        assert (await executor.run(execution)).exit_code == 0
        await trio.sleep(0.3)  # the live-log followers are abandoned, not awaited
        assert sorted(p.name for p in execution.result_dir.iterdir()) == ["outputs", "stderr", "stdout"]
        assert out(execution) == "out\n"


async def test_with_a_cleanup_nursery_the_result_comes_before_the_removal(executor, engine, tmp_path):
    # The compute node proposes the result while the container is removed.
    async with trio.open_nursery() as cleanup:
        execution = make_execution(tmp_path, ["echo", "hello"])
        execution = dataclasses.replace(execution, cleanup=cleanup)
        result = await executor.run(execution)
        assert result.exit_code == 0 and out(execution) == "hello\n"
        assert [c.status for c in ours(engine, execution.execution_id)] == ["exited"]
    assert ours(engine, execution.execution_id) == []


async def test_env_and_workdir(executor, tmp_path):
    execution = make_execution(
        tmp_path, ["sh", "-c", 'echo "$GREETING"; pwd'],
        env={"GREETING": "hello there"}, workdir="/work/dir",
    )
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "hello there\n/work/dir\n"


async def test_entrypoint_override(executor, tmp_path):
    execution = make_execution(tmp_path, ["a", "b c"], entrypoint=["/bin/echo", "-n"])
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "a b c"


async def test_inputs_read_only_and_outputs_written(executor, tmp_path):
    data = tmp_path / "fetched" / "QmFile"
    data.parent.mkdir()
    data.write_text("file input\n")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("folder input\n")
    script = (
        "cat /inputs/data.txt /data/sub/a.txt > /outputs/joined.txt; "
        "echo x > /inputs/data.txt 2>/dev/null && echo wrote-file; "
        "echo x > /data/new.txt 2>/dev/null && echo wrote-folder; "
        "echo done"
    )
    execution = make_execution(
        tmp_path, ["sh", "-c", script],
        inputs=[Mount(data, "/inputs/data.txt", True), Mount(folder, "/data", True)],
    )
    assert (await executor.run(execution)).exit_code == 0
    assert out(execution) == "done\n"
    assert (execution.result_dir / "outputs" / "joined.txt").read_text() == "file input\nfolder input\n"
    assert data.read_text() == "file input\n"
    assert not (folder / "new.txt").exists()


async def test_network_none_by_default(executor, tmp_path):
    execution = make_execution(tmp_path, ["cat", "/proc/net/dev"])
    assert (await executor.run(execution)).exit_code == 0
    interfaces = {line.split(":")[0].strip() for line in out(execution).splitlines()[2:]}
    assert interfaces == {"lo"}


async def test_network_full_has_an_interface(executor, tmp_path):
    execution = make_execution(tmp_path, ["cat", "/proc/net/dev"], network="full")
    assert (await executor.run(execution)).exit_code == 0
    interfaces = {line.split(":")[0].strip() for line in out(execution).splitlines()[2:]}
    assert "lo" in interfaces and len(interfaces) > 1


async def test_cgroup_limits_are_applied(executor, tmp_path):
    execution = make_execution(
        tmp_path,
        ["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/pids/pids.max",
         "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        cpu=0.5, memory="64Mb",
    )
    assert (await executor.run(execution)).exit_code == 0, out(execution, "stderr")
    quota, pids, memory = out(execution).split()
    assert int(quota) == 50000  # half of the default 100000 us period
    assert pids == "1024"
    assert int(memory) == 64 << 20


async def test_memory_limit_kills_and_fails_naming_the_limit(executor, tmp_path):
    # The shell itself holds 100 MB in a variable against a 32 MiB limit.
    whole = make_execution(
        tmp_path, ["sh", "-c", "echo before; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"],
        memory="32Mb",
    )
    with pytest.raises(ExecutorError, match=r"^killed for using more than 32 MiB of memory"):
        await executor.run(whole)
    # The output up to the kill is kept (`logs` of the failed job shows it).
    assert out(whole) == "before\n"


async def test_timeout_kills_and_removes_the_container(executor, engine, tmp_path):
    execution = make_execution(tmp_path, ["sh", "-c", "echo started; sleep 60"])
    started = time.monotonic()
    with trio.move_on_after(1.0) as scope:
        await executor.run(execution)
        pytest.fail("sleep 60 returned")
    elapsed = time.monotonic() - started
    assert scope.cancelled_caught
    assert elapsed < 8.0, elapsed
    assert ours(engine, execution.execution_id) == []


async def test_missing_image_fails_fast(executor, tmp_path):
    execution = make_execution(tmp_path, ["true"], image="no-such-image-here:1.0")
    started = time.monotonic()
    with pytest.raises(ExecutorError, match="image 'no-such-image-here:1.0' is not available on this node"):
        await executor.run(execution)
    assert time.monotonic() - started < 10.0


async def test_bad_command_is_an_executor_error(executor, tmp_path):
    execution = make_execution(tmp_path, ["/no/such/binary"])
    with pytest.raises(ExecutorError) as caught:
        await executor.run(execution)
    assert "\n" not in str(caught.value)


async def test_stdout_cap(executor, tmp_path):
    executor.max_log_bytes = 1000
    execution = make_execution(tmp_path, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; echo small >&2"])
    result = await executor.run(execution)
    assert result.exit_code == 0
    assert out(execution) == "a" * 1000
    assert out(execution, "stderr") == "small\n"
    assert "stdout cut at 1000 bytes" in result.message



async def test_the_kept_output_is_its_start_even_when_dockers_capped_log_rotated(executor, tmp_path, monkeypatch):
    # Docker keeps at most 2 x 10 kB of log here; the program prints 300 kB.
    monkeypatch.setattr(docker_executor, "DOCKER_LOG_CONFIG", {"max-size": "10k", "max-file": "2"})
    executor.max_log_bytes = 1000
    # The pause lets the live copy start following before the output begins.
    script = "sleep 2; echo FIRST; head -c 300000 /dev/zero | tr '\\0' a; echo; echo LAST"
    execution = make_execution(tmp_path, ["sh", "-c", script])
    result = await executor.run(execution)
    assert result.exit_code == 0
    assert out(execution) == "FIRST\n" + "a" * 994
    assert "stdout cut at 1000 bytes" in result.message

def start_leftover(execution_id: str, node: str) -> None:
    subprocess.run(
        ["docker", "run", "-d", "--label", f"{CONTAINER_LABEL}={execution_id}",
         "--label", f"{NODE_LABEL}={node}", IMAGE, "sleep", "60"],
        check=True, capture_output=True, timeout=30,
    )


async def test_cleanup_containers_removes_this_nodes_leftovers(executor, engine, tmp_path):
    mine, other = f"{PREFIX}-leftover-mine", f"{PREFIX}-leftover-other"
    start_leftover(mine, executor.node_label)
    start_leftover(other, "/some/other/node")
    try:
        assert await executor.cleanup_containers() == 1
        assert ours(engine, mine) == []
        assert len(ours(engine, other)) == 1  # another node's run is left alone
    finally:
        for container in ours(engine, other):
            container.remove(force=True)


async def test_is_installed(executor):
    assert await executor.is_installed()


async def test_not_installed_when_engine_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    executor = DockerExecutor(ProviderContext(ipfs=None, work_dir=tmp_path))  # type: ignore[arg-type]
    assert not await executor.is_installed()


async def test_containers_are_labelled_and_dockers_own_log_is_capped(executor, engine, tmp_path):
    execution = make_execution(tmp_path, ["sleep", "60"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(executor.run, execution)
        while not (found := ours(engine, execution.execution_id)):
            await trio.sleep(0.05)
        [container] = found
        assert container.labels == {
            CONTAINER_LABEL: execution.execution_id, NODE_LABEL: executor.node_label,
        }
        log_config = container.attrs["HostConfig"]["LogConfig"]
        assert log_config == {"Type": "json-file", "Config": {"max-size": "32m", "max-file": "3"}}
        nursery.cancel_scope.cancel()
