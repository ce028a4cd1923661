"""The executor interface. Called on the compute side only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bacalhau_py.models import JobSpec
from bacalhau_py.models.spec import describe_size

if TYPE_CHECKING:
    import trio

# stdout and stderr are each cut at this size; the rest is dropped.
MAX_LOG_BYTES = 16 << 20

# Every container the docker executor starts carries this label (value: the
# execution ID), so a stopping node or a test can find what is left.
CONTAINER_LABEL = "bacalhau-py.execution"


def live_log(result_dir: Path, stream: str) -> Path:
    """Where an executor may copy `stream` while the program runs, for `logs -f`.

    Beside the result folder, never in it: the result folder is hashed and
    published, and a live copy is not part of the result.
    """
    return result_dir.parent / f"{stream}.live"


@dataclass(frozen=True)
class Mount:
    """A host folder or file made visible to the job at `target`."""

    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class PreparedExecution:
    """Everything an executor needs, already on local disk."""

    execution_id: str
    job_id: str
    spec: JobSpec
    inputs: list[Mount]
    """Read-only, one per `spec.inputs`, fetched by the storage providers."""
    outputs: list[Mount]
    """Writable empty folders, one per `spec.outputs`, inside `result_dir/<name>`."""
    result_dir: Path
    """Where `stdout` and `stderr` go; published after the run."""
    partition_index: int = 0
    """Which of the job's `deal.concurrency` executions this is, from 0."""
    module: Path | None = None
    """wasm only: the module file fetched from `spec.task.module`."""
    imports: tuple[Path, ...] = ()
    """wasm only: the module files fetched from `spec.task.imports`, in its order."""
    image_id: str | None = None
    """docker only: the ID of the image to run, resolved and checked against the policy."""
    cleanup: trio.Nursery | None = None
    """Where an executor may finish releasing what it used (docker: removing the container) after
    `run` returned, while the result is published; None: before `run` returns."""


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    message: str = ""


def over_memory(limit: int) -> str:
    """Why a run over its memory limit failed: the same words for every executor."""
    return f"killed for using more than {describe_size(limit)} of memory (the job's memory limit)"


class Executor(Protocol):
    async def is_installed(self) -> bool:
        """Can this node run jobs of this engine at all?"""

    async def run(self, execution: PreparedExecution) -> RunResult:
        """Run the task to completion; write `result_dir/stdout` and `result_dir/stderr`.

        A non-zero exit of the program is a normal `RunResult`, not an error.
        Raises `ExecutorError` when the task cannot run (image missing, invalid
        module). Cancellation (the job's timeout or a user's cancel, as a trio
        cancel scope) stops the container or wasm instance and releases it
        before the `Cancelled` propagates.
        """


def job_environment(execution: PreparedExecution) -> dict[str, str]:
    """The env a job runs with: its task's env plus the variables Bacalhau sets for every job (these win)."""
    return {
        **execution.spec.task.env,
        "BACALHAU_JOB_ID": execution.job_id,
        "BACALHAU_EXECUTION_ID": execution.execution_id,
        "BACALHAU_PARTITION_INDEX": str(execution.partition_index),
        "BACALHAU_PARTITION_COUNT": str(execution.spec.deal.concurrency),
    }
