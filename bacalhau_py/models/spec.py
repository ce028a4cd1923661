"""The job spec: what a client asks the network to run.

Every model here crosses a boundary (CLI -> API -> wire -> compute node), so
each is a frozen pydantic model whose validation messages name the field and
the expected form.
"""

from __future__ import annotations

import base64
import posixpath
import re
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from bacalhau_py.models.forms import MAX_INLINE_BYTES, is_cid, parse_cpu, parse_size
from bacalhau_py.models.image import parse_image

DEFAULT_TIMEOUT_SECONDS = 1800.0
# Reschedules after lost nodes (CLI.md: `--retries`, default 2).
DEFAULT_RETRIES = 2
DEFAULT_OUTPUT = "outputs"
DEFAULT_OUTPUT_PATH = "/outputs"
MAX_INLINE_TOTAL_BYTES = 2 << 20
"""All of a job's inline bytes together: the spec travels in every message about the job."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def describe_size(size: int) -> str:
    """`1073741824` -> `1 GiB`: exact multiples keep no decimals, others get one."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path (expected e.g. /inputs)")
    normal = posixpath.normpath(value)
    if normal == "/":
        raise ValueError("cannot mount over / (expected a folder such as /inputs)")
    return normal


def _no_nul(value: str) -> str:
    # A C string ends at NUL: docker and the kernel would run a different command than the one shown.
    if "\0" in value:
        raise ValueError("contains a NUL byte (not allowed in a command argument or an environment value)")
    return value


Argument = Annotated[str, AfterValidator(_no_nul)]
"""A command argument or environment value: any text but NUL."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Engine(str, Enum):
    DOCKER = "docker"
    WASM = "wasm"
    # Runs nothing: what the network alone costs (benchmarks, load tests).
    NOOP = "noop"


class InputSource(Frozen):
    """Data mounted read-only into the job at `path`."""

    source: Literal["ipfs", "url", "inline", "local"]
    path: str
    cid: str | None = None
    url: str | None = None
    content: str | None = Field(default=None, description="base64 of inline bytes")
    local_path: str | None = None
    """local: a host path that the compute node allow-lists (serve --allow-listed-local-paths)."""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _absolute_path(value)

    @field_validator("cid")
    @classmethod
    def _cid(cls, value: str | None) -> str | None:
        if value is not None and not is_cid(value):
            raise ValueError(f"{value!r} is not a CID (expected Qm... or bafy...)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not a URL (expected http(s)://host/...)")
        return value

    @field_validator("local_path")
    @classmethod
    def _local_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or "\0" in value:
            raise ValueError(f"{value!r} is not an absolute path (expected e.g. /data/private)")
        return posixpath.normpath(value)

    @model_validator(mode="after")
    def _one_location(self) -> "InputSource":
        needed = {"ipfs": "cid", "url": "url", "inline": "content", "local": "local_path"}[self.source]
        if getattr(self, needed) is None:
            raise ValueError(f"a {self.source} input needs `{needed}`")
        if self.source == "inline":
            try:
                data = base64.b64decode(self.content or "", validate=True)
            except ValueError:
                raise ValueError("inline `content` must be base64") from None
            if len(data) > MAX_INLINE_BYTES:
                raise ValueError(f"inline content is over {MAX_INLINE_BYTES} bytes; add it to IPFS")
        return self

    @classmethod
    def inline(cls, data: bytes, path: str) -> "InputSource":
        return cls(source="inline", path=path, content=base64.b64encode(data).decode())

    def inline_bytes(self) -> bytes:
        return base64.b64decode(self.content or "")

    def inline_size(self) -> int:
        """The decoded size of inline content, without decoding it (validated base64)."""
        content = self.content or ""
        return len(content) * 3 // 4 - content[-2:].count("=")


class ResultPath(Frozen):
    """A writable folder in the job whose contents become a result volume."""

    name: str
    path: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or value in ("stdout", "stderr", "exitCode", "raw"):
            raise ValueError(f"{value!r} is not a usable output name (expected letters, digits, _ . -)")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _absolute_path(value)


class Resources(Frozen):
    cpu: float | None = None
    memory: int | None = None
    gpu: int = 0
    disk: int | None = None
    """The most bytes the job may write to its outputs (Bacalhau's `--disk`)."""

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value):
        return None if value in (None, "") else parse_cpu(value)

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _memory(cls, value):
        return None if value in (None, "") else parse_size(value)

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class Deal(Frozen):
    """How many nodes run the job and how many must agree."""

    concurrency: Annotated[int, Field(ge=1, le=100)] = 1
    confidence: Annotated[int, Field(ge=0, le=100)] = 0
    min_bids: Annotated[int, Field(ge=0, le=100)] = 0

    @model_validator(mode="after")
    def _consistent(self) -> "Deal":
        if self.confidence > self.concurrency:
            raise ValueError(
                f"confidence {self.confidence} is more than concurrency {self.concurrency}"
            )
        return self


class WasmImport(Frozen):
    """A wasm module linked before the main one: the main module's imports
    from module `name` resolve to this module's exports (as Bacalhau's
    ImportModules, whose names are the modules' CIDs or URLs)."""

    name: Annotated[str, Field(min_length=1, max_length=1024)]
    module: InputSource


class Task(Frozen):
    """What to run. docker: `image` (+ entrypoint, command). wasm: `module` (+ imports). noop: neither."""

    engine: Engine
    image: str | None = None
    entrypoint: list[Argument] | None = None
    command: list[Argument] = []
    module: InputSource | None = None
    entry_point: str = "_start"
    env: dict[str, Argument] = {}
    workdir: str | None = None
    network: Literal["none", "full"] = "none"
    imports: list[WasmImport] = []

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path")
        return value

    @model_validator(mode="after")
    def _engine_fields(self) -> "Task":
        if self.engine is Engine.DOCKER:
            if not self.image:
                raise ValueError("a docker task needs `image` (e.g. busybox or ubuntu:22.04)")
            parse_image(self.image)
            if self.module is not None:
                raise ValueError("a docker task takes `image`, not `module`")
        elif self.engine is Engine.NOOP:
            if self.image is not None or self.module is not None:
                raise ValueError("a noop task runs nothing: it takes neither `image` nor `module`")
        else:
            if self.module is None:
                raise ValueError("a wasm task needs `module` (a CID or inline .wasm bytes)")
            if self.image is not None:
                raise ValueError("a wasm task takes `module`, not `image`")
            names = [i.name for i in self.imports]
            if len(set(names)) != len(names):
                raise ValueError(f"wasm import names must be unique, got {names}")
        if self.imports and self.engine is not Engine.WASM:
            raise ValueError("only a wasm task takes `imports`")
        return self


class Constraint(Frozen):
    """A rule on node labels that a node must meet to run the job (Bacalhau's label selector)."""

    key: str
    operator: Literal["=", "==", "!=", "exists", "!", "in", "notin", "gt", "lt"]
    values: list[str] = []

    @model_validator(mode="after")
    def _arity(self) -> "Constraint":
        if self.operator in ("exists", "!") and self.values:
            raise ValueError(f"operator {self.operator!r} takes no values")
        if self.operator in ("=", "==", "!=", "gt", "lt") and len(self.values) != 1:
            raise ValueError(f"operator {self.operator!r} takes exactly one value")
        if self.operator in ("in", "notin") and not self.values:
            raise ValueError(f"operator {self.operator!r} takes one or more values")
        if self.operator in ("gt", "lt"):
            try:
                int(self.values[0])
            except ValueError:
                raise ValueError(f"operator {self.operator!r} takes an integer, got {self.values[0]!r}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """True if a node with these labels meets the rule (Kubernetes' label-selector semantics)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "=="):
            return value == self.values[0]
        if self.operator == "!=":
            return value != self.values[0]
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator == "in":
            return value in self.values
        if self.operator == "notin":
            return value not in self.values
        try:
            number = int(value) if value is not None else None
        except ValueError:
            return False
        if number is None:
            return False
        return number > int(self.values[0]) if self.operator == "gt" else number < int(self.values[0])


class JobSpec(Frozen):
    """The whole job as submitted. `outputs` always has a volume at /outputs (default name `outputs`)."""

    task: Task
    inputs: list[InputSource] = []
    outputs: Annotated[list[ResultPath], Field(validate_default=True)] = []
    resources: Resources = Resources()
    deal: Deal = Deal()
    timeout: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = DEFAULT_TIMEOUT_SECONDS
    verifier: str = "noop"
    publisher: str = "ipfs"
    labels: list[str] = []
    selector: dict[str, str] = {}
    retries: Annotated[int, Field(ge=0, le=100)] = DEFAULT_RETRIES
    """How many times the job is rescheduled when a node running it is lost (never when its program fails)."""
    constraints: list[Constraint] = []
    name: str = ""
    namespace: str = ""
    meta: dict[str, str] = {}
    job_type: Literal["batch", "ops"] = "batch"
    """ops: once on every node that matches (Bacalhau's ops jobs); batch: `deal.concurrency` nodes."""
    memo: bool | None = None
    """Serve the job from a receipt of the same instruction: None decides by its inputs (workflow/instruction.py)."""
    nonce: Annotated[str, Field(max_length=256)] | None = None
    """The IPVM `nnc`: a different nonce makes the same work a different instruction (run again)."""

    @field_validator("outputs")
    @classmethod
    def _default_output(cls, value: list[ResultPath]) -> list[ResultPath]:
        # `-o results:/outputs` (the README's first example) names the volume
        # at /outputs itself; the default is added only when nothing is there.
        if not any(o.name == DEFAULT_OUTPUT or o.path == DEFAULT_OUTPUT_PATH for o in value):
            value = [ResultPath(name=DEFAULT_OUTPUT, path=DEFAULT_OUTPUT_PATH), *value]
        names = [o.name for o in value]
        if len(set(names)) != len(names):
            raise ValueError(f"output names must be unique, got {names}")
        return value

    @model_validator(mode="after")
    def _paths_distinct(self) -> "JobSpec":
        paths = [i.path for i in self.inputs] + [o.path for o in self.outputs]
        duplicated = sorted({p for p in paths if paths.count(p) > 1})
        if duplicated:
            raise ValueError(f"two volumes are mounted at {duplicated[0]}")
        # An input inside an output folder would be published as a result (and
        # an output inside a read-only input could not be written).
        for source in self.inputs:
            for output in self.outputs:
                inner, outer = sorted([source.path, output.path], key=len, reverse=True)
                if inner.startswith(outer.rstrip("/") + "/"):
                    raise ValueError(
                        f"input {source.path} and output {output.path} overlap: one is inside the other "
                        "(expected separate folders)"
                    )
        from bacalhau_py.publisher import PUBLISHERS
        from bacalhau_py.verifier import VERIFIERS

        if self.verifier not in VERIFIERS:
            raise ValueError(f"unknown verifier {self.verifier!r} (expected one of {', '.join(VERIFIERS)})")
        if self.publisher not in PUBLISHERS:
            raise ValueError(f"unknown publisher {self.publisher!r} (expected one of {', '.join(PUBLISHERS)})")
        return self

    @model_validator(mode="after")
    def _inline_total(self) -> "JobSpec":
        inline = [i for i in (*self.inputs, self.task.module) if i is not None and i.source == "inline"]
        total = sum(i.inline_size() for i in inline)
        if total > MAX_INLINE_TOTAL_BYTES:
            raise ValueError(
                f"inline inputs total {total} bytes, over {MAX_INLINE_TOTAL_BYTES} bytes per job; add them to IPFS"
            )
        return self
