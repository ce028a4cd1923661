"""What every benchmark shares: results, sampling, the devstack, the CLI, test programs.

Machines here are small (2 cores) and shared, so absolute times drift from
run to run; every benchmark therefore measures the raw tool in the SAME run,
interleaved with our own samples, and reports the ratio (or the difference)
next to the median. Only those are compared with the targets.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import trio

from bacalhau_py.api.client import APIClient
from bacalhau_py.devstack.stack import DevNode, devstack

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state" / "bench"
RESULTS = STATE / "results.json"
CLI = [str(ROOT / "cmd" / "bacalhau")]
IMAGE = "busybox:latest"
TERMINAL = ("Completed", "Failed", "Cancelled")


@dataclass
class Result:
    """One row of the table. Times are in milliseconds."""

    name: str
    median: float
    unit: str = "ms"
    raw: float | None = None
    """The raw tool's median, measured in the same run."""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    limits: str = ""
    command: str = ""
    samples: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timed(function: Callable[[], object]) -> float:
    """Seconds `function()` took (blocking; call it in a thread from trio)."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


async def in_thread(function, *args, **kwargs):
    # Clients and subprocesses block: never on the trio thread that runs the stack.
    return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


def fresh_dir(name: str) -> Path:
    path = STATE / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@asynccontextmanager
async def stack(name: str, nodes: int = 3, *, labelled: bool = True) -> AsyncIterator[list[DevNode]]:
    """A fresh devstack under .state/bench/NAME; node i has label `node=i` (to place jobs)."""
    args = [["--labels", f"node={i}"] for i in range(nodes)] if labelled else None
    root = fresh_dir(name)
    try:
        async with devstack(root, nodes, node_args=args) as started:
            yield started
    finally:
        # The data benchmark leaves GBs in the nodes' IPFS blocks, result
        # caches and execution folders; keep the logs and job stores (for a
        # post-mortem), drop the data.
        for data in [*root.glob("node-*/ipfs/blocks"), *root.glob("node-*/work")]:
            shutil.rmtree(data, ignore_errors=True)


def client_of(node: DevNode, timeout: float = 60.0) -> APIClient:
    return APIClient(node.api_host, node.api_port, timeout=timeout)


def cli_env(node: DevNode) -> dict[str, str]:
    return {**os.environ, "BACALHAU_API_HOST": node.api_host, "BACALHAU_API_PORT": str(node.api_port)}


def run_command(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run to the end; raise with its stderr if it fails. Returns stdout."""
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def wait_terminal(client: APIClient, job: dict, timeout: float = 120.0) -> dict:
    """Long-poll until the job is terminal (blocking)."""
    deadline = time.monotonic() + timeout
    while job["state"] not in TERMINAL:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"job {job['id']} still {job['state']} after {timeout:g}s")
        job = client.wait(job["id"], job["updated_at"], min(remaining, 30.0), terminal=True)
    return job


def submit_and_wait(client: APIClient, spec: dict, timeout: float = 120.0) -> dict:
    job = wait_terminal(client, client.submit(spec), timeout)
    if job["state"] != "Completed":
        raise RuntimeError(f"job {job['id']} {job['state']}: {job.get('message')}")
    return job


def network_seconds(client: APIClient, job_id: str) -> float:
    """A finished job's time on the network: from its submit to its last change (the node's own clock).

    A CLI run's wall time minus this is what the CLI process itself costs."""
    job = client.get_job(job_id)
    return (datetime.fromisoformat(job["updated_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()


def noop_spec(**extra) -> dict:
    # Benchmarks time runs: a repeated job must not be served from a receipt.
    return {"task": {"engine": "noop"}, "memo": False, **extra}


def wasm_spec(module: Path, *args: str, **extra) -> dict:
    import base64

    content = base64.b64encode(module.read_bytes()).decode()
    return {
        "task": {
            "engine": "wasm",
            "module": {"source": "inline", "path": "/module.wasm", "content": content},
            "command": list(args),
        },
        "memo": False,
        **extra,
    }


def build_wasm(name: str) -> Path:
    """Compile tests/assets/wasm/NAME.c into .state/bench/wasm/NAME.wasm (cached by mtime)."""
    source = ROOT / "tests" / "assets" / "wasm" / f"{name}.c"
    target = STATE / "wasm" / f"{name}.wasm"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        target.parent.mkdir(parents=True, exist_ok=True)
        run_command(["clang", "--target=wasm32-wasi", "-O2", "-Wl,--strip-all", str(source), "-o", str(target)])
    return target


def load_results() -> dict[str, dict]:
    try:
        return json.loads(RESULTS.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return {}
