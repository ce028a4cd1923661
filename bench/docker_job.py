"""A docker job end to end (`bacalhau run --wait`) vs `docker run --rm` of the same image and command.

Both are whole commands as a user types them, timed from exec to exit,
interleaved sample by sample. Target: ratio <= 1.3.
"""

from __future__ import annotations

from bench.common import CLI, IMAGE, Result, cli_env, client_of, in_thread, median, ms, network_seconds, run_command, timed

NAME = "docker"
SAMPLES = 8
COMMAND = ["echo", "hello"]


def _measure(env: dict[str, str], ids: list[str]) -> tuple[list[float], list[float]]:
    # --no-memo: each sample runs (the same job would be served from a receipt).
    ours_cmd = [*CLI, "run", "--wait", "--no-memo", IMAGE, *COMMAND]
    raw_cmd = ["docker", "run", "--rm", "--network", "none", IMAGE, *COMMAND]
    run_command(ours_cmd, env=env)  # warm-up: first container start, first job
    run_command(raw_cmd)
    ours, raw = [], []
    for _ in range(SAMPLES):
        ours.append(timed(lambda: ids.append(run_command(ours_cmd, env=env).strip())))
        raw.append(timed(lambda: run_command(raw_cmd)))
    return ours, raw


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    ids: list[str] = []
    ours, raw = await in_thread(_measure, cli_env(nodes[0]), ids)
    with client_of(nodes[0]) as client:
        network = ms(median([await in_thread(network_seconds, client, i) for i in ids]))
    value, base = ms(median(ours)), ms(median(raw))
    ratio = round(value / base, 2)
    return [
        Result(
            name="docker job end to end (CLI run --wait)",
            median=value,
            raw=base,
            ratio=ratio,
            target="<= 1.3x docker run --rm",
            met=ratio <= 1.3,
            samples=[ms(t) for t in ours],
            command=f"python -m bench docker  # bacalhau run --wait {IMAGE} echo hello vs docker run --rm",
            extra={"overhead_ms": round(value - base, 1), "network_ms": network, "cli_ms": round(value - network, 1)},
        )
    ]
