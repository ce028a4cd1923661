"""IPFS inputs: fetch a CID with this node's IPFS (embedded kubo or the user's daemon)."""

from __future__ import annotations

import posixpath
from pathlib import Path

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import IPFSError, StorageError
from bacalhau_py.models import InputSource

# `is_installed` must answer fast: it is asked while bidding.
_PROBE_TIMEOUT = 5.0


class IPFSStorage:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def is_installed(self) -> bool:
        with trio.move_on_after(_PROBE_TIMEOUT):
            try:
                await self.ctx.ipfs.id()
            except IPFSError:
                return False
            return True
        return False

    async def has_locally(self, source: InputSource) -> bool:
        if source.cid is None:
            return False
        try:
            return await self.ctx.ipfs.is_pinned(source.cid)
        except IPFSError:
            return False

    async def prepare(self, source: InputSource, dest: Path) -> Path:
        """Fetch the CID to `dest/<last part of the mount path>`: the file itself or the folder."""
        if source.cid is None:
            raise StorageError(f"the input at {source.path} has no CID")
        name = posixpath.basename(source.path) or "input"
        target = Path(dest) / name
        try:
            return await self.ctx.ipfs.get(source.cid, target, timeout=self.ctx.fetch_timeout)
        except IPFSError as error:
            # IPFSError is a StorageError: keep its message, add which input it was.
            raise IPFSError(f"input {source.path}: {error.message}") from None
