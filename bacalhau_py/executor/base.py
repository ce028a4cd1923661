"""The executor interface. Called on the compute side only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bacalhau_py.models import JobSpec

# stdout and stderr are each cut at this size; the rest is dropped and the
# truncation noted on the last line of the file.
MAX_LOG_BYTES = 16 << 20


@dataclass(frozen=True)
class Mount:
    """A host folder or file made visible to the job at `target`."""

    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class RunResult:
    """What a finished run left: exit code; stdout/stderr are files in result_dir."""

    exit_code: int
    message: str = ""


class Executor(Protocol):
    async def is_installed(self) -> bool:
        """Can this node run jobs of this engine at all (engine reachable, image tools present)?"""

    async def run(
        self,
        execution_id: str,
        spec: JobSpec,
        inputs: list[Mount],
        outputs: list[Mount],
        result_dir: Path,
    ) -> RunResult:
        """Run the task to completion. Writes `result_dir/stdout` and `result_dir/stderr`.

        Inputs are mounted read-only, outputs writable. A non-zero exit of the
        program is a normal `RunResult`, not an error. Raises `ExecutorError`
        when the task cannot run (image missing, invalid module). Cancellation
        (trio cancel scope: job timeout or user cancel) stops the container or
        wasm instance and releases everything before the Cancelled propagates.
        """
