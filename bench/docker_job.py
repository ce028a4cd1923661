"""A docker job vs `docker run --rm` of the same image and command.

Two views, each interleaved sample by sample with the raw command:
- CLI: `bacalhau run --wait` as a user types it, timed from exec to exit.
  Target: ratio <= 1.3.
- API: the job itself, submit -> Completed through the API (no CLI process),
  with the median time between the events of its own history (where the
  time goes). Target: within a few % of the raw command (ratio <= 1.05).
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime

from bench.common import (
    CLI,
    IMAGE,
    Result,
    cli_env,
    client_of,
    in_thread,
    median,
    ms,
    network_seconds,
    run_command,
    submit_and_wait,
    timed,
)

NAME = "docker"
SAMPLES = 8
API_SAMPLES = 12
COMMAND = ["echo", "hello"]
RAW = ["docker", "run", "--rm", "--network", "none", IMAGE, *COMMAND]
# memo off: each sample runs (the same job would be served from a receipt).
SPEC = {"task": {"engine": "docker", "image": IMAGE, "command": COMMAND}, "memo": False}


def _measure(env: dict[str, str], ids: list[str]) -> tuple[list[float], list[float]]:
    # --no-memo: each sample runs (the same job would be served from a receipt).
    ours_cmd = [*CLI, "run", "--wait", "--no-memo", IMAGE, *COMMAND]
    run_command(ours_cmd, env=env)  # warm-up: first container start, first job
    run_command(RAW)
    ours, raw = [], []
    for _ in range(SAMPLES):
        ours.append(timed(lambda: ids.append(run_command(ours_cmd, env=env).strip())))
        raw.append(timed(lambda: run_command(RAW)))
    return ours, raw


def _measure_api(client) -> tuple[list[float], list[float], dict[str, float]]:
    submit_and_wait(client, SPEC)
    ours, raw, steps = [], [], {}
    for _ in range(API_SAMPLES):
        start = time.perf_counter()
        job = submit_and_wait(client, SPEC)
        ours.append(time.perf_counter() - start)
        raw.append(timed(lambda: run_command(RAW)))
        for step, seconds in _history_steps(client.get_job(job["id"])):
            steps.setdefault(step, []).append(seconds)
    return ours, raw, {step: ms(statistics.median(times)) for step, times in steps.items()}


def _history_steps(job: dict) -> list[tuple[str, float]]:
    """(-> state, seconds since the previous event) along the job's history."""
    events = job["events"]
    at = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp() for e in events]
    return [
        ("-> " + (e.get("execution_state") or e.get("job_state") or "note"), at[i + 1] - at[i])
        for i, e in enumerate(events[1:])
    ]


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    ids: list[str] = []
    ours, raw = await in_thread(_measure, cli_env(nodes[0]), ids)
    with client_of(nodes[0]) as client:
        network = ms(median([await in_thread(network_seconds, client, i) for i in ids]))
        api_ours, api_raw, steps = await in_thread(_measure_api, client)
    value, base = ms(median(ours)), ms(median(raw))
    api_value, api_base = ms(median(api_ours)), ms(median(api_raw))
    return [
        Result(
            name="docker job end to end (CLI run --wait)",
            median=value,
            raw=base,
            ratio=round(value / base, 2),
            target="<= 1.3x docker run --rm",
            met=value / base <= 1.3,
            samples=[ms(t) for t in ours],
            command=f"python -m bench docker  # bacalhau run --wait {IMAGE} echo hello vs docker run --rm",
            extra={"overhead_ms": round(value - base, 1), "network_ms": network, "cli_ms": round(value - network, 1)},
        ),
        Result(
            name="docker job submit -> Completed (API)",
            median=api_value,
            raw=api_base,
            ratio=round(api_value / api_base, 2),
            target="<= 1.05x docker run --rm",
            met=api_value / api_base <= 1.05,
            samples=[ms(t) for t in api_ours],
            command=f"python -m bench docker  # API submit+wait of {IMAGE} echo hello vs docker run --rm",
            extra={"overhead_ms": round(api_value - api_base, 1), "history_median_ms": steps},
        ),
    ]
