"""Pure parts of the docker executor: create options, log capping, error translation."""

import io
import json
import tarfile
from pathlib import Path

import docker.errors
import pytest
import requests.exceptions

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import CONTAINER_LABEL, Mount, PreparedExecution
from bacalhau_py.executor.docker import NODE_LABEL, DockerExecutor, _copy_log, _translate, _untagged_archive
from bacalhau_py.models import JobSpec, Resources, Task


IMAGE_ID = "sha256:" + "ab" * 32


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
    return executor._create_options(execution, IMAGE_ID)


def test_defaults(tmp_path):
    created = options(tmp_path)
    # The container runs the image ID that was checked, not whatever the name points to by then.
    assert created["image"] == IMAGE_ID
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


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as out:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_loses_its_names_before_loading(tmp_path):
    manifest = [{"Config": "c.json", "RepoTags": ["busybox:latest"], "Layers": ["l/layer.tar"]}]
    source = _archive(tmp_path / "in.tar.gz", {
        "c.json": b"{}", "l/layer.tar": b"layer", "manifest.json": json.dumps(manifest).encode(),
        "repositories": b'{"busybox": {"latest": "x"}}',
    })
    _untagged_archive(source, tmp_path / "out.tar", "ipfs://Qm", 1 << 20)
    with tarfile.open(tmp_path / "out.tar") as out:
        assert sorted(out.getnames()) == ["c.json", "l/layer.tar", "manifest.json"]
        assert json.load(out.extractfile("manifest.json"))[0]["RepoTags"] is None
        assert out.extractfile("l/layer.tar").read() == b"layer"


def test_an_archive_that_unpacks_too_large_is_refused(tmp_path):
    source = _archive(tmp_path / "bomb.tar.gz", {"manifest.json": b"[{}]", "zeros": bytes(2 << 20)})
    assert source.stat().st_size < 100_000
    with pytest.raises(ExecutorError, match=r"^image ipfs://Qm: the archive unpacks to more than 1048576 bytes$"):
        _untagged_archive(source, tmp_path / "out.tar", "ipfs://Qm", 1 << 20)
