"""Workflows and receipts: `workflow run|describe|get`, `receipt`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from bacalhau_py.cli.flags import api_client, api_options
from bacalhau_py.errors import BacalhauError

TERMINAL = ("Completed", "Failed", "Cancelled")
TASK_FIELDS = ("name", "instruction_cid", "job_id", "state", "result_cid", "message")


class WorkflowNotCompleted(BacalhauError):
    """`--wait` saw the workflow end Failed, or run out of time."""


@click.group()
def workflow() -> None:
    """Workflows of IPVM tasks: 'workflow run FILE', 'workflow describe ID', 'workflow get ID'."""


@workflow.command("run")
@click.argument("file", type=click.File("r"))
@click.option("--wait", is_flag=True, help="Wait for every task to finish; exit 1 if one fails.")
@click.option("--wait-timeout-secs", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True,
              help="Longest --wait.")
@click.option("--id-only", is_flag=True, help="Print only the workflow ID (no progress).")
@api_options
def run(file, wait: bool, wait_timeout_secs: float, id_only: bool) -> None:
    """Submit a workflow file ({"tasks": [TASK, ...]}; '-' for stdin); print its ID."""
    from bacalhau_py.models.codec import parse_document
    from bacalhau_py.workflow.spec import read_workflow

    data = parse_document(file.read())
    # Checked here too: a cycle or a dangling await is the user's to fix before anything is sent.
    read_workflow(data)
    with api_client() as client:
        submitted = client.submit_workflow(data)
        click.echo(submitted["id"])
        if not wait:
            return
        deadline = time.monotonic() + wait_timeout_secs
        current = submitted
        while current["state"] not in TERMINAL:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkflowNotCompleted(
                    f"workflow {current['id']} is still {current['state']} after {wait_timeout_secs:g} s;"
                    f" it keeps running: see 'bacalhau workflow describe {current['id']}'"
                )
            current = client.wait_workflow(current["id"], min(remaining, 30.0))
    if not id_only:
        for task in current["tasks"]:
            click.echo(f"task {task['name']}: {task['state']}" + (f" ({task['message']})" if task["message"] else ""),
                       err=True)
    if current["state"] != "Completed":
        raise WorkflowNotCompleted(f"workflow {current['id']} {current['state']}: {current['message']}")


def described(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": found["id"],
        "state": found["state"],
        "message": found["message"],
        "created_at": found["created_at"],
        "tasks": [
            {**{key: task[key] for key in TASK_FIELDS}, "awaits": sorted({p["task"] for p in task["promises"].values()})}
            for task in found["tasks"]
        ],
    }


@workflow.command("describe")
@click.argument("workflow_id", metavar="ID")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@api_options
def describe(workflow_id: str, output: str) -> None:
    """Each task's name, instruction CID, job ID, state and result CID."""
    with api_client() as client:
        found = described(client.get_workflow(workflow_id))
    if output == "json":
        click.echo(json.dumps(found, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(found, sort_keys=False, allow_unicode=True), nl=False)


@workflow.command("get")
@click.argument("workflow_id", metavar="ID")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="One folder per task, named after it: DIR/<task name>/.")
@api_options
def get(workflow_id: str, output_dir: Path) -> None:
    """Download each Completed task's results into DIR/<task name>/, checked against their CIDs."""
    from bacalhau_py.cli.results import download

    with api_client() as client:
        found = client.get_workflow(workflow_id)
        missing = []
        for task in found["tasks"]:
            if task["state"] != "Completed":
                missing.append(f"{task['name']} ({task['state']})")
                continue
            download(client, client.get_job(task["job_id"]), output_dir / task["name"])
    click.echo(f"Results of workflow {found['id']} are in {output_dir}", err=True)
    if missing:
        raise BacalhauError(f"no results for task(s) not Completed: {', '.join(missing)}")


@click.command()
@click.argument("instruction_cid", metavar="INSTRUCTION_CID")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@api_options
def receipt(instruction_cid: str, output: str) -> None:
    """The receipt of an instruction (this node's or a reachable node's), and whether its signature verifies.

    The signature is checked here, by this client, not taken from the node.
    """
    from bacalhau_py.models.receipt import Receipt
    from bacalhau_py.workflow.receipts import problem, receipt_cid

    with api_client() as client:
        found = client.receipt(instruction_cid)
    signed = Receipt.model_validate(found["receipt"])
    why = problem(signed)
    shown = {
        "cid": receipt_cid(signed),
        "verified": why is None,
        **({"problem": why} if why else {}),
        "receipt": signed.model_dump(mode="json"),
    }
    if output == "json":
        click.echo(json.dumps(shown, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True), nl=False)
    if why:
        raise BacalhauError(f"receipt {shown['cid']} does not verify: {why}")
