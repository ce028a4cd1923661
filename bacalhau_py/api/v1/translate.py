"""Bacalhau v1's job model, translated to and from ours: the one place that knows both.

Inbound (`job_from_v1`): a v1 `Job` object (as `PUT /api/v1/orchestrator/jobs`
and `bacalhau job run` take it) becomes a `JobSpec`. Every key is read on
purpose: a key we do not know, or a value we cannot honour, is a
`UserInputError` naming the field, never silently dropped. Server-set keys
(`ID`, `State`, `Version`, `Revision`, `CreateTime`, `ModifyTime`) are ignored,
as Bacalhau ignores them on submit.

Outbound (`job_to_v1`, `execution_to_v1`, `history_to_v1`, `results_to_v1`,
`node_to_v1`): our records in v1's JSON shapes (Bacalhau v1.4's wire format:
job states and history types as names, execution states as numbers, times in
Unix nanoseconds).
"""

from __future__ import annotations

import base64
import binascii
import math
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bacalhau_py import __version__
from bacalhau_py.errors import UserInputError
from bacalhau_py.models import Execution, ExecutionState, Job, JobSpec, JobState
from bacalhau_py.models.codec import describe_validation_error
from bacalhau_py.models.messages import NodeInfo
from bacalhau_py.models.spec import DEFAULT_TIMEOUT_SECONDS, Constraint, InputSource, WasmImport

DEFAULT_NAMESPACE = "default"
TASK_NAME = "main"
SERVER_SET = {"ID", "State", "Version", "Revision", "CreateTime", "ModifyTime"}

# v1's ExecutionStateType numbers (pkg/models/execution.go); v1.4 sends them as numbers.
_NEW, _ASK_FOR_BID, _BID_ACCEPTED, _BID_REJECTED, _COMPLETED, _FAILED, _CANCELLED = 1, 2, 5, 6, 7, 8, 9
_EXECUTION_STATE = {
    ExecutionState.ASKED_FOR_BID: _ASK_FOR_BID,
    ExecutionState.BID_REJECTED: _BID_REJECTED,
    ExecutionState.BID_ACCEPTED: _BID_ACCEPTED,
    ExecutionState.RUNNING: _BID_ACCEPTED,
    ExecutionState.RESULT_PROPOSED: _BID_ACCEPTED,
    ExecutionState.RESULT_ACCEPTED: _COMPLETED,
    ExecutionState.RESULT_REJECTED: _FAILED,
    ExecutionState.FAILED: _FAILED,
    ExecutionState.CANCELLED: _CANCELLED,
    # v1 has no Lost: its node went silent and the requester gave up on it,
    # which v1 clients know as Failed (the job reschedules elsewhere, and
    # ComputeState.Message says the node was lost).
    ExecutionState.LOST: _FAILED,
}
EXECUTION_STATE_NAMES = {
    0: "Undefined", 1: "New", 2: "AskForBid", 3: "AskForBidAccepted", 4: "AskForBidRejected",
    5: "BidAccepted", 6: "BidRejected", 7: "Completed", 8: "Failed", 9: "Cancelled",
}
# v1's desired states: Pending 0, Running 1, Stopped 2.
_DESIRED_PENDING, _DESIRED_RUNNING, _DESIRED_STOPPED = 0, 1, 2

_DOCKER_PARAMS = ("Image", "Entrypoint", "Parameters", "EnvironmentVariables", "WorkingDirectory")
_WASM_PARAMS = ("EntryModule", "EntryPoint", "Parameters", "EnvironmentVariables", "ImportModules")
# Every node fetches these; local inputs only where `serve --allow-listed-local-paths` allows.
_INPUT_TYPES = ("ipfs", "urlDownload", "inline")
_ACCEPTED_INPUT_TYPES = (*_INPUT_TYPES, "localDirectory", "local")
_PUBLISHERS = ("ipfs", "local", "noop")


@dataclass(frozen=True)
class Submission:
    """A v1 job as we will run it, and what the submitter should know about the translation."""

    spec: JobSpec
    warnings: list[str]


# -- inbound: v1 -> ours ---------------------------------------------------------


def job_from_v1(data: Any, *, matching_nodes: int | None = None) -> Submission:
    """Translate a v1 `Job` object into our spec.

    `matching_nodes` is how many compute nodes meet the job's constraints now:
    an `ops` job runs once on each of them. Without it (validation only), an
    ops job is checked but counted as one node.
    """
    job = _mapping(data, "Job")
    _only(job, "Job", {"Name", "Namespace", "Type", "Priority", "Count", "Constraints", "Meta", "Labels", "Tasks"} | SERVER_SET)
    warnings: list[str] = []

    job_type = _string(job.get("Type"), "Job.Type") or "batch"
    if job_type not in ("batch", "ops"):
        raise UserInputError(f"Job.Type: {job_type!r} is not supported here (expected batch or ops)")
    priority = job.get("Priority") or 0
    if priority != 0:
        raise UserInputError(f"Job.Priority: this network has no job priorities (expected 0, got {priority!r})")
    constraints = [_constraint(c, f"Job.Constraints[{i}]") for i, c in enumerate(_list(job.get("Constraints"), "Job.Constraints"))]
    count = job.get("Count") or 1
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise UserInputError(f"Job.Count: expected a positive integer, got {count!r}")
    if job_type == "ops":
        if "Count" in job and job["Count"] not in (0, None):
            raise UserInputError("Job.Count: an ops job runs once on every matching node; leave Count out")
        count = max(matching_nodes or 1, 1)

    tasks = _list(job.get("Tasks"), "Job.Tasks")
    if len(tasks) != 1:
        raise UserInputError(f"Job.Tasks: expected exactly one task, got {len(tasks)}")
    spec: dict[str, Any] = {
        **_task(tasks[0], "Job.Tasks[0]", warnings),
        "deal": {"concurrency": count, "min_bids": count if job_type == "ops" else 0},
        "labels": [f"{k}={v}" for k, v in _string_map(job.get("Labels"), "Job.Labels").items()],
        "constraints": constraints,
        "name": _string(job.get("Name"), "Job.Name"),
        "namespace": _string(job.get("Namespace"), "Job.Namespace"),
        "meta": _string_map(job.get("Meta"), "Job.Meta"),
        "job_type": job_type,
    }
    try:
        return Submission(JobSpec.model_validate(spec), warnings)
    except ValidationError as error:
        raise UserInputError(_v1_problem(error)) from None


# Where each of our spec's fields came from in the v1 job, for error messages.
_V1_FIELDS = {
    ("task", "image"): "Tasks[0].Engine.Params.Image",
    ("task", "entrypoint"): "Tasks[0].Engine.Params.Entrypoint",
    ("task", "command"): "Tasks[0].Engine.Params.Parameters",
    ("task", "env"): "Tasks[0].Env",
    ("task", "workdir"): "Tasks[0].Engine.Params.WorkingDirectory",
    ("task", "module"): "Tasks[0].Engine.Params.EntryModule",
    ("task",): "Tasks[0].Engine",
    ("inputs",): "Tasks[0].InputSources",
    ("outputs",): "Tasks[0].ResultPaths",
    ("resources", "cpu"): "Tasks[0].Resources.CPU",
    ("resources", "memory"): "Tasks[0].Resources.Memory",
    ("resources", "gpu"): "Tasks[0].Resources.GPU",
    ("resources", "disk"): "Tasks[0].Resources.Disk",
    ("task", "imports"): "Tasks[0].Engine.Params.ImportModules",
    ("timeout",): "Tasks[0].Timeouts.ExecutionTimeout",
    ("deal", "concurrency"): "Count",
    ("deal",): "Count",
}


def _v1_problem(error: ValidationError) -> str:
    """Our spec's first validation problem, located in the v1 job the user wrote."""
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"])
    for length in (2, 1):
        if location[:length] in _V1_FIELDS:
            rest = [f"[{p}]" if p.isdigit() else f".{p}" for p in location[length:]]
            where = "Job." + _V1_FIELDS[location[:length]] + "".join(rest)
            break
    else:
        where = ".".join(("Job", *location))
    problem = describe_validation_error(error).split(": ", 1)[1]
    return f"{where}: {problem}"


def _task(data: Any, where: str, warnings: list[str]) -> dict[str, Any]:
    task = _mapping(data, where)
    _only(task, where, {"Name", "Engine", "Publisher", "Env", "Meta", "InputSources", "ResultPaths", "Resources", "Network", "Timeouts"})
    if _string_map(task.get("Meta"), f"{where}.Meta"):
        raise UserInputError(f"{where}.Meta: task metadata is not supported (put it in Job.Meta)")
    engine = _mapping(task.get("Engine"), f"{where}.Engine")
    _only(engine, f"{where}.Engine", {"Type", "Params"})
    kind = _string(engine.get("Type"), f"{where}.Engine.Type")
    params = _mapping(engine.get("Params") or {}, f"{where}.Engine.Params")
    env = _string_map(task.get("Env"), f"{where}.Env")
    if kind == "docker":
        _only(params, f"{where}.Engine.Params", set(_DOCKER_PARAMS))
        run: dict[str, Any] = {
            "engine": "docker",
            "image": _string(params.get("Image"), f"{where}.Engine.Params.Image") or None,
            "entrypoint": _strings(params.get("Entrypoint"), f"{where}.Engine.Params.Entrypoint") or None,
            "command": _strings(params.get("Parameters"), f"{where}.Engine.Params.Parameters"),
            "env": {**env, **_env_list(params.get("EnvironmentVariables"), f"{where}.Engine.Params.EnvironmentVariables")},
            "workdir": _string(params.get("WorkingDirectory"), f"{where}.Engine.Params.WorkingDirectory") or None,
        }
    elif kind == "wasm":
        _only(params, f"{where}.Engine.Params", set(_WASM_PARAMS))
        if params.get("EntryModule") is None:
            raise UserInputError(f"{where}.Engine.Params.EntryModule: a wasm task needs its module (an ipfs or inline input source)")
        module = _input(params["EntryModule"], f"{where}.Engine.Params.EntryModule", default_target="/module.wasm")
        run = {
            "engine": "wasm",
            "module": module,
            "entry_point": _string(params.get("EntryPoint"), f"{where}.Engine.Params.EntryPoint") or "_start",
            "command": _strings(params.get("Parameters"), f"{where}.Engine.Params.Parameters"),
            "env": {**env, **_string_map(params.get("EnvironmentVariables"), f"{where}.Engine.Params.EnvironmentVariables")},
            "imports": [
                _import(m, f"{where}.Engine.Params.ImportModules[{i}]", i)
                for i, m in enumerate(_list(params.get("ImportModules"), f"{where}.Engine.Params.ImportModules"))
            ],
        }
    else:
        raise UserInputError(f"{where}.Engine.Type: {kind!r} is not supported (expected docker or wasm)")
    run["network"] = _network(task.get("Network"), f"{where}.Network")

    spec: dict[str, Any] = {
        "task": run,
        "inputs": [_input(s, f"{where}.InputSources[{i}]") for i, s in enumerate(_list(task.get("InputSources"), f"{where}.InputSources"))],
        "outputs": [_result_path(p, f"{where}.ResultPaths[{i}]") for i, p in enumerate(_list(task.get("ResultPaths"), f"{where}.ResultPaths"))],
        "publisher": _publisher(task.get("Publisher"), f"{where}.Publisher", warnings),
        "resources": _resources(task.get("Resources"), f"{where}.Resources"),
        "timeout": _timeout(task.get("Timeouts"), f"{where}.Timeouts"),
    }
    return spec


def _import(data: Any, where: str, index: int) -> dict[str, Any]:
    """A wasm module to link: named by its Alias, else (as in Bacalhau) by its CID or URL."""
    source = dict(_mapping(data, where))
    alias = _string(source.pop("Alias", None), f"{where}.Alias")
    module = _input(source, where, default_target=f"/imports/{index}.wasm")
    name = alias or module.get("cid") or module.get("url")
    if not name:
        raise UserInputError(f"{where}.Alias: an inline module needs an Alias (the module name its importer uses)")
    return {"name": name, "module": module}


def _input(data: Any, where: str, *, default_target: str | None = None) -> dict[str, Any]:
    source = _mapping(data, where)
    _only(source, where, {"Source", "Alias", "Target"})
    if _string(source.get("Alias"), f"{where}.Alias"):
        raise UserInputError(f"{where}.Alias: input aliases are not supported (expected none; the input is known by its Target)")
    target = _string(source.get("Target"), f"{where}.Target") or default_target
    if not target:
        raise UserInputError(f"{where}.Target: expected the absolute path the input is mounted at")
    config = _mapping(source.get("Source"), f"{where}.Source")
    _only(config, f"{where}.Source", {"Type", "Params"})
    kind = _string(config.get("Type"), f"{where}.Source.Type")
    params = _mapping(config.get("Params") or {}, f"{where}.Source.Params")
    if kind == "ipfs":
        _only(params, f"{where}.Source.Params", {"CID"})
        return {"source": "ipfs", "cid": _string(params.get("CID"), f"{where}.Source.Params.CID"), "path": target}
    if kind == "urlDownload":
        _only(params, f"{where}.Source.Params", {"URL"})
        return {"source": "url", "url": _string(params.get("URL"), f"{where}.Source.Params.URL"), "path": target}
    if kind == "inline":
        _only(params, f"{where}.Source.Params", {"URL"})
        data_bytes = _data_url(_string(params.get("URL"), f"{where}.Source.Params.URL"), f"{where}.Source.Params.URL")
        return {"source": "inline", "content": base64.b64encode(data_bytes).decode(), "path": target}
    if kind in ("localDirectory", "local"):
        # Bacalhau renamed localDirectory to local; both carry the same params.
        _only(params, f"{where}.Source.Params", {"SourcePath", "ReadWrite"})
        if params.get("ReadWrite"):
            raise UserInputError(f"{where}.Source.Params.ReadWrite: local inputs are mounted read-only here (expected false)")
        path = _string(params.get("SourcePath"), f"{where}.Source.Params.SourcePath")
        return {"source": "local", "local_path": path or None, "path": target}
    raise UserInputError(f"{where}.Source.Type: {kind!r} is not supported (expected one of {', '.join(_ACCEPTED_INPUT_TYPES)})")


def _data_url(url: str, where: str) -> bytes:
    """RFC 2397 `data:[<mediatype>][;base64],<data>`, as v1's inline source carries its bytes."""
    if not url.startswith("data:") or "," not in url:
        raise UserInputError(f"{where}: expected a data: URL (data:[;base64],...)")
    header, _, payload = url[len("data:"):].partition(",")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise UserInputError(f"{where}: the data: URL's base64 is not valid") from None
    return urllib.parse.unquote_to_bytes(payload)


def _result_path(data: Any, where: str) -> dict[str, str]:
    path = _mapping(data, where)
    _only(path, where, {"Name", "Path"})
    return {"name": _string(path.get("Name"), f"{where}.Name"), "path": _string(path.get("Path"), f"{where}.Path")}


def _publisher(data: Any, where: str, warnings: list[str]) -> str:
    if data is None:
        return "ipfs"
    config = _mapping(data, where)
    _only(config, where, {"Type", "Params"})
    if _mapping(config.get("Params") or {}, f"{where}.Params"):
        raise UserInputError(f"{where}.Params: publishers here take no parameters (expected none)")
    kind = _string(config.get("Type"), f"{where}.Type")
    if kind == "":
        # The SDK's own example sends an empty publisher: results go where this network keeps them by default.
        return "ipfs"
    if kind == "noop":
        warnings.append(f"{where}: noop publishes nothing off the compute node; results are kept there (local publisher)")
        return "local"
    if kind not in _PUBLISHERS:
        raise UserInputError(f"{where}.Type: {kind!r} is not available on this network (expected one of {', '.join(_PUBLISHERS)})")
    return kind


def _resources(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    resources = _mapping(data, where)
    _only(resources, where, {"CPU", "Memory", "Disk", "GPU"})
    out: dict[str, Any] = {}
    if disk := _string(resources.get("Disk"), f"{where}.Disk"):
        out["disk"] = disk
    if cpu := _string(resources.get("CPU"), f"{where}.CPU"):
        out["cpu"] = cpu
    if memory := _string(resources.get("Memory"), f"{where}.Memory"):
        out["memory"] = memory
    if gpu := _string(resources.get("GPU"), f"{where}.GPU"):
        try:
            out["gpu"] = int(gpu)
        except ValueError:
            raise UserInputError(f"{where}.GPU: {gpu!r} is not a number of GPUs (expected e.g. 1)") from None
    return out


def _network(data: Any, where: str) -> str:
    if data is None:
        return "none"
    network = _mapping(data, where)
    _only(network, where, {"Type", "Domains"})
    if _strings(network.get("Domains"), f"{where}.Domains"):
        raise UserInputError(f"{where}.Domains: per-domain networking is not supported (expected None or Full)")
    kind = network.get("Type", "None")
    names = {0: "None", 1: "Full", 2: "HTTP"}
    name = names.get(kind, kind) if isinstance(kind, int) and not isinstance(kind, bool) else kind
    if isinstance(name, str) and name.lower() in ("none", "full"):
        return name.lower()
    raise UserInputError(f"{where}.Type: {kind!r} is not supported (expected None or Full)")


def _timeout(data: Any, where: str) -> float:
    if data is None:
        return DEFAULT_TIMEOUT_SECONDS
    timeouts = _mapping(data, where)
    _only(timeouts, where, {"ExecutionTimeout", "QueueTimeout", "TotalTimeout"})
    for key in ("QueueTimeout", "TotalTimeout"):
        if timeouts.get(key):
            raise UserInputError(f"{where}.{key}: not supported on this network (use ExecutionTimeout, in seconds)")
    seconds = timeouts.get("ExecutionTimeout") or 0
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
        raise UserInputError(f"{where}.ExecutionTimeout: expected seconds as a positive integer, got {seconds!r}")
    return float(seconds) if seconds else DEFAULT_TIMEOUT_SECONDS


def _constraint(data: Any, where: str) -> Constraint:
    rule = _mapping(data, where)
    _only(rule, where, {"Key", "Operator", "Values"})
    try:
        return Constraint(
            key=_string(rule.get("Key"), f"{where}.Key"),
            operator=rule.get("Operator"),
            values=_strings(rule.get("Values"), f"{where}.Values"),
        )
    except ValidationError as error:
        raise UserInputError(describe_validation_error(error, prefix=where)) from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserInputError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _only(value: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UserInputError(f"{where}.{unknown[0]}: unknown field (expected one of {', '.join(sorted(allowed))})")


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserInputError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserInputError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(_list(value, where))]


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _mapping(value, where)
    return {key: _string(item, f"{where}.{key}") for key, item in mapping.items()}


def _env_list(value: Any, where: str) -> dict[str, str]:
    env = {}
    for i, item in enumerate(_strings(value, where)):
        key, sep, val = item.partition("=")
        if not sep:
            raise UserInputError(f"{where}[{i}]: {item!r} is not KEY=VALUE")
        env[key] = val
    return env


# -- outbound: ours -> v1 --------------------------------------------------------


def job_state(job: Job) -> str:
    """v1's name for the job's state. A job whose bids all ended (nodes busy) waits `Queued`."""
    if job.state is JobState.CANCELLED:
        return "Stopped"
    if job.state is JobState.PENDING and job.executions and job.waiting_to_start():
        return "Queued"
    return job.state.value


def spec_to_v1(spec: JobSpec, *, job_id: str = "") -> dict[str, Any]:
    """The v1 `Job` object for a spec (server-set fields left to `job_to_v1`)."""
    task = spec.task
    if task.engine.value == "docker":
        engine = {"Type": "docker", "Params": _drop_empty({
            "Image": task.image,
            "Entrypoint": task.entrypoint,
            "Parameters": list(task.command),
            "EnvironmentVariables": [f"{k}={v}" for k, v in task.env.items()],
            "WorkingDirectory": task.workdir,
        })}
    else:
        engine = {"Type": task.engine.value, "Params": _drop_empty({
            "EntryModule": _input_to_v1(task.module) if task.module else None,
            "EntryPoint": task.entry_point,
            "Parameters": list(task.command),
            "EnvironmentVariables": dict(task.env),
            "ImportModules": [_import_to_v1(i) for i in task.imports],
        })}
    cpu, memory, gpu, disk = spec.resources.cpu, spec.resources.memory, spec.resources.gpu, spec.resources.disk
    resources = _drop_empty({
        "CPU": f"{cpu:g}" if cpu else None,
        "Memory": str(memory) if memory else None,
        "GPU": str(gpu) if gpu else None,
        "Disk": str(disk) if disk else None,
    })
    return {
        "ID": job_id,
        "Name": spec.name or job_id,
        "Namespace": spec.namespace or DEFAULT_NAMESPACE,
        "Type": spec.job_type,
        "Priority": 0,
        "Count": spec.deal.concurrency,
        "Constraints": [{"Key": c.key, "Operator": c.operator, "Values": list(c.values)} for c in spec.constraints],
        "Meta": dict(spec.meta),
        "Labels": dict(label.partition("=")[::2] for label in spec.labels),
        "Tasks": [{
            "Name": TASK_NAME,
            "Engine": engine,
            "Publisher": {"Type": spec.publisher},
            "InputSources": [_input_to_v1(source) for source in spec.inputs],
            "ResultPaths": [{"Name": o.name, "Path": o.path} for o in spec.outputs],
            "Resources": resources,
            "Network": {"Type": "Full" if task.network == "full" else "None"},
            "Timeouts": {"ExecutionTimeout": math.ceil(spec.timeout)},
        }],
    }


def job_to_v1(job: Job) -> dict[str, Any]:
    return {
        **spec_to_v1(job.spec, job_id=job.id),
        "Meta": {**job.spec.meta, "bacalhau.org/requester.id": job.requester_id},
        "State": _drop_empty({"StateType": job_state(job), "Message": job.message}),
        "Version": 0,
        "Revision": len(job.events) + 1,
        "CreateTime": _nanos(job.created_at),
        "ModifyTime": _nanos(job.updated_at),
    }


def execution_to_v1(job: Job, execution: Execution) -> dict[str, Any]:
    state = _EXECUTION_STATE[execution.state]
    if execution.state.terminal:
        desired = _DESIRED_STOPPED
    elif execution.state is ExecutionState.ASKED_FOR_BID:
        desired = _DESIRED_PENDING
    else:
        desired = _DESIRED_RUNNING
    published = {"Type": execution.publisher or job.spec.publisher, "Params": {"CID": execution.result_cid}} if execution.result_cid else None
    return {
        "ID": execution.id,
        "Namespace": job.spec.namespace or DEFAULT_NAMESPACE,
        "EvalID": "",
        "Name": job.spec.name or job.id,
        "NodeID": execution.node_id,
        "JobID": job.id,
        "AllocatedResources": {"Tasks": {}},
        "DesiredState": {"StateType": desired},
        "ComputeState": _drop_empty({"StateType": state, "Message": execution.message}),
        "PublishedResult": published,
        "RunOutput": None if execution.exit_code is None else {
            "Stdout": "", "StdoutTruncated": False, "stderr": "", "StderrTruncated": False,
            "ExitCode": execution.exit_code, "ErrorMsg": "",
        },
        "PreviousExecution": "",
        "NextExecution": "",
        "FollowupEvalID": "",
        "Revision": 1,
        "CreateTime": _nanos(execution.created_at),
        "ModifyTime": _nanos(execution.updated_at),
    }


def history_to_v1(job: Job) -> list[dict[str, Any]]:
    """One v1 `JobHistory` item per event, with the state each change came from."""
    items = []
    job_previous = "Undefined"
    execution_previous: dict[str, int] = {}
    for revision, event in enumerate(job.events, start=1):
        item: dict[str, Any] = {"JobID": job.id, "NewRevision": revision, "Time": event.at.isoformat()}
        if event.execution_id is not None:
            item["Type"] = "ExecutionLevel"
            item["ExecutionID"] = event.execution_id
            if event.node_id:
                item["NodeID"] = event.node_id
            if event.execution_state is not None:
                new = _EXECUTION_STATE[event.execution_state]
                item["ExecutionState"] = {"Previous": execution_previous.get(event.execution_id, _NEW), "New": new}
                execution_previous[event.execution_id] = new
        else:
            item["Type"] = "JobLevel"
            if event.job_state is not None:
                new_name = "Stopped" if event.job_state is JobState.CANCELLED else event.job_state.value
                item["JobState"] = {"Previous": job_previous, "New": new_name}
                job_previous = new_name
        if event.message:
            item["Comment"] = event.message
        item["Event"] = {"Message": event.message, "Timestamp": event.at.isoformat()}
        items.append(item)
    return items


def results_to_v1(job: Job) -> list[dict[str, Any]]:
    """Where each accepted execution's results are published, as v1 `SpecConfig`s."""
    return [
        {"Type": e.publisher or job.spec.publisher, "Params": {"CID": e.result_cid}}
        for e in job.accepted_executions()
        if e.result_cid
    ]


def node_to_v1(info: NodeInfo) -> dict[str, Any]:
    """A v1 `NodeState`: the node's info, approved and connected (it is in our directory)."""
    compute = "compute" in info.node_types
    node: dict[str, Any] = {
        "NodeID": info.peer_id,
        "NodeType": "Compute" if compute else "Requester",
        "Labels": dict(info.labels),
        "BacalhauVersion": version_to_v1(info.version or __version__),
    }
    if compute:
        node["ComputeNodeInfo"] = {
            "ExecutionEngines": list(info.engines),
            "Publishers": list(_PUBLISHERS),
            "StorageSources": list(_INPUT_TYPES),
            "MaxCapacity": _capacity(info.total_cpu, info.total_memory, info.total_gpu),
            "QueueCapacity": {},
            "AvailableCapacity": _capacity(info.free_cpu, info.free_memory, info.free_gpu),
            "MaxJobRequirements": _capacity(info.total_cpu, info.total_memory, info.total_gpu),
            "RunningExecutions": info.running,
            "EnqueuedExecutions": 0,
        }
    return {"Info": node, "Membership": "APPROVED", "Connection": "CONNECTED"}


def version_to_v1(version: str) -> dict[str, Any]:
    major, _, rest = version.partition(".")
    return {"Major": major, "Minor": rest.partition(".")[0], "GitVersion": f"v{version}", "GitCommit": "", "BuildDate": "1970-01-01T00:00:00Z", "GOOS": "linux", "GOARCH": "amd64"}


def _capacity(cpu: float, memory: int, gpu: int) -> dict[str, Any]:
    return _drop_empty({"CPU": cpu, "Memory": memory, "GPU": gpu})


def _input_to_v1(source: InputSource) -> dict[str, Any]:
    if source.source == "ipfs":
        config = {"Type": "ipfs", "Params": {"CID": source.cid}}
    elif source.source == "url":
        config = {"Type": "urlDownload", "Params": {"URL": source.url}}
    elif source.source == "local":
        config = {"Type": "localDirectory", "Params": {"SourcePath": source.local_path, "ReadWrite": False}}
    else:
        config = {"Type": "inline", "Params": {"URL": f"data:;base64,{source.content}"}}
    return {"Source": config, "Target": source.path}


def _import_to_v1(wasm_import: WasmImport) -> dict[str, Any]:
    source = _input_to_v1(wasm_import.module)
    # A module named by its own CID or URL reads back to that name without an Alias.
    if wasm_import.name not in (wasm_import.module.cid, wasm_import.module.url):
        source["Alias"] = wasm_import.name
    return source


def _nanos(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}
