"""`bacalhau job ...`: Bacalhau v1's job commands, over its orchestrator API.

FILE is a Bacalhau v1 job (YAML or JSON, '-' for stdin). Flags and output
shapes follow Bacalhau v1's CLI: tables for people, `--output json|yaml`
for scripts (v1's own JSON shapes).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from bacalhau_py.cli.flags import api_client, api_options
from bacalhau_py.cli.jobs import get, logs
from bacalhau_py.cli.output import print_table
from bacalhau_py.errors import UserInputError

JOB_ID = click.argument("job_id", metavar="JOB_ID")
OUTPUT = click.option("--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
                      help="A table, or v1's JSON/YAML.")


@click.group()
def job() -> None:
    """Bacalhau v1 jobs: run, describe, list, logs, executions, history, get, stop, validate."""


def _load(file) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(file.read())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"{file.name}: not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{file.name}: expected a Bacalhau v1 job (a mapping with Type and Tasks)")
    return data


def _print(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _time(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _iso(text: str) -> str:
    return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")


@job.command()
@click.argument("file", type=click.File("r"))
def validate(file) -> None:
    """Check a Bacalhau v1 job file; exit 0 if this network can run it as written."""
    from bacalhau_py.api.v1.translate import job_from_v1

    submission = job_from_v1(_load(file))
    for warning in submission.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo("The Job is valid")


@job.command()
@click.argument("file", type=click.File("r"))
@click.option("--wait", is_flag=True, help="Wait for the job to finish; exit 1 if it fails or is stopped.")
@click.option("--wait-timeout-secs", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True,
              help="Longest --wait.")
@click.option("--id-only", is_flag=True, help="Print only the job ID.")
@api_options
def run(file, wait: bool, wait_timeout_secs: float, id_only: bool) -> None:
    """Submit a Bacalhau v1 job file (YAML or JSON; '-' for stdin)."""
    from bacalhau_py.cli.run import wait_for_job

    data = _load(file)
    with api_client() as client:
        answer = client.orchestrator("PUT", "jobs", body={"Job": data})
        job_id = answer["JobID"]
        for warning in answer.get("Warnings") or []:
            click.echo(f"Warning: {warning}", err=True)
        click.echo(job_id if id_only else f"Job successfully submitted. Job ID: {job_id}")
        if wait:
            done = wait_for_job(client, client.get_job(job_id), wait_timeout_secs, quiet=id_only)
            if not id_only:
                click.echo(f"Job {job_id} {done['state']}")
    if not id_only:
        click.echo(f"To get more details about the run, execute:\n\tbacalhau job describe {job_id}")


@job.command()
@JOB_ID
@click.option("--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
              help="A summary, or v1's JSON/YAML (Job, Executions, History).")
@api_options
def describe(job_id: str, output: str) -> None:
    """Everything about one job: the job, its executions and its history."""
    with api_client() as client:
        got = client.orchestrator("GET", f"jobs/{job_id}", params={"include": "executions,history"})
    if output != "table":
        _print({"Job": got["Job"], "Executions": got["Executions"]["Items"], "History": got["History"]["Items"]}, output)
        return
    job = got["Job"]
    task = job["Tasks"][0]
    fields = [
        ("ID", job["ID"]), ("Name", job["Name"]), ("Namespace", job["Namespace"]), ("Type", job["Type"]),
        ("State", job["State"]["StateType"]), ("Message", job["State"].get("Message", "")),
        ("Count", str(job["Count"])), ("Engine", task["Engine"]["Type"]),
        ("Created Time", _time(job["CreateTime"])), ("Modified Time", _time(job["ModifyTime"])),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name:<{width}} = {value}")
    click.echo("\nExecutions")
    _executions_table(got["Executions"]["Items"])


@job.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=10, show_default=True, help="How many jobs.")
@click.option("--next-token", default="", help="The page after this one (the NextToken of --output json).")
@click.option("--reverse", is_flag=True, help="Oldest first.")
@OUTPUT
@api_options
def list_jobs(limit: int, next_token: str, reverse: bool, output: str) -> None:
    """Jobs, newest first: created, ID, name, type, state."""
    params: dict[str, Any] = {"limit": limit, "reverse": str(reverse).lower()}
    if next_token:
        params["next_token"] = next_token
    with api_client() as client:
        page = client.orchestrator("GET", "jobs", params=params)
    if output != "table":
        _print(page, output)
        return
    rows = [[_time(j["CreateTime"]), j["ID"], j["Name"], j["Type"], j["State"]["StateType"]] for j in page["Items"]]
    print_table(["CREATED", "ID", "JOB", "TYPE", "STATE"], rows, flexible="JOB")


@job.command()
@JOB_ID
@OUTPUT
@api_options
def executions(job_id: str, output: str) -> None:
    """The job's executions: node, compute state, desired state, exit code."""
    with api_client() as client:
        items = client.orchestrator("GET", f"jobs/{job_id}/executions")["Items"]
    if output != "table":
        _print(items, output)
        return
    _executions_table(items)


def _executions_table(items: list[dict[str, Any]]) -> None:
    from bacalhau_py.api.v1.translate import EXECUTION_STATE_NAMES

    desired = {0: "Pending", 1: "Running", 2: "Stopped"}
    rows = [
        [
            _time(e["CreateTime"]), _time(e["ModifyTime"]), e["ID"], e["NodeID"],
            EXECUTION_STATE_NAMES.get(e["ComputeState"]["StateType"], str(e["ComputeState"]["StateType"])),
            desired.get(e["DesiredState"]["StateType"], ""),
            "" if e["RunOutput"] is None else str(e["RunOutput"]["ExitCode"]),
        ]
        for e in items
    ]
    print_table(["CREATED", "MODIFIED", "ID", "NODE ID", "STATE", "DESIRED", "EXIT CODE"], rows)


@job.command()
@JOB_ID
@click.option("--event-type", type=click.Choice(["all", "job", "execution"]), default="all", show_default=True,
              help="Job-level events, execution-level events, or both.")
@OUTPUT
@api_options
def history(job_id: str, event_type: str, output: str) -> None:
    """The job's history: every state change of the job and of its executions."""
    from bacalhau_py.api.v1.translate import EXECUTION_STATE_NAMES

    with api_client() as client:
        items = client.orchestrator("GET", f"jobs/{job_id}/history", params={"event_type": event_type})["Items"]
    if output != "table":
        _print(items, output)
        return

    def change(item: dict[str, Any]) -> tuple[str, str]:
        if "JobState" in item:
            return item["JobState"]["Previous"], item["JobState"]["New"]
        if "ExecutionState" in item:
            states = item["ExecutionState"]
            return EXECUTION_STATE_NAMES[states["Previous"]], EXECUTION_STATE_NAMES[states["New"]]
        return "", ""

    rows = [
        [_iso(h["Time"]), "Job" if h["Type"] == "JobLevel" else "Execution", h.get("ExecutionID", ""),
         h.get("NodeID", ""), *change(h), h.get("Comment", "")]
        for h in items
    ]
    print_table(["TIME", "LEVEL", "EXEC. ID", "NODE ID", "PREVIOUS STATE", "NEW STATE", "COMMENT"], rows, flexible="COMMENT")


# `job get` and `job logs` are `get` and `logs`: the same download, CID check and streams.
job.add_command(get, name="get")
job.add_command(logs, name="logs")


@job.command()
@JOB_ID
@api_options
def stop(job_id: str) -> None:
    """Stop a job: its containers and wasm instances stop."""
    with api_client() as client:
        found = client.orchestrator("GET", f"jobs/{job_id}")["Job"]
        state = found["State"]["StateType"]
        if state in ("Completed", "Failed", "Stopped"):
            click.echo(f"Job {found['ID']} is already {state}: nothing to stop", err=True)
            return
        client.orchestrator("DELETE", f"jobs/{found['ID']}")
    click.echo(f"Job successfully stopped. Job ID: {found['ID']}")
