"""The IPFS publisher adds a tiny result folder once, while its pin surely holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bacalhau_py.context import ProviderContext
from bacalhau_py.publisher import ipfs as ipfs_publisher
from bacalhau_py.publisher.ipfs import TINY_RESULT_BYTES, IPFSPublisher
from bacalhau_py.publisher.retention import ResultPins


class CountingIPFS:
    """Stands in for kubo's `add`: a CID from the folder's content, and a count of the calls."""

    def __init__(self) -> None:
        self.added: list[Path] = []

    async def add(self, path: Path) -> str:
        self.added.append(path)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*")):
            digest.update(str(file.relative_to(path)).encode())
            if file.is_file():
                digest.update(file.read_bytes())
        return "Qm" + digest.hexdigest()[:20]


def result(tmp_path: Path, name: str, stdout: bytes = b"", exit_code: str = "0") -> Path:
    folder = tmp_path / name
    (folder / "outputs").mkdir(parents=True)
    (folder / "stdout").write_bytes(stdout)
    (folder / "stderr").write_bytes(b"")
    (folder / "exitCode").write_text(exit_code)
    return folder


async def test_the_same_tiny_result_is_added_once_and_others_each_time(tmp_path):
    ipfs = CountingIPFS()
    pins = ResultPins(ipfs, tmp_path / "pins.json", retention=3600.0)  # type: ignore[arg-type]
    publisher = IPFSPublisher(ProviderContext(ipfs=ipfs, work_dir=tmp_path, result_pins=pins))  # type: ignore[arg-type]

    first = await publisher.publish("e1", result(tmp_path, "e1"))
    assert await publisher.publish("e2", result(tmp_path, "e2")) == first
    assert len(ipfs.added) == 1

    # Another exit code, another output, or a result past the tiny size: added.
    assert await publisher.publish("e3", result(tmp_path, "e3", exit_code="1")) != first
    await publisher.publish("e4", result(tmp_path, "e4", stdout=b"hello\n"))
    big = b"x" * (TINY_RESULT_BYTES + 1)
    await publisher.publish("e5", result(tmp_path, "e5", stdout=big))
    await publisher.publish("e6", result(tmp_path, "e6", stdout=big))
    assert [p.name for p in ipfs.added] == ["e1", "e3", "e4", "e5", "e6"]
    assert first in pins._read()


async def test_a_tiny_result_is_added_again_before_its_pin_could_be_let_go(tmp_path, monkeypatch):
    ipfs = CountingIPFS()
    pins = ResultPins(ipfs, tmp_path / "pins.json", retention=100.0)  # type: ignore[arg-type]
    publisher = IPFSPublisher(ProviderContext(ipfs=ipfs, work_dir=tmp_path, result_pins=pins))  # type: ignore[arg-type]
    clock = [1000.0]
    monkeypatch.setattr(ipfs_publisher, "monotonic", lambda: clock[0])

    await publisher.publish("e1", result(tmp_path, "e1"))
    clock[0] += 49.0
    await publisher.publish("e2", result(tmp_path, "e2"))
    clock[0] += 2.0  # half the retention since it was added
    await publisher.publish("e3", result(tmp_path, "e3"))
    assert [p.name for p in ipfs.added] == ["e1", "e3"]
