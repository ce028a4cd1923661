"""Simulated networks of 100, 300 and 1,000 nodes (bacalhau_py/simulation.py), and the scale plot.

The real requester and compute services over the in-memory transport, on
trio's mock clock, with 1-20 ms of latency per message and 0% or 5% of
messages lost. Per size and loss: jobs completed, direct messages per job
(requests and replies: flat in the network's size), simulated time from
submit to placement and to Completed, and the messages about no job heard
during the run (joins, heartbeats, repair).

Writes .state/bench/scale.png: messages per job and time to placement
against network size, simulated and (when results.json has them) real rows.
`python -m bench simulate` runs it alone; `python -m bench scale` runs it
after its devstacks.
"""

from __future__ import annotations

import logging
import re
import sys
from functools import partial

from bacalhau_py import simulation
from bacalhau_py.directory import FULL_RATE_UP_TO, HEARTBEAT_SECONDS
from bacalhau_py.transport.memory import Conditions

from bench.common import STATE, Result, in_thread, load_results

NAME = "simulate"


def _heartbeats_per_second(nodes: int) -> float:
    period = HEARTBEAT_SECONDS * max(1.0, nodes / FULL_RATE_UP_TO)
    return nodes * (nodes - 1) / period
SIZES = (100, 300, 1000)
LOSSES = (0.0, 0.05)
LATENCY = (0.001, 0.020)
JOBS = 20
PLOT = STATE / "scale.png"


def _row(result: simulation.SimulationResult) -> Result:
    summary = result.summary()
    loss = f"{result.conditions.loss:.0%}"
    return Result(
        name=f"simulated {result.nodes} nodes, {loss} loss: messages per job",
        median=summary["messages_per_job"],
        unit="messages",
        target="flat in network size; every job completes" if not result.conditions.loss else "flat in network size",
        met=result.completed == len(result.jobs) if not result.conditions.loss else None,
        samples=[job.messages for job in result.jobs],
        command=f"python -m bench simulate  # {result.nodes} nodes, latency 1-20 ms, loss {loss}",
        extra=summary,
    )


async def run(ctx, *, real: list[Result] = ()) -> list[Result]:
    rows = []
    # Lost messages make the nodes log a warning each; the failures they cause are in the rows.
    quiet = logging.getLogger("bacalhau_py")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for size in SIZES:
            for loss in LOSSES:
                conditions = Conditions(latency=LATENCY, loss=loss, seed=size)
                result = await in_thread(partial(simulation.run, size, jobs=JOBS, conditions=conditions))
                row = _row(result)
                print(f"   {row.name}: {row.extra}", file=sys.stderr, flush=True)
                rows.append(row)
    finally:
        quiet.setLevel(level)
    plot({**load_results(), **{r.name: r.as_dict() for r in [*real, *rows]}})
    return rows


def plot(results: dict[str, dict]) -> None:
    """Write PLOT from results.json's rows: the simulated ones, and the real devstacks' where present."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FuncFormatter

    simulated: dict[int, list[dict]] = {}
    for name, row in results.items():
        match = re.fullmatch(r"simulated (\d+) nodes, (\d+)% loss: messages per job", name)
        if match and row.get("median") is not None:
            simulated.setdefault(int(match[2]), []).append({"nodes": int(match[1]), **row.get("extra", {})})
    real = sorted(
        (int(match[1]), row["median"])
        for name, row in results.items()
        if (match := re.fullmatch(r"scale (\d+) nodes: announce -> all \d+ bids", name))
        and row.get("median") == row.get("median")  # NaN: the stack did not run
    )
    figure, (messages, placement) = pyplot.subplots(1, 2, figsize=(12, 4.6))
    for loss, points in sorted(simulated.items()):
        points.sort(key=lambda p: p["nodes"])
        sizes = [p["nodes"] for p in points]
        line = messages.plot(sizes, [p["messages_per_job"] for p in points], marker="o",
                             label=f"direct, per job, {loss}% loss")[0]
        placement.plot(sizes, [p["placement_ms"] for p in points], marker="o", color=line.get_color(),
                       label=f"simulated median, {loss}% loss")
        placement.plot(sizes, [p["placement_p95_ms"] for p in points], linestyle=":", color=line.get_color(),
                       label=f"simulated p95, {loss}% loss")
        if not loss:
            # One exchange (2 messages) per pair of nodes per heartbeat period, which grows past 30 nodes.
            messages.plot(sizes, [_heartbeats_per_second(p["nodes"]) for p in points], marker="v", color="black",
                          label="heartbeat messages, whole network, per second")
    if real:
        placement.plot([r[0] for r in real], [r[1] for r in real], marker="s", linestyle="--", color="red",
                       label="real devstack (concurrency = nodes)")
    messages.set(title="Messages (concurrency 1 jobs)", xlabel="nodes in the network", ylabel="messages",
                 xscale="log", yscale="log")
    placement.set(title="Submit -> placement (every needed bid accepted)", xlabel="nodes in the network",
                  ylabel="ms", xscale="log", yscale="log")
    for axes in (messages, placement):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    figure.suptitle("bacalhau-py at scale: simulated (in-memory network, mock clock, 1-20 ms per message) and real")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=100)
    pyplot.close(figure)
