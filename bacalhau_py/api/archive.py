"""Tar streams between the CLI and a node's API: uploads to `ipfs add`, result downloads.

Both sides extract archives that came over the network, so extraction always
goes through `extract` and its `data` filter: no absolute paths, no `..`, no
links out of the destination, no devices, no setuid bits.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from bacalhau_py.errors import UserInputError

CHUNK = 1 << 16
MEDIA_TYPE = "application/x-tar"


def pack(path: Path, out: BinaryIO) -> None:
    """Write `path` (a file or a folder, recursively) into `out` as a tar under its own name.

    Symlinks are stored as links, as `ipfs add -r` would see them.
    """
    with tarfile.open(fileobj=out, mode="w|") as archive:
        archive.add(str(path), arcname=path.name)


def read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def extract(stream: BinaryIO | Iterable[bytes], dest: Path) -> list[str]:
    """Extract a tar stream into `dest` (created if needed); return its top-level names.

    Raises UserInputError naming the offending member if the archive is
    malformed or tries to write outside `dest`.
    """
    reader = stream if hasattr(stream, "read") else _IterReader(stream)  # type: ignore[arg-type]
    dest.mkdir(parents=True, exist_ok=True)
    try:
        # Stream mode ("r|"): the archive is read once, front to back, never held whole.
        with tarfile.open(fileobj=reader, mode="r|*") as archive:
            archive.extractall(dest, filter="data")
    except tarfile.FilterError as error:
        raise UserInputError(f"archive member {error.tarinfo.name!r} is not allowed: {error}") from None
    except (tarfile.TarError, EOFError) as error:
        raise UserInputError(f"not a valid tar archive: {error}") from None
    return sorted(os.listdir(dest))


class _IterReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body), for tarfile."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
