"""Job spec, job and execution records, states, wire payloads and spec codecs."""

from bacalhau_py.models.job import Event, Execution, Job
from bacalhau_py.models.spec import (
    Constraint,
    Deal,
    Engine,
    InputSource,
    JobSpec,
    Resources,
    ResultPath,
    Task,
    WasmImport,
    is_cid,
    parse_cpu,
    parse_size,
)
from bacalhau_py.models.states import ExecutionState, JobState, advance_execution, advance_job

__all__ = [
    "Constraint", "Deal", "Engine", "Event", "Execution", "ExecutionState", "InputSource", "Job",
    "JobSpec", "JobState", "Resources", "ResultPath", "Task", "advance_execution",
    "advance_job", "is_cid", "parse_cpu", "parse_size", "WasmImport",
]
