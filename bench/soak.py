"""Soak: a 3-node devstack under a steady mix of jobs while compute nodes keep dying.

`python -m bench.soak [--minutes 15] [--kill-every 180] [--retention 120]`
(not part of `make bench` or CI). Node 0 takes the jobs (and runs some); every
`--kill-every` seconds node 1 or node 2, in turn, is killed (SIGKILL) and
started again a few seconds later. Client threads submit docker, wasm and
noop jobs one after another the whole time. Every 30 s the nodes' repo sizes
and resident memory (node + kubo child) are sampled.

The nodes run with `--retention` (seconds; 2 minutes by default, not the 7
days of `serve`): results, pins and finished jobs go after it, so within a
15-minute run the repos reach the size they keep, and the soak exercises
those sweeps (and IPFS garbage collection) all along.

At the end it checks, and prints: every job terminal (none left Running),
none Failed or lost, none completed twice (concurrency 1: exactly one
accepted execution), and whether disk use and RSS stayed flat: after a
warm-up of twice the retention (the oldest jobs and results have started to
go), the highest sample of the second half of the run is within 25 % of the
highest of the first half. Peaks, not single samples: the job store's
write-ahead log swings between 0 and about 4 MB (sqlite checkpoints it every
1000 pages) wherever a sample happens to fall, and that is bounded, not
growth. Samples taken while a killed node is down are left out. Disk use is
the repos' state; the logs in them (the node's stderr as devstack keeps it,
kubo's own logs) are sampled apart, as `logs_mib`: they grow with the work
done, as any log, and are the operator's to rotate. The summary goes to
.state/bench/soak.json; the exit code is 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import stat
import sys
import threading
import time
from pathlib import Path

import psutil
import trio

from bacalhau_py.devstack.stack import DevNode, devstack, kill, start_again
from bacalhau_py.errors import BacalhauError

from bench.common import IMAGE, STATE, build_wasm, client_of, fresh_dir, in_thread, noop_spec, wait_terminal, wasm_spec

CLIENTS = 4
SAMPLE_EVERY = 30.0
LOGS = {"node.log", "kubo.log", "kubo.log.1", "bacalhau-kubo.log"}
"""Log files in a node's repo (devstack's copy of its stderr, kubo's): sampled apart from its state."""
DOWN_FOR = 10.0
"""How long a killed node stays down: less than --node-lost-after, so its restart (new boot ID) is what tells."""
FLAT = 1.25


def _docker_spec() -> dict:
    seconds = random.randint(0, 5)
    return {"task": {"engine": "docker", "image": IMAGE, "command": ["sh", "-c", f"sleep {seconds}; echo soak"]}}


def _submitter(node: DevNode, module: Path, stop: threading.Event, jobs: list[dict], errors: list[str]) -> None:
    client = client_of(node)
    kinds = [_docker_spec, lambda: wasm_spec(module), noop_spec]
    while not stop.is_set():
        try:
            job = client.submit(random.choice(kinds)())
            jobs.append(wait_terminal(client, job, timeout=1800))
        except (BacalhauError, RuntimeError) as error:
            errors.append(str(error))


def _du(path: Path) -> tuple[int, int, dict[str, float]]:
    """Bytes of state and of logs under `path` (the repos), and MiB by node and top-level entry."""
    state = logs = 0
    parts: dict[str, int] = {}
    # os.walk, not Path.rglob: a folder the node removes while we walk (an
    # execution's, after publishing) is skipped, where rglob raises.
    for folder, _folders, names in os.walk(path):
        for name in names:
            file = Path(folder, name)
            try:
                info = file.lstat()
            except FileNotFoundError:
                continue  # removed while we walk: the node cleaning up, as it should
            if not stat.S_ISREG(info.st_mode):
                continue
            node = file.relative_to(path).parts[0]
            if name in LOGS:
                logs += info.st_size
                part = f"{node}/{name}"
            else:
                state += info.st_size
                part = "/".join(file.relative_to(path).parts[:2])
            parts[part] = parts.get(part, 0) + info.st_size
    return state, logs, {part: round(size / (1 << 20), 2) for part, size in sorted(parts.items())}


def _rss_mib(node: DevNode) -> float:
    try:
        process = psutil.Process(node.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / (1 << 20)
    except psutil.NoSuchProcess:
        return 0.0


async def _sample(nodes: list[DevNode], root: Path, samples: list[dict], started: float) -> None:
    while True:
        disk, logs, parts = await trio.to_thread.run_sync(_du, root)
        samples.append({"t": round(time.monotonic() - started), "disk_mib": round(disk / (1 << 20), 1),
                        "logs_mib": round(logs / (1 << 20), 1), "rss_mib": round(sum(_rss_mib(n) for n in nodes), 1),
                        "down": sum(n.process.returncode is not None for n in nodes), "parts": parts})
        print(f"   { {k: v for k, v in samples[-1].items() if k != 'parts'} }", file=sys.stderr, flush=True)
        await trio.sleep(SAMPLE_EVERY)


async def _chaos(nodes: list[DevNode], kill_every: float, kills: list[str]) -> None:
    victims = [nodes[1], nodes[2]]
    for turn in range(10**9):
        await trio.sleep(kill_every)
        victim = victims[turn % 2]
        await kill(victim)
        kills.append(victim.peer_id)
        print(f"   killed node {victim.index}", file=sys.stderr, flush=True)
        await trio.sleep(DOWN_FOR)
        await start_again(victim, nodes)


def _flat(samples: list[dict], key: str, warm_up: float) -> bool:
    settled = [s[key] for s in samples if s["t"] >= warm_up and not s["down"]] or [s[key] for s in samples]
    half = max(1, len(settled) // 2)
    return max(settled[half:] or settled) <= max(settled[:half]) * FLAT


async def soak(minutes: float, kill_every: float, retention: float) -> dict:
    root = fresh_dir("soak")
    module = build_wasm("hello")
    jobs: list[dict] = []
    errors: list[str] = []
    samples: list[dict] = []
    kills: list[str] = []
    stop = threading.Event()
    async with devstack(root / "repos", 3, node_args=[["--retention", f"{retention:g}s"]] * 3) as nodes:
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sample, nodes, root / "repos", samples, started)
            nursery.start_soon(_chaos, nodes, kill_every, kills)
            async with trio.open_nursery() as clients:
                for _ in range(CLIENTS):
                    clients.start_soon(in_thread, _submitter, nodes[0], module, stop, jobs, errors)
                try:
                    await trio.sleep(minutes * 60)
                finally:
                    # Inside the nursery, so also when the run is cancelled (a sampler
                    # or chaos task failed): the client threads cannot be cancelled;
                    # told to stop, they end after their current job, and the nursery
                    # that waits for them can close.
                    stop.set()
            nursery.cancel_scope.cancel()
        listed = await in_thread(client_of(nodes[0]).list_jobs, 10_000)
    states: dict[str, int] = {}
    for job in jobs:
        states[job["state"]] = states.get(job["state"], 0) + 1
    twice = [j["id"] for j in jobs if sum(1 for e in j["executions"] if e["state"] == "ResultAccepted") > 1]
    rescheduled = [j["id"] for j in jobs if any(e["message"].startswith("rescheduled") for e in j["events"])]
    warm_up = max(60.0, 2 * retention)
    summary = {
        "minutes": minutes,
        "retention_seconds": retention,
        "kills": len(kills),
        "jobs": len(jobs),
        "states": states,
        "rescheduled": len(rescheduled),
        "completed_twice": twice,
        "client_errors": errors[:20],
        "unfinished_listed": [j["id"] for j in listed if j["state"] in ("Pending", "Running")],
        "disk_flat": _flat(samples, "disk_mib", warm_up),
        "rss_flat": _flat(samples, "rss_mib", warm_up),
        "samples": samples,
    }
    summary["ok"] = (
        not errors and not twice and not summary["unfinished_listed"]
        and set(states) <= {"Completed"} and summary["disk_flat"] and summary["rss_flat"]
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--kill-every", type=float, default=180.0, help="seconds between two kills")
    parser.add_argument("--retention", type=float, default=120.0, help="the nodes' --retention, in seconds")
    args = parser.parse_args()
    summary = trio.run(soak, args.minutes, args.kill_every, args.retention)
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
