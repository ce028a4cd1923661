"""Reading and steering submitted jobs: list, describe, logs, get, cancel."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bacalhau_py.cli.flags import api_client, api_options
from bacalhau_py.cli.output import print_table

JOB_ID = click.argument("job_id", metavar="JOB_ID")


@click.command("list")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="How many jobs.")
@click.option("--wide", is_flag=True, help="Full job IDs and commands.")
@click.option("--all", "every", is_flag=True, help="Every client's jobs, not only yours (operators only).")
@api_options
def list_jobs(output: str, limit: int, wide: bool, every: bool) -> None:
    """Your recent jobs, newest first: ID, created, state, engine, command."""
    with api_client() as client:
        jobs = client.list_jobs(limit, every=every)
    if output == "json":
        click.echo(json.dumps(jobs, indent=2))
        return
    rows = [
        [
            job["id"] if wide else job["id"][:8],
            _local_time(job["created_at"]),
            job["state"],
            job["spec"]["task"]["engine"],
            _command(job["spec"]["task"]),
            *([job.get("instruction_cid") or "-"] if wide else []),
        ]
        for job in jobs
    ]
    headers = ["ID", "CREATED", "STATE", "ENGINE", "COMMAND", *(["INSTRUCTION"] if wide else [])]
    print_table(headers, rows, flexible=None if wide else "COMMAND")


def _local_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _command(task: dict[str, Any]) -> str:
    import shlex

    if task["engine"] == "docker":
        head = [task["image"], *(task.get("entrypoint") or [])]
    elif task.get("module"):
        module = task["module"]
        head = [module.get("cid") or module["path"].lstrip("/")]
    else:
        head = []  # a noop task runs nothing
    return shlex.join([*head, *task.get("command", [])])


@click.command()
@JOB_ID
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@api_options
def describe(job_id: str, output: str) -> None:
    """Everything about one job: spec, state, executions, events."""
    with api_client() as client:
        job = client.get_job(job_id)
    if output == "json":
        click.echo(json.dumps(job, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(job, sort_keys=False, allow_unicode=True), nl=False)


@click.command()
@JOB_ID
@click.option("-f", "--follow", is_flag=True, help="Keep streaming while the job runs.")
@api_options
def logs(job_id: str, follow: bool) -> None:
    """Stdout and stderr of the job's (first accepted) execution."""
    outputs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    with api_client() as client:
        for stream, data in client.logs(job_id, follow=follow):
            out = outputs.get(stream, sys.stdout.buffer)
            out.write(data)
            out.flush()


@click.command()
@JOB_ID
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put the results (default ./job-<first 8 chars of ID>).")
@api_options
def get(job_id: str, output_dir: Path | None) -> None:
    """Download the job's results and check them against their CIDs."""
    from bacalhau_py.cli.results import default_output_dir, download

    with api_client() as client:
        job = client.get_job(job_id)
        dest = download(client, job, output_dir or default_output_dir(job["id"]))
    click.echo(f"Results for job {job['id']} are in {dest}", err=True)


@click.command()
@JOB_ID
@api_options
def cancel(job_id: str) -> None:
    """Cancel a job: its containers and wasm instances stop."""
    with api_client() as client:
        before = client.get_job(job_id)
        if before["state"] in ("Completed", "Failed", "Cancelled"):
            click.echo(f"job {before['id']} is already {before['state']}: nothing to cancel", err=True)
            return
        job = client.cancel(before["id"])
    click.echo(f"job {job['id']} {job['state']}", err=True)
