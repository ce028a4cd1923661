"""Inline inputs: bytes carried in the job spec itself (small: at most 1 MiB)."""

from __future__ import annotations

import posixpath
from pathlib import Path

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import StorageError
from bacalhau_py.models import InputSource


class InlineStorage:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def is_installed(self) -> bool:
        return True

    async def has_locally(self, source: InputSource) -> bool:
        return True  # the data travels with the job

    async def prepare(self, source: InputSource, dest: Path) -> Path:
        """Write the bytes to `dest/<last part of the mount path>` and return that file (mounted as a file)."""
        if source.content is None:
            raise StorageError(f"the inline input at {source.path} has no content")
        target = Path(dest) / (posixpath.basename(source.path) or "input")
        try:
            await trio.to_thread.run_sync(target.write_bytes, source.inline_bytes())
        except OSError as error:
            raise StorageError(f"cannot write the inline input for {source.path}: {error.strerror}") from None
        return target
