"""Pure parts of the docker executor: create options, log capping, error translation."""

import io
from pathlib import Path

import docker.errors
import requests.exceptions

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import CONTAINER_LABEL, Mount, PreparedExecution
from bacalhau_py.executor.docker import NODE_LABEL, DockerExecutor, _copy_log, _translate
from bacalhau_py.models import JobSpec, Resources, Task


def options(tmp_path: Path, **task) -> dict:
    executor = DockerExecutor(ProviderContext(ipfs=None, work_dir=tmp_path))  # type: ignore[arg-type]
    resources = task.pop("resources", Resources())
    spec = JobSpec(task=Task(engine="docker", image="busybox", **task), resources=resources)
    execution = PreparedExecution(
        "exec-1", "job-1", spec,
        [Mount(tmp_path / "in.txt", "/inputs/in.txt", True)],
        [Mount(tmp_path / "out", "/outputs", False)],
        tmp_path / "result",
    )
    return executor._create_options(execution)


def test_defaults(tmp_path):
    created = options(tmp_path)
    assert created["network_mode"] == "none"
    assert created["command"] is None and "entrypoint" not in created
    assert created["labels"] == {CONTAINER_LABEL: "exec-1", NODE_LABEL: str(tmp_path.resolve())}
    assert "mem_limit" not in created and "nano_cpus" not in created
    assert [(m["Target"], m["Source"], m["ReadOnly"]) for m in created["mounts"]] == [
        ("/inputs/in.txt", str(tmp_path / "in.txt"), True),
        ("/outputs", str(tmp_path / "out"), False),
    ]


def test_task_fields_and_resources(tmp_path):
    created = options(
        tmp_path, entrypoint=["/bin/sh", "-c"], command=["echo hi"], env={"A": "1"},
        workdir="/w", network="full", resources=Resources(cpu="500m", memory="64Mb", gpu=1),
    )
    assert created["entrypoint"] == ["/bin/sh", "-c"]
    assert created["command"] == ["echo hi"]
    assert created["environment"] == {
        "A": "1", "BACALHAU_JOB_ID": "job-1", "BACALHAU_EXECUTION_ID": "exec-1",
        "BACALHAU_PARTITION_INDEX": "0", "BACALHAU_PARTITION_COUNT": "1",
    }
    assert created["working_dir"] == "/w"
    assert created["network_mode"] == "bridge"
    assert created["nano_cpus"] == 500_000_000
    assert created["mem_limit"] == created["memswap_limit"] == 64 << 20
    assert created["device_requests"][0]["Count"] == 1


class FakeStream(io.BytesIO):
    def __iter__(self):
        while chunk := self.read(7):
            yield chunk


def test_copy_log_caps_and_closes(tmp_path):
    stream = FakeStream(b"x" * 100)
    assert _copy_log(stream, tmp_path / "log", 30) > 0
    assert (tmp_path / "log").read_bytes() == b"x" * 30
    assert stream.closed
    assert _copy_log(FakeStream(b"short"), tmp_path / "log2", 30) == 0
    assert (tmp_path / "log2").read_bytes() == b"short"


def test_translate_gives_one_line_messages():
    api = docker.errors.APIError("500", explanation="driver failed\nprogramming external connectivity")
    error = _translate(api, "start the container")
    assert isinstance(error, ExecutorError)
    assert str(error) == "docker could not start the container: driver failed programming external connectivity"
    down = _translate(requests.exceptions.ConnectionError("refused"), "create a container")
    assert "cannot reach the docker engine to create a container" in str(down)
