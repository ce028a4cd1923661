"""IPVM tasks as the job-spec discussion (ipvm-wg/spec #8) writes them, read into a JobSpec.

A task::

    {"with": "ubuntu@sha256:HEX" | "ipfs://CID" | "CID" | "https://.../x.wasm",
     "do": "docker/run" | "wasm32-wasi/run",        // "can" is another name for "do"
     "inputs": {"entrypoint": [...] | "_start", "args": [...], "env": {...}, "workdir": "/",
                "mounts": {"/inputs": {"/": CID}, "/more": {"url": URL}},
                "outputs": {"/outputs": {}, "/results": {"name": "results"}},
                "imports": [{"/": CID}, {"url": URL, "name": "lib"}]},   // wasm only
     "meta": {"bacalhau/config": {"verifier", "publisher", "timeout", "deal", "selector",
                                  "resources": {"cpu": "100m", "memory": [1, "giga", "byte"],
                                                "disk": "200GB", "gpu": 1},
                                  "annotations": [...], "dnt": true},
              "ipvm/config": {"timeout": [500, "milli", "seconds"], "memory", "disk"},
              "memo": true | false},                      // serve from a receipt, or never
     "nnc": "nonce"}                                      // part of the instruction CID

`with` for `docker/run` is the image as written: a name, `NAME@sha256:HEX`
(the compute node checks the digest) or `ipfs://CID` (an image archive).
For `wasm32-wasi/run` it is the module: a CID, `ipfs://CID` or a URL.

IPVM sizes `[N, PREFIX, "byte"]` use SI prefixes (kilo = 1000) and binary
ones (kibi = 1024); a size written as text (`"200GB"`, `"64Mb"`) is read as
the CLI's `--memory` is, in units of 1024. Durations are seconds, or
`[N, "seconds" | "minutes" | "hours"]`, or `[N, PREFIX, "seconds"]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bacalhau_py.errors import UserInputError
from bacalhau_py.models.spec import JobSpec, is_cid, parse_size

DO = {"docker/run": "docker", "wasm32-wasi/run": "wasm"}

_TOP = {"with", "do", "can", "inputs", "meta", "nnc"}
_INPUTS = {
    "docker": {"entrypoint", "args", "env", "workdir", "mounts", "outputs", "network"},
    "wasm": {"entrypoint", "args", "env", "workdir", "mounts", "outputs", "imports"},
}
_CONFIGS = {
    "bacalhau/config": {
        "verifier", "publisher", "timeout", "resources", "deal", "selector", "labels", "annotations", "dnt",
    },
    "ipvm/config": {"timeout", "memory", "disk"},
}
_RESOURCES = {"cpu", "memory", "disk", "gpu"}

_DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_PREFIXES = {
    "": 1, "kilo": 10**3, "mega": 10**6, "giga": 10**9, "tera": 10**12,
    "kibi": 2**10, "mebi": 2**20, "gibi": 2**30, "tebi": 2**40,
}
_MAX_BYTES = 2**63
_SUBSECOND = {"": 1.0, "milli": 1e-3, "micro": 1e-6, "nano": 1e-9}
_TIME_UNITS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}


@dataclass(frozen=True)
class IPVMTask:
    """A task read into our spec, with what was accepted but has no effect here."""

    spec: JobSpec
    warnings: list[str] = field(default_factory=list)


def is_ipvm_task(data: dict[str, Any]) -> bool:
    return bool({"with", "do", "can"} & set(data))


def read_task(data: dict[str, Any]) -> IPVMTask:
    """Read a decoded IPVM task.

    A problem in the task's shape raises UserInputError naming the field
    (`ipvm.inputs.mounts./x: ...`); one in the spec it makes, pydantic's
    ValidationError (the codec names its field).
    """
    _only(data, _TOP, "ipvm", "with, do (or can), inputs, meta, nnc")
    if "do" in data and "can" in data:
        raise UserInputError("ipvm: give `do` or `can` (another name for it), not both")
    do = data.get("do", data.get("can"))
    if not isinstance(do, str) or do not in DO:
        raise UserInputError(f"ipvm.do: {do!r} is not supported (expected one of {', '.join(DO)})")
    engine = DO[do]
    inputs = _mapping(data.get("inputs"), "ipvm.inputs")
    _only(inputs, _INPUTS[engine], "ipvm.inputs", ", ".join(sorted(_INPUTS[engine])))
    warnings: list[str] = []
    config = _config(_mapping(data.get("meta"), "ipvm.meta"), warnings)

    task: dict[str, Any] = {
        "engine": engine,
        "command": inputs.get("args", []),
        "env": inputs.get("env", {}),
        "workdir": inputs.get("workdir"),
    }
    if "network" in inputs:
        task["network"] = inputs["network"]
    target = data.get("with")
    if engine == "docker":
        task["image"] = _image(target)
        if "entrypoint" in inputs:
            task["entrypoint"] = inputs["entrypoint"]
    else:
        task["module"] = _location(target, "/module.wasm", "ipvm.with", "a wasm module: CID, ipfs://CID or URL")
        if "entrypoint" in inputs:
            task["entry_point"] = inputs["entrypoint"]
        task["imports"] = _imports(inputs.get("imports", []))

    spec: dict[str, Any] = {
        "task": task,
        "inputs": _mounts(inputs.get("mounts", {})),
        "outputs": _outputs(inputs.get("outputs", {})),
        **config,
    }
    if "nnc" in data:
        if not isinstance(data["nnc"], str):
            raise UserInputError("ipvm.nnc: expected a string (a nonce)")
        spec["nonce"] = data["nnc"]
    if "publisher" in spec:
        _check_publisher(spec["publisher"])
    return IPVMTask(JobSpec.model_validate(spec), warnings)


def _only(data: dict[str, Any], allowed: set[str], where: str, expected: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserInputError(f"{where}.{unknown[0]}: unknown field (expected {expected})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserInputError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _image(target: Any) -> str:
    if not isinstance(target, str) or not target:
        raise UserInputError("ipvm.with: expected a docker image (NAME, NAME@sha256:HEX or ipfs://CID)")
    if "@" in target and not _DIGEST.match(target):
        raise UserInputError(f"ipvm.with: {target!r} is not NAME@sha256:HEX (64 lowercase hex digits)")
    if target.startswith("ipfs://") and not is_cid(target.removeprefix("ipfs://")):
        raise UserInputError(f"ipvm.with: {target!r} is not ipfs://CID")
    return target


def _location(value: Any, path: str, where: str, expected: str) -> dict[str, Any]:
    """A CID, ipfs://CID, URL, {"/": CID} or {"url": URL} as an InputSource at `path`."""
    if isinstance(value, dict) and set(value) - {"name"} == {"/"}:
        value = value["/"]
    elif isinstance(value, dict) and set(value) - {"name"} == {"url"}:
        return {"source": "url", "url": value["url"], "path": path}
    if isinstance(value, str) and re.match(r"^https?://", value):
        return {"source": "url", "url": value, "path": path}
    if isinstance(value, str) and is_cid(value.removeprefix("ipfs://")):
        return {"source": "ipfs", "cid": value.removeprefix("ipfs://"), "path": path}
    raise UserInputError(f"{where}: {value!r} is not {expected}")


def _imports(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise UserInputError("ipvm.inputs.imports: expected a list of {'/': CID} or {'url': URL}")
    imports = []
    for index, link in enumerate(value):
        where = f"ipvm.inputs.imports.{index}"
        module = _location(link, f"/imports/{index}.wasm", where, "{'/': CID} or {'url': URL} (optionally with 'name')")
        # Unnamed, a module is known by its CID or URL, as in Bacalhau: the
        # main module imports from "QmCID..." or "https://...".
        name = link.get("name") if isinstance(link, dict) and "name" in link else module.get("cid") or module["url"]
        imports.append({"name": name, "module": module})
    return imports


def _mounts(value: Any) -> list[dict[str, Any]]:
    mounts = _mapping(value, "ipvm.inputs.mounts")
    return [
        _location(link, path, f"ipvm.inputs.mounts.{path}", "{'/': CID} or {'url': URL}")
        for path, link in mounts.items()
    ]


def _outputs(value: Any) -> list[dict[str, Any]]:
    """`{"/outputs": {}}` (named after the folder) or `{"/results": {"name": "r"}}`; also `{"name": "/path"}`."""
    outputs = []
    for key, entry in _mapping(value, "ipvm.inputs.outputs").items():
        if isinstance(entry, str):
            outputs.append({"name": key, "path": entry})
            continue
        entry = _mapping(entry, f"ipvm.inputs.outputs.{key}")
        _only(entry, {"name"}, f"ipvm.inputs.outputs.{key}", "name")
        default = key.rstrip("/").rsplit("/", 1)[-1]
        outputs.append({"name": entry.get("name", default), "path": key})
    return outputs


def _config(meta: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The JobSpec fields given by `meta.bacalhau/config` and `meta.ipvm/config`."""
    spec: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    for key, value in meta.items():
        where = f"ipvm.meta.{key}"
        if key == "memo":
            if not isinstance(value, bool):
                raise UserInputError(f"{where}: expected true or false")
            spec["memo"] = value
            continue
        if key not in _CONFIGS:
            warnings.append(f"{where}: not read by this network; ignored")
            continue
        config = _mapping(value, where)
        _only(config, _CONFIGS[key], where, ", ".join(sorted(_CONFIGS[key])))
        for name, item in config.items():
            at = f"{where}.{name}"
            if name == "timeout":
                spec["timeout"] = duration_seconds(item, at)
            elif name == "resources":
                given = _mapping(item, at)
                _only(given, _RESOURCES, at, ", ".join(sorted(_RESOURCES)))
                resources.update({k: _resource(k, v, f"{at}.{k}") for k, v in given.items()})
            elif name in ("memory", "disk"):
                resources[name] = size_bytes(item, at)
            elif name in ("annotations", "labels"):
                # Annotations are user-defined labels: kept as the job's labels.
                if not isinstance(item, list) or not all(isinstance(a, str) for a in item):
                    raise UserInputError(f"{at}: expected a list of strings")
                spec["labels"] = [*spec.get("labels", []), *item]
            elif name == "dnt":
                warnings.append(f"{at}: accepted and ignored (this network keeps no tracking to opt out of)")
            else:
                spec[name] = item
    if resources:
        spec["resources"] = resources
    return spec


def _resource(name: str, value: Any, where: str) -> Any:
    if name in ("memory", "disk"):
        return size_bytes(value, where)
    return value


def size_bytes(value: Any, where: str) -> int:
    """Bytes from `[N, PREFIX, "byte"]`, a number of bytes, or text such as `1Gb`."""
    if isinstance(value, list):
        if len(value) == 2:
            value = [value[0], "", value[1]]
        if (
            len(value) != 3
            or not _number(value[0])
            or not isinstance(value[1], str)
            or value[1] not in _PREFIXES
            or value[2] not in ("byte", "bytes")
        ):
            raise UserInputError(
                f"{where}: {value!r} is not a size (expected e.g. [1, \"giga\", \"byte\"]; "
                f"prefixes: {', '.join(p for p in _PREFIXES if p)})"
            )
        total = value[0] * _PREFIXES[value[1]]
        if not 0 <= total < _MAX_BYTES:
            raise UserInputError(f"{where}: {value!r} is not between 0 and 2^63 bytes")
        return int(total)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserInputError(f"{where}: {value!r} is not a size (expected e.g. [1, \"giga\", \"byte\"] or \"1Gb\")")
    try:
        return parse_size(value)
    except ValueError as error:
        raise UserInputError(f"{where}: {error}") from None


def duration_seconds(value: Any, where: str) -> float:
    """Seconds from a number, `[N, "minutes"]` or `[N, "milli", "seconds"]`."""
    if _number(value):
        return float(value)
    if isinstance(value, list) and len(value) == 2 and _number(value[0]) and value[1] in list(_TIME_UNITS):
        return float(value[0] * _TIME_UNITS[value[1]])
    if (
        isinstance(value, list) and len(value) == 3 and _number(value[0])
        and value[1] in list(_SUBSECOND) and value[2] in ("second", "seconds")
    ):
        return float(value[0] * _SUBSECOND[value[1]])
    raise UserInputError(
        f"{where}: {value!r} is not a duration (expected seconds, [5, \"minutes\"] or [500, \"milli\", \"seconds\"])"
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_publisher(name: Any) -> None:
    from bacalhau_py.publisher import PUBLISHERS

    if not isinstance(name, str) or name not in PUBLISHERS:
        raise UserInputError(
            f"ipvm.meta.bacalhau/config.publisher: {name!r} is not a publisher this network has "
            f"(it has: {', '.join(PUBLISHERS)})"
        )
