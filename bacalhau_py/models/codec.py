"""Reading and writing job specs: this project's YAML/JSON spec and IPVM tasks.

A spec file is YAML, JSON, or JSON with `//` and `/* */` comments and
trailing commas (as the IPVM discussion writes its examples; read as JSON5).
A mapping with `with` and `do` (or `can`) is an IPVM task, read by
`models/ipvm.py`; any other mapping is this project's JobSpec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import json5
import yaml
from pydantic import ValidationError

from bacalhau_py.errors import SpecError, UserInputError
from bacalhau_py.models.ipvm import is_ipvm_task, read_task
from bacalhau_py.models.spec import JobSpec


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """The first problem as one line: `spec.task.image: <what is wrong>`."""
    return str(spec_error(error, prefix))


def spec_error(error: ValidationError, prefix: str = "spec") -> SpecError:
    """The first problem as a SpecError: its one line, and its field and problem apart."""
    first = error.errors()[0]
    location = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        problem = "unknown field"
    elif first["type"] == "missing":
        problem = "field required"
    return SpecError(f"{location}: {problem}", field=tuple(first["loc"]), problem=problem)


@dataclass(frozen=True)
class DecodedSpec:
    """A spec read from a file, and what it asked for that has no effect here."""

    spec: JobSpec
    warnings: list[str] = field(default_factory=list)


def spec_from_dict(data: Any) -> JobSpec:
    """Validate a decoded spec (ours or IPVM) into a JobSpec."""
    return decode_dict(data).spec


def decode_dict(data: Any) -> DecodedSpec:
    if not isinstance(data, dict):
        raise UserInputError("spec: expected a mapping (YAML or JSON object) at the top level")
    ipvm = is_ipvm_task(data)
    try:
        if ipvm:
            task = read_task(data)
            return DecodedSpec(task.spec, task.warnings)
        return DecodedSpec(JobSpec.model_validate(data))
    except ValidationError as error:
        raise spec_error(error, prefix="ipvm" if ipvm else "spec") from None


def load_spec(text: str) -> JobSpec:
    """Parse a spec text (YAML, JSON, or JSON with comments and trailing commas) into a JobSpec."""
    return decode_spec(text).spec


def dump_spec_yaml(spec: JobSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=False), sort_keys=False)


def decode_spec(text: str) -> DecodedSpec:
    """Parse a spec text (YAML, JSON, or JSON with comments and trailing commas), with its warnings."""
    return decode_dict(_parse(text))


def parse_document(text: str) -> Any:
    """A spec file's text (YAML, JSON, or JSON with comments) decoded, before it is read as a spec."""
    return _parse(text)


def _parse(text: str) -> Any:
    if _JSON_START.match(text):
        try:
            return json5.loads(text, allow_duplicate_keys=False, parse_constant=_no_constant)
        except ValueError as error:
            json_error = str(error)
        except RecursionError:
            raise UserInputError("spec: nested too deeply") from None
        if not json_error.startswith("<string>:"):
            # Well-formed, but refused (a duplicate key, NaN).
            raise UserInputError(f"spec: {json_error}")
        # Not JSON at all: a YAML flow mapping also starts with `{`.
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserInputError(f"spec: not valid JSON: line {json_error.removeprefix('<string>:')}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"spec: not valid YAML or JSON{where}") from None


# Leading blanks and `//` or `/* */` comments, then `{`.
_JSON_START = re.compile(r"^(?:\s|//[^\n]*\n|/\*.*?\*/)*\{", re.DOTALL)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a spec may hold")

