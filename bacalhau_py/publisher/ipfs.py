"""Publish a result folder by adding it to this node's IPFS; any peer can then fetch the CID.

A tiny result (a noop job's, a program that printed nothing) is the same
folder again and again, so the same CID: once added, it is not added again
while its blocks are surely still pinned here (half the retention since it
was last added). That saves an HTTP round trip to kubo and kubo's own work
on most short jobs.
"""

from __future__ import annotations

import os
from time import monotonic
from pathlib import Path

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import IPFSError, PublishError

TINY_RESULT_BYTES = 1024
"""A result folder whose files hold at most this much in all counts as tiny."""
TINY_RESULTS_KEPT = 64
"""How many distinct tiny results are remembered (exit codes, small outputs)."""


class IPFSPublisher:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._tiny: dict[tuple, tuple[str, float]] = {}
        """The full content of a tiny result folder -> (its CID, when it was added)."""

    async def publish(self, execution_id: str, result_dir: Path) -> str:
        if not Path(result_dir).is_dir():
            raise PublishError(f"execution {execution_id} has no result folder at {result_dir}")
        content = await trio.to_thread.run_sync(tiny_content, Path(result_dir))
        known = self._tiny.get(content) if content is not None else None
        if known is not None and monotonic() - known[1] < self._reuse_for():
            return known[0]
        try:
            cid = await self.ctx.ipfs.add(Path(result_dir))
        except IPFSError as error:
            raise PublishError(f"could not publish the results of {execution_id} to IPFS: {error.message}") from None
        if self.ctx.result_pins is not None:
            await self.ctx.result_pins.keep(cid)
        if content is not None:
            if len(self._tiny) >= TINY_RESULTS_KEPT:
                del self._tiny[next(iter(self._tiny))]
            self._tiny[content] = (cid, monotonic())
        return cid

    def _reuse_for(self) -> float:
        # The pin of a result is let go a retention after its last `keep`:
        # adding it again at half the retention keeps it pinned while used.
        pins = self.ctx.result_pins
        return pins.retention / 2 if pins is not None else float("inf")


def tiny_content(folder: Path) -> tuple | None:
    """Every entry of `folder` with its bytes, sorted; None if its files hold more than TINY_RESULT_BYTES."""
    entries = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        relative = os.path.relpath(dirpath, folder)
        if any(os.path.islink(os.path.join(dirpath, name)) for name in (*dirnames, *filenames)):
            return None  # kubo adds a link as a link: not worth a key of its own
        entries += [(os.path.join(relative, name), None) for name in dirnames]
        for name in filenames:
            path = os.path.join(dirpath, name)
            total += os.path.getsize(path)
            if total > TINY_RESULT_BYTES:
                return None
            with open(path, "rb") as handle:
                entries.append((os.path.join(relative, name), handle.read(TINY_RESULT_BYTES + 1)))
    return tuple(sorted(entries, key=lambda entry: entry[0]))
