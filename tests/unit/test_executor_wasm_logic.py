"""Pure parts of the wasm executor: mount planning, deterministic WASI, messages."""

from pathlib import Path

import pytest

from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import Mount
from bacalhau_py.executor.wasm import _cap_file, _DeterministicWasi, _first_line, plan_preopens


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    (tmp_path / "a.csv").write_text("a")
    (tmp_path / "b.csv").write_text("b")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_files_sharing_a_parent_share_one_staging_folder(tree):
    stage = tree / "stage"
    preopens, links = plan_preopens(
        [Mount(tree / "a.csv", "/inputs/a.csv", True), Mount(tree / "b.csv", "/inputs/x/b.csv", True),
         Mount(tree / "b.csv", "/inputs/b2.csv", True), Mount(tree / "folder", "/data", True)],
        [Mount(tree / "out", "/outputs", False)],
        None, stage,
    )
    assert [(p.guest, p.writable) for p in preopens] == [
        ("/inputs", False), ("/inputs/x", False), ("/data", False), ("/outputs", True),
    ]
    assert preopens[0].host == stage / "0" and preopens[1].host == stage / "1"
    assert links == [
        (tree / "a.csv", stage / "0" / "a.csv"),
        (tree / "b.csv", stage / "1" / "b.csv"),
        (tree / "b.csv", stage / "0" / "b2.csv"),
    ]


def test_file_under_a_folder_mount_is_refused(tree):
    with pytest.raises(ExecutorError, match="would hide the folder mounted at /data"):
        plan_preopens(
            [Mount(tree / "folder", "/data", True), Mount(tree / "a.csv", "/data/a.csv", True)],
            [], None, tree / "stage",
        )


def test_workdir_maps_to_the_deepest_mount(tree):
    preopens, _ = plan_preopens(
        [Mount(tree / "folder", "/data", True)], [Mount(tree / "out", "/data/out", False)],
        "/data/out/deeper", tree / "stage",
    )
    assert preopens[-1].guest == "."
    assert preopens[-1].host == tree / "out" / "deeper"
    assert preopens[-1].writable
    preopens, _ = plan_preopens([Mount(tree / "folder", "/data", True)], [], "/data", tree / "stage")
    assert preopens[-1].host == tree / "folder" and not preopens[-1].writable


def test_workdir_outside_mounts_is_refused(tree):
    with pytest.raises(ExecutorError, match="not inside an input or output mount"):
        plan_preopens([Mount(tree / "folder", "/data", True)], [], "/database", tree / "stage")


def test_random_stream_depends_only_on_the_job_id():
    a, b, c = _DeterministicWasi("job-1"), _DeterministicWasi("job-1"), _DeterministicWasi("job-2")
    # Same bytes however the program splits its reads.
    assert a.random_bytes(5) + a.random_bytes(40) == b.random_bytes(45)
    assert _DeterministicWasi("job-1").random_bytes(45) != c.random_bytes(45)


def test_cap_file_keeps_the_first_bytes(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"12345678abcdef")
    assert _cap_file(path, 10)
    assert path.read_bytes() == b"12345678ab"
    assert not _cap_file(path, 10)
    missing = tmp_path / "missing"
    assert not _cap_file(missing, 10)
    assert missing.read_bytes() == b""  # a log that was never opened is still there, empty


def test_first_line_takes_wasmtimes_cause():
    error = RuntimeError(
        "error while executing at wasm backtrace:\n    0: 0x28a - <unknown>!f\n\n"
        "Caused by:\n    wasm trap: wasm `unreachable` instruction executed\n"
    )
    assert _first_line(error) == "wasm `unreachable` instruction executed"
    assert _first_line(RuntimeError("plain\nsecond")) == "plain: second"
