"""Declarative end-to-end scenarios, run against a real devstack.

A `Scenario` says which stack it needs, what to add to IPFS, the job, and what
the user must get back. The runner adds the inputs through a node's API,
submits the job, waits for it, downloads the results with the real
`bacalhau get` (which checks them against their CIDs) and compares.
Spec strings may use `{cid0}`, `{cid1}`, ... for the CIDs of the inputs in
order, and `{module}` for the wasm program's CID.

Job checkers (`job_state`, `message_contains`, `history_contains`,
`execution_states`) say what the job's describe output must show, as
Bacalhau's scenarios do; `check_job` asserts them all.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bacalhau_py.api.client import APIClient

REPO = Path(__file__).resolve().parents[2]
BACALHAU = [str(REPO / "cmd" / "bacalhau")]

Files = dict[str, bytes]
"""A folder: relative path -> content. A bytes value alone is a single file."""


@dataclass(frozen=True)
class Stack:
    nodes: int = 3
    bad_actors: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    spec: dict[str, Any]
    stack: Stack = Stack()
    inputs: tuple[bytes | Files, ...] = ()
    input_node: int = 0
    """Which node's IPFS the inputs are added to (another node may run the job)."""
    wasm: str | None = None
    """Name of a program in tests/assets/wasm to add to IPFS as the module."""
    state: str = "Completed"
    stdout: str | None = None
    stdout_contains: str | None = None
    exit_code: int | None = 0
    outputs: dict[str, bytes] = field(default_factory=dict)
    """Expected files under the downloaded results folder (e.g. 'outputs/n')."""
    verdicts: tuple[int, int] | None = None
    """(accepted, rejected) executions after verification."""
    check: Callable[[Path, dict[str, Any]], None] | None = None
    """Anything else: called with the results folder and the describe output; it asserts."""
    job_checkers: tuple["JobChecker", ...] = ()
    """What the job's describe output must show (state, message, history)."""


JobChecker = Callable[[dict[str, Any]], None]
"""Asserts something about a job's describe output (JSON)."""


def job_state(expected: str) -> JobChecker:
    def check(job: dict[str, Any]) -> None:
        assert job["state"] == expected, f"job is {job['state']}, expected {expected}: {job.get('message')}"

    return check


def message_contains(text: str) -> JobChecker:
    def check(job: dict[str, Any]) -> None:
        assert text in job["message"], f"job message {job['message']!r} does not say {text!r}"

    return check


def history_contains(text: str) -> JobChecker:
    """Some event of the job's history (describe's `events`) says `text`."""

    def check(job: dict[str, Any]) -> None:
        messages = [event["message"] for event in job["events"]]
        assert any(text in message for message in messages), f"no event says {text!r}: {messages}"

    return check


def execution_states(*expected: str) -> JobChecker:
    """The job's executions, in order, are in these states."""

    def check(job: dict[str, Any]) -> None:
        got = tuple(execution["state"] for execution in job["executions"])
        assert got == expected, f"executions are {got}, expected {expected}"

    return check


def check_job(job: dict[str, Any], checkers: tuple[JobChecker, ...] | list[JobChecker]) -> None:
    for checker in checkers:
        checker(job)


def docker(command: list[str], **spec: Any) -> dict[str, Any]:
    """A docker job spec on the local busybox image."""
    task = {"engine": "docker", "image": "busybox", "command": command, **spec.pop("task", {})}
    return {"task": task, **spec}


def wasm(args: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    task = {"engine": "wasm", "module": {"source": "ipfs", "cid": "{module}", "path": "/module.wasm"},
            "command": args or [], **spec.pop("task", {})}
    return {"task": task, **spec}


def ipfs_input(index: int, path: str) -> dict[str, str]:
    return {"source": "ipfs", "cid": "{cid%d}" % index, "path": path}


def run_scenario(
    scenario: Scenario,
    apis: list[tuple[str, int]],
    wasm_modules: dict[str, Path],
    tmp: Path,
    values: dict[str, str] | None = None,
) -> None:
    adder = APIClient(*apis[scenario.input_node])
    values = dict(values or {})
    for index, content in enumerate(scenario.inputs):
        values[f"cid{index}"] = adder.ipfs_add(_materialise(content, tmp / f"input-{index}"))
    if scenario.wasm:
        values["module"] = adder.ipfs_add(wasm_modules[scenario.wasm])
    spec = json.loads(_fill(json.dumps(scenario.spec), values))

    host, port = apis[0]
    client = APIClient(host, port)
    job = client.submit(spec)
    job = _wait_terminal(client, job["id"], timeout=spec.get("timeout", 120) + 60)
    check_job(job, (job_state(scenario.state), *scenario.job_checkers))
    if scenario.verdicts is not None:
        verdicts = [e["verification"] for e in job["executions"]]
        got = (verdicts.count("accepted"), verdicts.count("rejected"))
        assert got == scenario.verdicts, f"{scenario.name}: verdicts {got}, executions {job['executions']}"
    if scenario.state != "Completed":
        assert job["message"], "a failed job says why"
        return

    results = tmp / "results"
    subprocess.run(
        [*BACALHAU, "get", job["id"], "--output-dir", str(results), "--api-host", host, "--api-port", str(port)],
        check=True, capture_output=True, timeout=120,
    )
    stdout = (results / "stdout").read_text()
    if scenario.stdout is not None:
        assert stdout == scenario.stdout
    if scenario.stdout_contains is not None:
        assert scenario.stdout_contains in stdout
    if scenario.exit_code is not None:
        assert int((results / "exitCode").read_text()) == scenario.exit_code
    for relative, expected in scenario.outputs.items():
        assert (results / relative).read_bytes() == expected, relative
    if scenario.check:
        scenario.check(results, job)


def _materialise(content: bytes | Files, path: Path) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
        return path
    for relative, data in content.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{%s}" % key, value)
    return text


def _wait_terminal(client: APIClient, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job = client.get_job(job_id)
    while job["state"] not in ("Completed", "Failed", "Cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout}s"
        job = client.wait(job_id, since=job.get("updated_at"), timeout=10)
    return job
