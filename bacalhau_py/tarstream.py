"""Folders as tar streams, and tar streams back into folders, without blocking trio.

Used wherever a folder crosses a connection: results from a compute node
(local publisher), results to the client (`get`), uploads (`ipfs add`).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import outcome
import trio

from bacalhau_py import safetar
from bacalhau_py.errors import BacalhauError, StorageError

CHUNK = 1 << 20


class _ChannelWriter:
    """A file-like sink for tarfile running in a thread; chunks go to trio."""

    def __init__(self, send: trio.MemorySendChannel, token: trio.lowlevel.TrioToken) -> None:
        self._send = send
        self._token = token
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            trio.from_thread.run(self._send.send, bytes(self._buffer), trio_token=self._token)
            self._buffer.clear()


async def stream_folders(entries: list[tuple[Path, str]]) -> AsyncIterator[bytes]:
    """Tar of several folders, each stored under its archive prefix ("" = top level)."""

    def fill(archive: tarfile.TarFile) -> None:
        for folder, prefix in entries:
            for name in sorted(os.listdir(folder)):
                archive.add(folder / name, arcname=f"{prefix}/{name}" if prefix else name)

    async for chunk in _tar_from_thread(fill, "could not read the result folder"):
        yield chunk


async def stream_renamed(
    open_source: Callable[[], BinaryIO], rename: Callable[[str], str | None]
) -> AsyncIterator[bytes]:
    """Another tar stream passed on member by member, renamed (`None`: left out).

    `open_source` is called in the worker thread (a blocking read), so the
    bytes go from source to consumer without landing on disk.
    """

    def fill(archive: tarfile.TarFile) -> None:
        with open_source() as source, tarfile.open(fileobj=source, mode="r|") as original:
            for member in original:
                name = rename(member.name)
                if name is None:
                    continue
                member.name = name
                archive.addfile(member, original.extractfile(member) if member.isfile() else None)

    async for chunk in _tar_from_thread(fill, "could not pass the archive on"):
        yield chunk


async def _tar_from_thread(fill: Callable[[tarfile.TarFile], None], failing: str) -> AsyncIterator[bytes]:
    """A tar written by `fill` in a worker thread, yielded chunk by chunk.

    There is no nursery inside this generator (a consumer may resume it from
    any task): when the consumer stops early, closing the channel makes the
    thread's next send fail, and the thread ends; the generator waits for that.
    """
    send, receive = trio.open_memory_channel[bytes](4)
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()
    failure: list[BaseException] = []

    def produce() -> None:
        writer = _ChannelWriter(send, token)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            fill(archive)
        writer.flush()

    def finished(result: outcome.Outcome) -> None:
        error = getattr(result, "error", None)
        if error is not None and not isinstance(error, (trio.BrokenResourceError, trio.ClosedResourceError)):
            failure.append(error)
        trio.from_thread.run_sync(send.close, trio_token=token)
        trio.from_thread.run_sync(done.set, trio_token=token)

    trio.lowlevel.start_thread_soon(produce, finished)
    try:
        async with receive:
            async for chunk in receive:
                yield chunk
    finally:
        with trio.CancelScope(shield=True):
            await done.wait()
    if failure:
        if isinstance(failure[0], BacalhauError):
            raise failure[0]
        raise StorageError(f"{failing}: {failure[0]}")


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
                    safetar.extract_all(archive, dest)
            except (tarfile.TarError, OSError) as error:
                raise StorageError(f"received a broken or unsafe archive: {error}") from None

        await trio.to_thread.run_sync(unpack)
    return dest
