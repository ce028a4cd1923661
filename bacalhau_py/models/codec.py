"""Reading and writing job specs: this project's YAML/JSON spec and IPVM tasks.

An IPVM task looks like::

    {"with": "busybox" | "ipfs://Qm...wasm",
     "do": "docker/run" | "wasm32-wasi/run",
     "inputs": {"entrypoint": [...], "args": [...], "env": {...}, "workdir": "/",
                "mounts": {"/inputs": {"/": "Qm..."}, "/data": {"url": "https://..."}},
                "outputs": {"results": "/outputs"}},
     "meta": {"bacalhau/config": {"verifier": ..., "publisher": ..., "timeout": ...,
                                  "resources": {...}, "deal": {...}}}}
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from bacalhau_py.errors import UserInputError
from bacalhau_py.models.spec import JobSpec

IPVM_DO = {"docker/run": "docker", "wasm32-wasi/run": "wasm"}


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """The first problem as one line: `spec.task.image: <what is wrong>`."""
    first = error.errors()[0]
    location = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "field required"
    return f"{location}: {message}"


def spec_from_dict(data: Any) -> JobSpec:
    """Validate a decoded spec (ours or IPVM) into a JobSpec."""
    if not isinstance(data, dict):
        raise UserInputError("spec: expected a mapping (YAML or JSON object) at the top level")
    if "with" in data or "do" in data:
        return _from_ipvm(data)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise UserInputError(describe_validation_error(error)) from None


def load_spec(text: str) -> JobSpec:
    """Parse a YAML or JSON spec text (JSON is YAML) into a JobSpec."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"spec: not valid YAML or JSON{where}") from None
    return spec_from_dict(data)


def dump_spec_yaml(spec: JobSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=False), sort_keys=False)




def _from_ipvm(data: dict[str, Any]) -> JobSpec:
    unknown = set(data) - {"with", "do", "inputs", "meta"}
    if unknown:
        raise UserInputError(f"ipvm.{sorted(unknown)[0]}: unknown field (expected with, do, inputs, meta)")
    do = data.get("do")
    if do not in IPVM_DO:
        raise UserInputError(f"ipvm.do: {do!r} is not supported (expected one of {', '.join(IPVM_DO)})")
    target = data.get("with")
    if not isinstance(target, str) or not target:
        raise UserInputError("ipvm.with: expected an image name or ipfs://CID of a wasm module")
    inputs = data.get("inputs") or {}
    meta = data.get("meta") or {}
    if not isinstance(inputs, dict) or not isinstance(meta, dict):
        raise UserInputError("ipvm.inputs and ipvm.meta: expected mappings")
    config = meta.get("bacalhau/config") or {}
    if not isinstance(config, dict):
        raise UserInputError("ipvm.meta.bacalhau/config: expected a mapping")

    engine = IPVM_DO[do]
    task: dict[str, Any] = {
        "engine": engine,
        "command": inputs.get("args", []),
        "env": inputs.get("env", {}),
        "workdir": inputs.get("workdir"),
    }
    if "network" in inputs:
        task["network"] = inputs["network"]
    if engine == "docker":
        task["image"] = target
        if "entrypoint" in inputs:
            task["entrypoint"] = inputs["entrypoint"]
    else:
        task["module"] = {"source": "ipfs", "cid": target.removeprefix("ipfs://"), "path": "/module.wasm"}
        if "entrypoint" in inputs:
            task["entry_point"] = inputs["entrypoint"]

    mounts = inputs.get("mounts", {})
    if not isinstance(mounts, dict):
        raise UserInputError("ipvm.inputs.mounts: expected a mapping of path to {'/': CID} or {'url': URL}")
    spec_inputs = []
    for path, link in mounts.items():
        if isinstance(link, dict) and "/" in link:
            spec_inputs.append({"source": "ipfs", "cid": link["/"], "path": path})
        elif isinstance(link, dict) and "url" in link:
            spec_inputs.append({"source": "url", "url": link["url"], "path": path})
        else:
            raise UserInputError(f"ipvm.inputs.mounts.{path}: expected {{'/': CID}} or {{'url': URL}}")

    outputs = inputs.get("outputs", {})
    if not isinstance(outputs, dict):
        raise UserInputError("ipvm.inputs.outputs: expected a mapping of name to path")

    spec: dict[str, Any] = {
        "task": task,
        "inputs": spec_inputs,
        "outputs": [{"name": name, "path": path} for name, path in outputs.items()],
    }
    for key in ("verifier", "publisher", "timeout", "resources", "deal", "labels", "selector"):
        if key in config:
            spec[key] = config[key]
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as error:
        raise UserInputError(describe_validation_error(error, prefix="ipvm")) from None
