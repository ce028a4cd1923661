"""Results as the requester sees them: fetched once, cached, served to clients."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from pathlib import Path

import trio

from bacalhau_py import tarstream
from bacalhau_py.errors import NotFound, StorageError
from bacalhau_py.ipfs.base import IPFSClient
from bacalhau_py.models import ExecutionState, Job
from bacalhau_py.models.messages import FetchResult
from bacalhau_py.results import RAW
from bacalhau_py.transport.base import Transport

# The longest pause between two sweeps of the cache.
CACHE_SWEEP_SECONDS = 3600.0

WITH_RESULTS = (ExecutionState.RESULT_PROPOSED, ExecutionState.RESULT_ACCEPTED, ExecutionState.RESULT_REJECTED)


class ResultFetcher:
    """Implements the verifiers' ResultReader, and builds `get`'s tar stream."""

    def __init__(
        self, *, ipfs: IPFSClient, transport: Transport, cache_dir: Path, timeout: float,
        retention: float = float("inf"),
    ) -> None:
        self.ipfs = ipfs
        self.transport = transport
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.retention = retention
        self._locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drop cached results older than the retention, now and then (they can be fetched again)."""
        task_status.started()
        while True:
            await trio.sleep(max(1.0, min(self.retention / 2, CACHE_SWEEP_SECONDS)))
            await trio.to_thread.run_sync(self._drop_old)

    def _drop_old(self) -> None:
        oldest = time.time() - self.retention
        try:
            folders = list(self.cache_dir.iterdir())
        except FileNotFoundError:
            return
        for folder in folders:
            try:
                if folder.stat().st_mtime < oldest:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue

    async def fetch(self, execution_id: str, node_id: str, result_cid: str | None, publisher: str) -> Path:
        final = self.cache_dir / execution_id
        async with self._locks[execution_id]:
            if await trio.to_thread.run_sync(final.exists):
                return final
            partial_dir = self.cache_dir / f".{execution_id}.partial"
            await trio.to_thread.run_sync(shutil.rmtree, partial_dir, True)
            if publisher == "local":
                stream = self.transport.request_stream(node_id, FetchResult(execution_id=execution_id))
                async with aclosing(stream):
                    with trio.move_on_after(self.timeout) as waited:
                        await tarstream.extract(stream, partial_dir)
                if waited.cancelled_caught:
                    raise StorageError(f"the result of execution {execution_id} did not arrive within {self.timeout:g}s")
            else:
                if result_cid is None:
                    raise NotFound(f"execution {execution_id} published no result CID")
                await trio.to_thread.run_sync(partial(Path.mkdir, partial_dir.parent, parents=True, exist_ok=True))
                await self.ipfs.get(result_cid, partial_dir, timeout=self.timeout)
            await trio.to_thread.run_sync(partial_dir.rename, final)
        return final

    async def _stream_from_ipfs(self, cid: str) -> AsyncIterator[bytes]:
        def top_level(name: str) -> str | None:
            # kubo's entries are `CID` (the folder itself: left out) and `CID/...`.
            root, _, rest = name.partition("/")
            if root != cid:
                raise StorageError(f"unexpected entry {name!r} in the tar of {cid}")
            return rest or None

        opened = partial(self.ipfs.open_tar, cid, timeout=self.timeout)
        async for chunk in tarstream.stream_renamed(opened, top_level):
            yield chunk

    async def folder_of(self, job: Job) -> Path:
        """The result folder whose logs a user means.

        The first accepted execution's, else the first proposed, else the
        logs of the last failed run (a timeout, a limit): compute nodes
        publish those to IPFS whatever the job's publisher.
        """
        if job.memoized_from is not None:
            # Nothing ran: the folder is the receipt's result, fetched once per job.
            return await self.fetch(f"memo-{job.id}", job.memoized_from.issuer, job.memoized_from.out.result_cid, "ipfs")
        candidates = job.accepted_executions() or [e for e in job.executions if e.state in WITH_RESULTS]
        if candidates:
            execution = candidates[0]
            return await self.fetch(
                execution.id, execution.node_id, execution.result_cid, execution.publisher or job.spec.publisher
            )
        failed = [e for e in job.executions if e.state is ExecutionState.FAILED and e.logs_cid]
        if failed:
            return await self.fetch(failed[-1].id, failed[-1].node_id, failed[-1].logs_cid, "ipfs")
        if job.state.terminal:
            raise NotFound(f"job {job.id} has no results (state {job.state.value}: {job.message or 'no message'})")
        raise NotFound(f"job {job.id} has no results yet (state {job.state.value})")

    async def job_tar(self, job: Job) -> AsyncIterator[bytes]:
        """The results layout of CLI.md as a tar stream."""
        if job.memoized_from is not None:
            async for chunk in self._stream_from_ipfs(job.memoized_from.out.result_cid):
                yield chunk
            return
        accepted = job.accepted_executions()
        if not accepted:
            raise NotFound(f"job {job.id} has no accepted result (state {job.state.value}: {job.message or 'no message'})")
        with_results = [e for e in job.executions if e.state in WITH_RESULTS]
        publisher = job.spec.publisher
        only = accepted[0]
        if len(with_results) == 1 and publisher == "ipfs" and only.result_cid:
            if not await trio.to_thread.run_sync((self.cache_dir / only.id).exists):
                # Straight from IPFS to the client: the result is not written
                # to this node's disk and read back first.
                async for chunk in self._stream_from_ipfs(only.result_cid):
                    yield chunk
                return
        entries = [(await self.fetch(accepted[0].id, accepted[0].node_id, accepted[0].result_cid, publisher), "")]
        if len(with_results) > 1:
            for execution in with_results:
                folder = await self.fetch(execution.id, execution.node_id, execution.result_cid, publisher)
                entries.append((folder, f"{RAW}/{execution.node_id}"))
        async for chunk in tarstream.stream_folders(entries):
            yield chunk
