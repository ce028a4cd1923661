"""Local inputs: a host file or folder that this node allow-lists (compute to data).

`serve --allow-listed-local-paths PATH` lets jobs mount PATH, or anything
below it, read-only with `-i file:///PATH:/TARGET`. The data is mounted where
it lies: it is never copied, never added to IPFS, and only the job's outputs
leave the node.
"""

from __future__ import annotations

from pathlib import Path

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import StorageError
from bacalhau_py.models import InputSource


class LocalStorage:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def is_installed(self) -> bool:
        return bool(self.ctx.allowed_local_paths)

    async def has_locally(self, source: InputSource) -> bool:
        """Is `source.local_path` allow-listed here (and there)?"""
        return await trio.to_thread.run_sync(self._allowed, source) is not None

    async def prepare(self, source: InputSource, dest: Path) -> Path:
        """The allow-listed host path itself (mounted read-only); `dest` stays empty."""
        path = await trio.to_thread.run_sync(self._allowed, source)
        if path is None:
            raise StorageError(f"local path {source.local_path} is not allow-listed on this node")
        return path

    def _allowed(self, source: InputSource) -> Path | None:
        if source.local_path is None:
            return None
        # Resolved, symlinks included: a link inside an allowed folder must
        # not lead the job outside it.
        path = Path(source.local_path).resolve()
        roots = [Path(root).resolve() for root in self.ctx.allowed_local_paths]
        if path.exists() and any(path == root or path.is_relative_to(root) for root in roots):
            return path
        return None
