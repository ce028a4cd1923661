"""Submitting jobs: `run` / `docker run`, `wasm run`, `create`, `validate`, and what follows a submit.

After a submit the job ID goes to stdout (alone, so `JOB=$(bacalhau run ...)`
works); progress and messages go to stderr.
"""

from __future__ import annotations

import base64
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bacalhau_py.cli.flags import FlagSpec, api_client, job_options, spec_from_flags, submission_options
from bacalhau_py.errors import BacalhauError, UserInputError

TERMINAL = ("Completed", "Failed", "Cancelled")
# Everything after IMAGE / MODULE is the job's, untouched, as with `docker run`.
_JOB_ARGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}


class JobNotCompleted(BacalhauError):
    """`--wait` saw the job end Failed or Cancelled, or run out of time."""


def _job_command(args: tuple[str, ...], what: str) -> list[str]:
    first = args[0] if args else ""
    ctx = click.get_current_context()
    # With unknown options ignored, a mistyped flag before IMAGE would become the image.
    if first.startswith("-") and first != "-":
        raise click.NoSuchOption(first, ctx=ctx)
    if not first:
        raise click.MissingParameter(ctx=ctx, param_type="argument", param_hint=f"'{what}'")
    rest = list(args[1:])
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return [first, *rest]


@click.command("run", context_settings=_JOB_ARGS)
@job_options("docker")
@click.argument("image_and_command", metavar="IMAGE [COMMAND [ARG...]]", nargs=-1, type=click.UNPROCESSED)
def docker_run(image_and_command: tuple[str, ...], **flags: Any) -> None:
    """Submit a docker job running IMAGE with COMMAND; print its ID.

    Flags come before IMAGE; everything after IMAGE is the job's command, as
    with `docker run`:

      bacalhau run -v CID:/file.txt ubuntu bash -c 'cat /file.txt'
    """
    image, *command = _job_command(image_and_command, "IMAGE")
    task = {
        "engine": "docker",
        "image": image,
        "command": command,
        "workdir": flags["workdir"],
        "network": flags["network"],
    }
    if flags["entrypoint"] is not None:
        task["entrypoint"] = [flags["entrypoint"]]
    submit(spec_from_flags(task, flags), flags)


@click.group()
def docker() -> None:
    """Docker jobs."""


docker.add_command(docker_run)


@click.group()
def wasm() -> None:
    """WebAssembly (WASI) jobs."""


@wasm.command("run", context_settings=_JOB_ARGS)
@job_options("wasm")
@click.argument("module_and_args", metavar="MODULE [ARG...]", nargs=-1, type=click.UNPROCESSED)
def wasm_run(module_and_args: tuple[str, ...], **flags: Any) -> None:
    """Submit a WASI job; MODULE is a CID or a local .wasm file. Print its ID.

    A small local module travels inline in the spec; a large one is first
    added to the node's IPFS. Everything after MODULE is the program's arguments.
    """
    module, *args = _job_command(module_and_args, "MODULE")
    task = {
        "engine": "wasm",
        "module": _module_source(module, dry_run=flags["dry_run"]),
        "command": args,
        "entry_point": flags["entry_point"],
    }
    submit(spec_from_flags(task, flags), flags)


_MODULE_PATH = "/module.wasm"


def _module_source(module: str, *, dry_run: bool) -> dict[str, Any]:
    from bacalhau_py.models.forms import MAX_INLINE_BYTES, is_cid

    path = Path(module)
    if path.is_file():
        size = path.stat().st_size
        if size <= MAX_INLINE_BYTES:
            # Its own name: the program's argv[0], and what `list` shows.
            content = base64.b64encode(path.read_bytes()).decode()
            return {"source": "inline", "path": f"/{path.name}", "content": content}
        if dry_run:
            # Nothing may reach the node in a dry run: show the CID it would get.
            from bacalhau_py.ipfs.cid import bytes_cid

            cid = bytes_cid(path.read_bytes())
        else:
            with api_client() as client:
                cid = client.ipfs_add(path)
        return {"source": "ipfs", "cid": cid, "path": _MODULE_PATH}
    if is_cid(module.removeprefix("ipfs://")):
        return {"source": "ipfs", "cid": module.removeprefix("ipfs://"), "path": _MODULE_PATH}
    raise UserInputError(f"MODULE: {module!r} is neither a CID nor a local .wasm file")


@click.command()
@click.argument("file", type=click.File("r"))
def validate(file) -> None:
    """Check a job spec file (YAML, JSON or IPVM; '-' for stdin); exit 0 if valid.

    Prints what it understood: engine, image or module, mounts, outputs, resources.
    """
    from bacalhau_py.models.codec import decode_dict, parse_document
    from bacalhau_py.workflow.spec import is_workflow, read_workflow

    data = parse_document(file.read())
    if is_workflow(data):
        tasks = read_workflow(data)
        click.echo(f"{file.name}: valid workflow of {len(tasks)} task(s)")
        for task in tasks:
            awaits = f" (awaits {', '.join(sorted(task.awaits()))})" if task.awaits() else ""
            click.echo(f"  {task.name}: {task.spec.task.engine.value}, instruction {task.instruction_cid}{awaits}")
        return
    decoded = decode_dict(data)
    _warn(decoded.warnings)
    spec = decoded.spec
    click.echo(f"{file.name}: valid {spec.task.engine.value} job spec")
    for name, value in understood(spec):
        click.echo(f"  {name + ':':<12}{value}")


def understood(spec) -> list[tuple[str, str]]:
    """A spec as `validate` shows it: one (name, value) per line."""
    import shlex

    task = spec.task
    lines = [("engine", task.engine.value)]
    if task.image is not None:
        lines.append(("image", task.image))
    if task.module is not None:
        lines.append(("module", _where(task.module)))
        # Unnamed imports are known by their CID or URL: show that once.
        lines += [
            ("import", _where(i.module) if i.name in (i.module.cid, i.module.url) else f"{i.name} <- {_where(i.module)}")
            for i in task.imports
        ]
        lines.append(("entrypoint", task.entry_point))
    command = [*(task.entrypoint or []), *task.command]
    if command:
        lines.append(("command", shlex.join(command)))
    lines += [("mount", f"{i.path} <- {_where(i)}") for i in spec.inputs]
    lines += [("output", f"{o.path} -> {o.name}/") for o in spec.outputs]
    resources = spec.resources
    amounts = [
        f"cpu {resources.cpu:g}" if resources.cpu is not None else "",
        f"memory {_bytes(resources.memory)}" if resources.memory is not None else "",
        f"disk {_bytes(resources.disk)}" if resources.disk is not None else "",
        f"gpu {resources.gpu}" if resources.gpu else "",
    ]
    lines.append(("resources", ", ".join(a for a in amounts if a) or "node defaults"))
    lines.append(("timeout", f"{spec.timeout:g} s"))
    lines.append(("verifier", spec.verifier))
    lines.append(("publisher", spec.publisher))
    if spec.labels:
        lines.append(("labels", ", ".join(spec.labels)))
    from bacalhau_py.workflow.instruction import instruction_cid, memoized_by_default

    # What the task computes, as a content address: its receipts are found by it.
    lines.append(("cid", instruction_cid(spec)))
    lines.append(("memo", "yes (a receipt of the same cid is reused)" if memoized_by_default(spec) else "no"))
    return lines


def _where(source) -> str:
    if source.source == "ipfs":
        return f"ipfs://{source.cid}"
    if source.source == "url":
        return source.url
    return f"inline ({len(source.inline_bytes())} bytes)"


def _bytes(count: int) -> str:
    return f"{count} bytes" + (f" ({count / 2**20:.4g} MiB)" if count >= 2**20 else "")


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)


@click.command()
@click.argument("file", type=click.File("r"))
@submission_options
def create(file, **flags: Any) -> None:
    """Submit a job spec file (YAML, JSON or IPVM task; '-' for stdin); print its ID."""
    from bacalhau_py.models.codec import decode_spec

    decoded = decode_spec(file.read())
    _warn(decoded.warnings)
    submit(FlagSpec(decoded.spec.model_dump(mode="json")), flags)


def submit(spec: FlagSpec, flags: dict[str, Any]) -> None:
    """Submit `spec`, then --dry-run / --wait / --download / --id-only as the flags say."""
    if flags["memo"] is not None:
        spec.data["memo"] = flags["memo"]
    if flags["dry_run"]:
        from bacalhau_py.models.codec import dump_spec_yaml

        click.echo(dump_spec_yaml(spec.validated()), nl=False)
        return
    with api_client() as client:
        job = spec.submit(client)
        click.echo(job["id"])
        if not (flags["wait"] or flags["download"]):
            return
        job = wait_for_job(client, job, flags["wait_timeout_secs"], quiet=flags["id_only"])
        if flags["download"]:
            from bacalhau_py.cli.results import default_output_dir, download

            dest = Path(flags["output_dir"] or default_output_dir(job["id"]))
            download(client, job, dest)
            if not flags["id_only"]:
                click.echo(f"Results for job {job['id']} are in {dest}", err=True)


def wait_for_job(client, job: dict[str, Any], timeout: float, *, quiet: bool) -> dict[str, Any]:
    """Follow `job` until it is terminal; return it if Completed, else raise JobNotCompleted (exit 1)."""
    deadline = time.monotonic() + timeout
    with _Progress(job["id"], quiet) as progress:
        while True:
            progress.show(job)
            if job["state"] in TERMINAL:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobNotCompleted(
                    f"job {job['id']} is still {job['state']} after {timeout:g} s (--wait-timeout-secs);"
                    f" it keeps running: see 'bacalhau describe {job['id']}'"
                )
            # Quiet: no progress to show, so ask only for the end (one request).
            job = client.wait(job["id"], job["updated_at"], min(remaining, 30.0), terminal=quiet)
    if job["state"] != "Completed":
        raise JobNotCompleted(f"job {job['id']} {job['state']}: {_reason(job)}")
    return job


def _reason(job: dict[str, Any]) -> str:
    if job.get("message"):
        return job["message"]
    reasons = [f"{e['node_id']}: {e['message']}" for e in job.get("executions", []) if e.get("message")]
    return "; ".join(reasons) or "no reason given"


def _summary(job: dict[str, Any]) -> str:
    counts = Counter(e["state"] for e in job.get("executions", []))
    executions = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"{job['state']}" + (f" (executions: {executions})" if executions else "")


class _Progress:
    """State changes on stderr: a line per change, plus a live spinner on a terminal."""

    def __init__(self, job_id: str, quiet: bool) -> None:
        self.job_id = job_id
        self.quiet = quiet
        self.last = ""
        self.status = None

    def __enter__(self) -> "_Progress":
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console

            self.console = Console(stderr=True)
            self.status = self.console.status(f"job {self.job_id[:8]}: submitted")
            self.status.start()
        return self

    def show(self, job: dict[str, Any]) -> None:
        summary = _summary(job)
        if self.quiet or summary == self.last:
            return
        self.last = summary
        line = f"job {self.job_id[:8]}: {summary}"
        if self.status is not None:
            self.console.print(line, highlight=False)
            self.status.update(line)
        else:
            click.echo(line, err=True)

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()
