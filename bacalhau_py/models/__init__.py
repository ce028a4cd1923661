"""Job spec, job and execution records, states, wire payloads and spec codecs.

The names below are imported on first use (PEP 562), not with the package:
`models.forms` is pydantic-free so that the submitting CLI can parse its
flags without paying for pydantic and every model (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULE_OF = {
    **dict.fromkeys(["Event", "Execution", "Job"], "job"),
    **dict.fromkeys(
        ["Constraint", "Deal", "Engine", "InputSource", "JobSpec", "Resources", "ResultPath", "Task", "WasmImport"],
        "spec",
    ),
    **dict.fromkeys(["is_cid", "parse_cpu", "parse_size"], "forms"),
    **dict.fromkeys(["ExecutionState", "JobState", "advance_execution", "advance_job"], "states"),
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from bacalhau_py.models.forms import is_cid, parse_cpu, parse_size
    from bacalhau_py.models.job import Event, Execution, Job
    from bacalhau_py.models.spec import (
        Constraint, Deal, Engine, InputSource, JobSpec, Resources, ResultPath, Task, WasmImport,
    )
    from bacalhau_py.models.states import ExecutionState, JobState, advance_execution, advance_job
