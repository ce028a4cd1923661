"""The noop executor: runs nothing, succeeds at once.

It measures what the network costs on its own (announce, bid, accept, publish,
verify) in benchmarks, with no container or wasm time mixed in.
"""

from __future__ import annotations

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.executor.base import PreparedExecution, RunResult


class NoopExecutor:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def is_installed(self) -> bool:
        return True

    async def run(self, execution: PreparedExecution) -> RunResult:
        # A checkpoint, so that even a noop run honours an already-cancelled scope.
        await trio.lowlevel.checkpoint()
        execution.result_dir.mkdir(parents=True, exist_ok=True)
        (execution.result_dir / "stdout").write_bytes(b"")
        (execution.result_dir / "stderr").write_bytes(b"")
        return RunResult(exit_code=0)
