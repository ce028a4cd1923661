"""The layout of an execution's result folder, and its canonical content hash.

A result folder holds `stdout`, `stderr`, `exitCode` and one folder per output
volume. The same folder is published (IPFS or local), hashed for the
deterministic verifier, and downloaded by `bacalhau get`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

STDOUT = "stdout"
STDERR = "stderr"
EXIT_CODE = "exitCode"
RAW = "raw"


LOG_STREAMS = (STDOUT, STDERR)
_FRAME = struct.Struct(">BI")


def encode_log_frame(stream: str, data: bytes) -> bytes:
    """One chunk of a followed log: stream index, length, bytes."""
    return _FRAME.pack(LOG_STREAMS.index(stream), len(data)) + data


def decode_log_frames(buffer: bytearray) -> Iterator[tuple[str, bytes]]:
    """Take every complete frame off the front of `buffer`."""
    while len(buffer) >= _FRAME.size:
        index, length = _FRAME.unpack_from(buffer)
        if index >= len(LOG_STREAMS):
            raise ValueError(f"log frame for unknown stream {index}")
        if len(buffer) < _FRAME.size + length:
            return
        data = bytes(buffer[_FRAME.size : _FRAME.size + length])
        del buffer[: _FRAME.size + length]
        yield LOG_STREAMS[index], data


def write_exit_code(result_dir: Path, exit_code: int) -> None:
    (result_dir / EXIT_CODE).write_text(f"{exit_code}\n")


def content_hash(result_dir: Path) -> str:
    """sha256 over every file's relative path, type and bytes, in sorted path order.

    Timestamps, permissions and inode order are left out, so two honest nodes
    that produce the same bytes produce the same hash.
    """
    digest = hashlib.sha256()
    for path in sorted(_walk(result_dir), key=lambda p: p.relative_to(result_dir).as_posix()):
        relative = path.relative_to(result_dir).as_posix().encode()
        if path.is_symlink():
            digest.update(b"L" + relative + b"\0" + os.readlink(path).encode() + b"\0")
        elif path.is_dir():
            digest.update(b"D" + relative + b"\0")
        else:
            digest.update(b"F" + relative + b"\0" + str(path.stat().st_size).encode() + b"\0")
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def commitment(execution_id: str, salt: str, result_hash: str) -> str:
    """What a compute node sends before revealing its hash (commit, then reveal)."""
    return hashlib.sha256(f"{execution_id}:{salt}:{result_hash}".encode()).hexdigest()


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            yield base / name
        for name in filenames:
            yield base / name
