"""Results in IPFS are kept for the node's retention, then let go.

A compute node pins every result it publishes; `ResultPins` notes when, in
a small JSON file in the work folder (so a restart keeps the dates). Its
`serve` task unpins the results older than the retention and then has IPFS
collect the blocks that no pin reaches (inputs fetched for jobs included),
so a long-running node's repo does not grow without bound.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import trio

from bacalhau_py.errors import IPFSError
from bacalhau_py.ipfs.base import IPFSClient

log = logging.getLogger("bacalhau_py.publisher.retention")

# The longest pause between two sweeps: a node with a short retention sweeps
# more often (half the retention), never less than once a second.
MAX_SWEEP_SECONDS = 3600.0


class ResultPins:
    def __init__(self, ipfs: IPFSClient, record: Path, retention: float) -> None:
        self.ipfs = ipfs
        self.record = record
        self.retention = retention
        self._lock = trio.Lock()
        self._collected_at = time.monotonic()

    async def keep(self, cid: str) -> None:
        """Note that `cid` (pinned by its `add`) was published now."""
        async with self._lock:
            pins = await trio.to_thread.run_sync(self._read)
            pins[cid] = time.time()
            await trio.to_thread.run_sync(self._write, pins)

    async def sweep(self) -> list[str]:
        """Unpin the results older than the retention, then collect garbage; return the CIDs let go."""
        async with self._lock:
            pins = await trio.to_thread.run_sync(self._read)
            now = time.time()
            expired = [cid for cid, at in pins.items() if at + self.retention < now]
            for cid in expired:
                try:
                    await self.ipfs.unpin(cid)
                except IPFSError as error:
                    # Not pinned any more (someone unpinned it): nothing to keep.
                    log.info("result %s: %s", cid, error)
                del pins[cid]
            await trio.to_thread.run_sync(self._write, pins)
        # Also now and then without expired results: inputs fetched for jobs
        # are never pinned, and they add up too.
        if expired or time.monotonic() - self._collected_at >= MAX_SWEEP_SECONDS:
            removed = await self.ipfs.collect_garbage()
            self._collected_at = time.monotonic()
            log.info("let %d result(s) go after the retention; %d block(s) collected", len(expired), removed)
        return expired

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = max(1.0, min(self.retention / 2, MAX_SWEEP_SECONDS))
        while True:
            await trio.sleep(pause)
            try:
                await self.sweep()
            except IPFSError as error:
                log.warning("could not let old results go: %s", error)

    def _read(self) -> dict[str, float]:
        try:
            pins = json.loads(self.record.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("%s is not JSON; starting a new record of result pins", self.record)
            return {}
        return {str(cid): float(at) for cid, at in pins.items()} if isinstance(pins, dict) else {}

    def _write(self, pins: dict[str, float]) -> None:
        partial = self.record.with_suffix(".partial")
        partial.write_text(json.dumps(pins))
        partial.replace(self.record)
