"""Folders as tar streams, and tar streams back into folders, without blocking trio.

Used wherever a folder crosses a connection: results from a compute node
(local publisher), results to the client (`get`), uploads (`ipfs add`).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import trio

from bacalhau_py.errors import StorageError

CHUNK = 1 << 20


class _ChannelWriter:
    """A file-like sink for tarfile running in a thread; chunks go to trio."""

    def __init__(self, send: trio.MemorySendChannel) -> None:
        self._send = send
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            trio.from_thread.run(self._send.send, bytes(self._buffer))
            self._buffer.clear()


async def stream_folders(entries: list[tuple[Path, str]]) -> AsyncIterator[bytes]:
    """Tar of several folders, each stored under its archive prefix ("" = top level)."""
    send, receive = trio.open_memory_channel[bytes](4)

    def produce() -> None:
        writer = _ChannelWriter(send)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for folder, prefix in entries:
                for name in sorted(os.listdir(folder)):
                    archive.add(folder / name, arcname=f"{prefix}/{name}" if prefix else name)
        writer.flush()

    async with trio.open_nursery() as nursery:

        async def run_producer() -> None:
            async with send:
                await trio.to_thread.run_sync(produce)

        nursery.start_soon(run_producer)
        async with receive:
            async for chunk in receive:
                yield chunk


async def stream_folder(folder: Path) -> AsyncIterator[bytes]:
    async for chunk in stream_folders([(folder, "")]):
        yield chunk


async def extract(chunks: AsyncIterable[bytes], dest: Path) -> Path:
    """Write a tar stream into `dest` (created), refusing paths outside it and device files."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=dest.parent) as spool:
        async for chunk in chunks:
            await trio.to_thread.run_sync(spool.write, chunk)

        def unpack() -> None:
            spool.seek(0)
            try:
                with tarfile.open(fileobj=spool, mode="r:") as archive:
                    archive.extractall(dest, filter="data")
            except (tarfile.TarError, OSError) as error:
                raise StorageError(f"received a broken or unsafe archive: {error}") from None

        await trio.to_thread.run_sync(unpack)
    return dest
