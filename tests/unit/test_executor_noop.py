from pathlib import Path

import pytest
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.executor import EXECUTORS
from bacalhau_py.executor.base import PreparedExecution
from bacalhau_py.models import JobSpec, Task


def execution(tmp_path: Path) -> PreparedExecution:
    spec = JobSpec(task=Task(engine="docker", image="busybox"))
    return PreparedExecution("e1", "j1", spec, [], [], tmp_path / "result")


async def test_noop_writes_empty_logs_and_exits_zero(tmp_path):
    executor = EXECUTORS.load("noop")(ProviderContext(ipfs=None, work_dir=tmp_path))  # type: ignore[arg-type]
    assert await executor.is_installed()
    prepared = execution(tmp_path)
    result = await executor.run(prepared)
    assert result.exit_code == 0
    assert (prepared.result_dir / "stdout").read_bytes() == b""
    assert (prepared.result_dir / "stderr").read_bytes() == b""


async def test_noop_honours_a_cancelled_scope(tmp_path):
    executor = EXECUTORS.load("noop")(ProviderContext(ipfs=None, work_dir=tmp_path))  # type: ignore[arg-type]
    with trio.CancelScope() as scope:
        scope.cancel()
        await executor.run(execution(tmp_path))
        pytest.fail("ran in a cancelled scope")
