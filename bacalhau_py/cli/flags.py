"""Flags shared by the client commands, and the one place where job flags become a job spec.

Parsing is in two steps, each with one job:
1. click `ParamType`s split each flag's syntax (`CID:PATH`, `K=V`, `64Mb`)
   and fail with the expected form;
2. the node validates the assembled spec (plain JSON) with the JobSpec model,
   and `FlagSpec` turns the field of a problem it answers (`SpecError`) back
   into the flag the user typed (`_FLAG_FOR`).

The submitting CLI never imports pydantic or the models: they were most of a
`run --wait`'s CPU (BENCHMARKS.md). Only --dry-run, and a submit that finds no
node, validate here, with the same models and the same messages.

Only click is imported at module level: `bacalhau --help` must start fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from bacalhau_py.errors import NodeUnreachable, SpecError, UserInputError
from bacalhau_py.publisher import PUBLISHERS
from bacalhau_py.verifier import VERIFIERS

DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 1234
_API_KEY = "bacalhau.api"


# --- connection ---------------------------------------------------------------


def _remember_api(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta.setdefault(_API_KEY, {})[param.name] = value


def api_options(command: Callable) -> Callable:
    """--api-host / --api-port (env BACALHAU_API_HOST / BACALHAU_API_PORT) on a client command."""
    command = click.option(
        "--api-port", envvar="BACALHAU_API_PORT", type=click.IntRange(1, 65535), default=DEFAULT_API_PORT,
        show_default=True, show_envvar=True, expose_value=False, callback=_remember_api,
        help="Port of the node's API.",
    )(command)
    return click.option(
        "--api-host", envvar="BACALHAU_API_HOST", default=DEFAULT_API_HOST, show_default=True,
        show_envvar=True, expose_value=False, callback=_remember_api,
        help="Host of the node's API.",
    )(command)


def api_client():
    """An APIClient for the node named by the current command's --api-host/--api-port."""
    from bacalhau_py.api.client import APIClient

    api = click.get_current_context().meta[_API_KEY]
    return APIClient(api["api_host"], api["api_port"])


# --- flag syntax ------------------------------------------------------------


class _Form(click.ParamType):
    """A flag value of a fixed textual form; errors quote the value and the form."""

    form = ""

    def bad(self, value: str, problem: str, param, ctx) -> None:
        self.fail(f"{value!r}: {problem} (expected {self.form})", param, ctx)


class IPFSVolume(_Form):
    name = "CID:PATH"
    form = "CID:PATH, e.g. QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o:/inputs"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        cid, sep, path = value.partition(":")
        if not sep or not path:
            self.bad(value, "missing :PATH", param, ctx)
        if not cid:
            self.bad(value, "missing CID", param, ctx)
        return {"source": "ipfs", "cid": cid, "path": path, "flag": f"{_flag(param)} {value!r}"}


class URLVolume(_Form):
    name = "URL:PATH"
    form = "URL:PATH, e.g. https://example.com/data.csv:/inputs/data.csv"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        url, path = _split_path(value)
        if path is None:
            self.bad(value, "missing :PATH", param, ctx)
        if not url.startswith(("http://", "https://")):
            self.bad(value, "not an http(s) URL", param, ctx)
        return {"source": "url", "url": url, "path": path, "flag": f"{_flag(param)} {value!r}"}


class InputURI(_Form):
    name = "URI[:PATH]"
    form = "ipfs://CID[:PATH], http(s)://URL[:PATH] or file:///HOST_PATH[:PATH]; PATH defaults to /inputs"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        flag = f"{_flag(param)} {value!r}"
        if value.startswith("ipfs://"):
            cid, _, path = value.removeprefix("ipfs://").partition(":")
            return {"source": "ipfs", "cid": cid, "path": path or "/inputs", "flag": flag}
        if value.startswith(("http://", "https://")):
            url, path = _split_path(value)
            return {"source": "url", "url": url, "path": path or "/inputs", "flag": flag}
        if value.startswith("file:///"):
            # A path allow-listed on the compute node; it never leaves that node.
            local, sep, path = value.removeprefix("file://").rpartition(":")
            if not sep or not path.startswith("/"):
                local, path = value.removeprefix("file://"), ""
            return {"source": "local", "local_path": local, "path": path or "/inputs", "flag": flag}
        self.bad(value, "unknown scheme", param, ctx)


class OutputVolume(_Form):
    name = "NAME:PATH"
    form = "NAME:PATH, e.g. results:/results"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        name, sep, path = value.partition(":")
        if not sep or not name or not path:
            self.bad(value, "missing NAME or :PATH", param, ctx)
        return {"name": name, "path": path, "flag": f"{_flag(param)} {value!r}"}


class KeyValue(_Form):
    """`K=V`; a comma-separated list of them when `several` (label selectors)."""

    name = "K=V"

    def __init__(self, form: str, several: bool = False) -> None:
        self.form = form
        self.several = several

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = value.split(",") if self.several else [value]
        pairs = []
        for item in items:
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                self.bad(value, "missing KEY=", param, ctx)
            pairs.append((key.strip(), val))
        return tuple(pairs)


class Size(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        from bacalhau_py.models.forms import parse_size

        try:
            return parse_size(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class CPU(click.ParamType):
    name = "CPU"

    def convert(self, value, param, ctx):
        from bacalhau_py.models.forms import parse_cpu

        try:
            return parse_cpu(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _flag(param: click.Parameter | None) -> str:
    return "/".join(param.opts) if param is not None else "value"


def _split_path(value: str) -> tuple[str, str | None]:
    """`https://host/x:/data` -> (`https://host/x`, `/data`); no `:/PATH` suffix -> (value, None).

    A URL has colons of its own (scheme, port), so the path is what follows the
    last colon, and only if it is an absolute path (`/x`, not `//host`).
    """
    head, sep, tail = value.rpartition(":")
    if sep and tail.startswith("/") and not tail.startswith("//") and "://" in head:
        return head, tail
    return value, None


# --- job flags ------------------------------------------------------------------


def job_options(engine: str) -> Callable[[Callable], Callable]:
    """The flags of `docker run` (engine "docker") or of `wasm run` (those that apply to wasm)."""

    def decorate(command: Callable) -> Callable:
        options = [
            click.option("-v", "--input-volumes", "volumes", type=IPFSVolume(), multiple=True,
                         help="Mount an IPFS CID read-only at PATH (repeatable)."),
            click.option("-u", "--input-urls", "urls", type=URLVolume(), multiple=True,
                         help="Download URL and mount it at PATH (repeatable)."),
            click.option("-i", "--input", "uris", type=InputURI(), multiple=True,
                         help="ipfs://CID, http(s)://URL or file:///PATH (allow-listed on the node), "
                              "mounted at PATH (default /inputs)."),
            click.option("-o", "--output-volumes", "outputs", type=OutputVolume(), multiple=True,
                         help="A writable folder published as result NAME (outputs:/outputs is always present)."),
            click.option("-e", "--env", "env", type=KeyValue("K=V, e.g. -e GREETING=hello"), multiple=True,
                         help="Environment variable (repeatable)."),
        ]
        if engine == "docker":
            options += [
                click.option("-w", "--workdir", help="Working directory inside the container."),
                click.option("--entrypoint", help="Override the image's entrypoint."),
            ]
        else:
            options.append(click.option("--entry-point", "entry_point", default="_start", show_default=True,
                                        help="The module's function to run."))
        options += [
            click.option("--cpu", type=CPU(), help="CPU cores, e.g. 0.5, 2, 500m."),
            click.option("--memory", type=Size(), help="Memory, e.g. 64Mb, 1Gb."),
            click.option("--disk", type=Size(), help="Most bytes the job may write to its outputs, e.g. 10Gb."),
        ]
        if engine == "docker":
            options.append(click.option("--gpu", type=click.IntRange(min=0), default=0, help="GPUs."))
        options += [
            click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                         help="Seconds the job may run (default 1800)."),
            click.option("-c", "--concurrency", type=click.IntRange(1, 100), default=1, show_default=True,
                         help="How many nodes run the job."),
            click.option("--confidence", type=click.IntRange(0, 100), default=0, show_default=True,
                         help="How many results must agree for the job to complete."),
            click.option("--min-bids", type=click.IntRange(0, 100), default=0, show_default=True,
                         help="Bids to wait for before accepting any."),
            click.option("--verifier", type=click.Choice(list(VERIFIERS)), default="noop", show_default=True),
            click.option("--publisher", type=click.Choice(list(PUBLISHERS)), default="ipfs", show_default=True),
            click.option("-l", "--labels", multiple=True, help="Label for the job (repeatable)."),
            click.option("-s", "--selector", type=KeyValue("k=v[,k=v...]", several=True), multiple=True,
                         help="Run only on nodes whose labels match k=v (repeatable, comma-separated)."),
            click.option("--retries", type=click.IntRange(0, 100),
                         help="Times the job is rescheduled when a node running it is lost, never when its "
                              "program fails (default 2)."),
        ]
        if engine == "docker":
            options.append(click.option("--network", type=click.Choice(["none", "full"]), default="none",
                                        show_default=True, help="Network access of the job."))
        # click lists options in reverse order of decoration: job flags first, then these.
        command = submission_options(command)
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def submission_options(command: Callable) -> Callable:
    """What to do after submitting (and where): shared by run, wasm run and create."""
    options = [
        click.option("--wait", is_flag=True, help="Wait for the job to finish; exit 1 if it fails."),
        click.option("--wait-timeout-secs", type=click.FloatRange(min=0, min_open=True), default=600,
                     show_default=True, help="Longest --wait."),
        click.option("--id-only", is_flag=True, help="Print only the job ID (no progress)."),
        click.option("--download", is_flag=True, help="Wait, then download the results (implies --wait)."),
        click.option("--output-dir", type=click.Path(file_okay=False),
                     help="Where --download puts results (default ./job-<first 8 chars of ID>)."),
        click.option("--dry-run", is_flag=True, help="Print the job spec as YAML; submit nothing."),
        click.option("--memo/--no-memo", "memo", default=None,
                     help="Take the result of a receipt of the same work instead of running (default: only "
                          "when every input is a CID or inline and there is no network)."),
    ]
    for option in reversed(options):
        command = option(command)
    return api_options(command)


def spec_from_flags(task: dict[str, Any], flags: dict[str, Any]) -> FlagSpec:
    """The job spec for a task (engine, image or module, command...) and the job flags."""
    inputs = [*flags["volumes"], *flags["urls"], *flags["uris"]]
    selector = dict(pair for group in flags["selector"] for pair in group)
    data: dict[str, Any] = {
        "task": {**task, "env": dict(pair for group in flags["env"] for pair in group)},
        "inputs": [{k: v for k, v in item.items() if k != "flag"} for item in inputs],
        "outputs": [{k: v for k, v in item.items() if k != "flag"} for item in flags["outputs"]],
        "resources": {"cpu": flags["cpu"], "memory": flags["memory"], "gpu": flags.get("gpu") or 0,
                      "disk": flags["disk"]},
        "deal": {"concurrency": flags["concurrency"], "confidence": flags["confidence"],
                 "min_bids": flags["min_bids"]},
        "verifier": flags["verifier"],
        "publisher": flags["publisher"],
        "labels": list(flags["labels"]),
        "selector": selector,
    }
    if flags["timeout"] is not None:
        data["timeout"] = flags["timeout"]
    if flags["retries"] is not None:
        data["retries"] = flags["retries"]
    sources = {
        "task": "IMAGE" if task["engine"] == "docker" else "MODULE",
        "inputs": [item["flag"] for item in inputs],
        "outputs": [item["flag"] for item in flags["outputs"]],
    }
    return FlagSpec(data, sources)


# Where each spec field comes from on the command line, for error messages.
_FLAG_FOR = {
    ("task", "image"): "IMAGE",
    ("task", "module"): "MODULE",
    ("task", "env"): "-e/--env",
    ("task", "workdir"): "-w/--workdir",
    ("task", "entrypoint"): "--entrypoint",
    ("task", "entry_point"): "--entry-point",
    ("task", "command"): "COMMAND",
    ("task", "network"): "--network",
    ("resources", "cpu"): "--cpu",
    ("resources", "memory"): "--memory",
    ("resources", "gpu"): "--gpu",
    ("resources", "disk"): "--disk",
    ("deal",): "-c/--concurrency, --confidence, --min-bids",
    ("timeout",): "--timeout",
    ("retries",): "--retries",
    ("verifier",): "--verifier",
    ("publisher",): "--publisher",
    ("labels",): "-l/--labels",
    ("selector",): "-s/--selector",
    ("outputs",): "-o/--output-volumes",
}


class FlagSpec:
    """A job spec as plain JSON, and where its parts came from on the command line.

    `sources`: "inputs"/"outputs" -> the flag and value of each item; "task" ->
    IMAGE or MODULE; None for a spec file, whose problems keep their field names.
    """

    def __init__(self, data: dict[str, Any], sources: dict[str, Any] | None = None) -> None:
        self.data = data
        self.sources = sources

    def submit(self, client) -> dict[str, Any]:
        """POST the spec to the node, which validates it; a problem it finds names the flag."""
        try:
            return client.submit(self.data)
        except SpecError as error:
            raise self.flag_error(error) from None
        except NodeUnreachable:
            # No node to validate it: bad flags are still reported first, as bad input (exit 2).
            self.validated()
            raise

    def validated(self):
        """The JobSpec, validated here as the node would (for --dry-run; imports pydantic and the models)."""
        from bacalhau_py.models.codec import spec_from_dict

        try:
            return spec_from_dict(self.data)
        except SpecError as error:
            raise self.flag_error(error) from None

    def flag_error(self, error: SpecError) -> UserInputError:
        """`error` (the node's or ours) naming the flag or argument the field came from."""
        if self.sources is None:
            return error
        if not error.field:
            return UserInputError(error.problem)
        return UserInputError(f"{self._flag_for(error.field)}: {error.problem}")

    def _flag_for(self, location: tuple) -> str:
        sources = self.sources
        if location == ("task",):
            return sources["task"]
        if len(location) >= 2 and location[0] in sources and isinstance(location[1], int):
            items = sources[location[0]]
            if 0 <= location[1] < len(items):
                return items[location[1]]
        for length in range(len(location), 0, -1):
            if location[:length] in _FLAG_FOR:
                return _FLAG_FOR[location[:length]]
        return ".".join(str(part) for part in location)


class Duration(_Form):
    """A duration: `30s`, `2m`, `1h`, or plain seconds."""

    name = "DURATION"
    form = "a duration, e.g. 30s, 2m, 1h or 45"
    _UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if not match or float(match.group(1)) <= 0:
            self.bad(value, "not a positive duration", param, ctx)
        return float(match.group(1)) * self._UNITS[match.group(2)]
