"""A local network of N nodes, each its own `bacalhau serve` OS process.

The first node starts alone; the others join it with `--peer`. The stack is
ready when every node knows every other node. Leaving the context stops every
process (SIGTERM, then SIGKILL after a grace period), so nothing is left
behind, containers included: each node removes its own on the way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from bacalhau_py.errors import BacalhauError

START_TIMEOUT = 60.0
STOP_GRACE = 20.0


@dataclass
class DevNode:
    index: int
    repo: Path
    process: trio.Process
    peer_id: str = ""
    api: str = ""
    swarm: list[str] | None = None
    ipfs_api: str = ""
    peers: list[str] = field(default_factory=list)
    """The `--peer` addresses it was started with."""
    args: list[str] = field(default_factory=list)
    """Its extra `bacalhau serve` flags."""

    @property
    def api_host(self) -> str:
        return httpx.URL(self.api).host

    @property
    def api_port(self) -> int:
        return httpx.URL(self.api).port or 80


def env_exports(first: DevNode) -> str:
    lines = [f"export BACALHAU_API_HOST={first.api_host}", f"export BACALHAU_API_PORT={first.api_port}"]
    if first.ipfs_api:
        lines.append(f"export BACALHAU_IPFS_API={first.ipfs_api}")
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def devstack(
    repo_dir: Path,
    nodes: int = 3,
    *,
    bad_actors: int = 0,
    node_args: list[list[str]] | None = None,
) -> AsyncIterator[list[DevNode]]:
    """Start `nodes` nodes under `repo_dir`; the last `bad_actors` return forged results.

    `node_args[i]` adds `bacalhau serve` flags for node i (labels, limits, ...).
    """
    if nodes < 1 or not 0 <= bad_actors <= nodes:
        raise BacalhauError(f"devstack needs 1+ nodes and 0..{nodes} bad actors")
    started: list[DevNode] = []
    try:
        first = await _start(repo_dir, 0, [], _extra(node_args, 0, bad=nodes - bad_actors <= 0))
        started.append(first)
        peer = first.swarm[0]

        async def start_other(index: int) -> None:
            extra = _extra(node_args, index, bad=index >= nodes - bad_actors)
            started.append(await _start(repo_dir, index, [peer], extra))

        async with trio.open_nursery() as nursery:
            for index in range(1, nodes):
                nursery.start_soon(start_other, index)
        started.sort(key=lambda n: n.index)
        await _wait_until_meshed(started)
        yield started
    finally:
        with trio.CancelScope(shield=True):
            await stop(started)


async def stop(nodes: list[DevNode]) -> None:
    """SIGTERM every node, wait for each to stop cleanly; SIGKILL those that do not."""
    for node in nodes:
        if node.process.returncode is None:
            node.process.send_signal(signal.SIGTERM)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(_reap, node.process)


async def restart(node: DevNode, network: list[DevNode] | None = None) -> DevNode:
    """Stop one node (SIGTERM) and start it again on the same repo, flags and peers.

    `node` is updated in place (new process, addresses and API port; same
    peer ID), so the devstack still stops it on the way out. With `network`
    (the devstack's nodes), return once every node knows every other again.
    """
    await stop([node])
    # The first node joined nobody: it rejoins through another node.
    peers = node.peers or [n.swarm[0] for n in network or [] if n is not node and n.swarm][:1]
    fresh = await _start(node.repo.parent, node.index, peers, node.args)
    for name in ("process", "peer_id", "api", "swarm", "ipfs_api"):
        setattr(node, name, getattr(fresh, name))
    if network:
        await _wait_until_meshed(network)
    return node


async def _reap(process: trio.Process) -> None:
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()


def _extra(node_args: list[list[str]] | None, index: int, *, bad: bool) -> list[str]:
    extra = list(node_args[index]) if node_args and index < len(node_args) else []
    return [*extra, "--bad-actor"] if bad else extra


async def _start(repo_dir: Path, index: int, peers: list[str], extra: list[str]) -> DevNode:
    repo = repo_dir / f"node-{index}"
    repo.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "bacalhau_py.cli.main", "serve",
        "--repo", str(repo), "--api-port", "0", "--swarm-port", "0", "--ipfs-swarm-port", "0",
        "--exit-on-stdin-eof", "--allow-private-urls",
    ]
    for peer in peers:
        command += ["--peer", peer]
    command += extra
    log = open(repo / "node.log", "ab")
    process = await trio.lowlevel.open_process(
        command,
        # The devstack holds this pipe: if it dies without stopping the node,
        # the pipe closes and the node stops itself.
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Its own process group: a Ctrl-C in the terminal reaches the devstack,
        # which then stops each node in order.
        start_new_session=True,
    )
    log.close()
    node = DevNode(index=index, repo=repo, process=process, peers=list(peers), args=list(extra))
    try:
        with trio.fail_after(START_TIMEOUT):
            line = await _read_line(process)
    except trio.TooSlowError:
        process.kill()
        raise BacalhauError(f"node {index} did not start within {START_TIMEOUT:g}s; see {repo / 'node.log'}") from None
    if not line.startswith("ready "):
        await process.wait()
        raise BacalhauError(f"node {index} failed to start (exit {process.returncode}); see {repo / 'node.log'}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    node.peer_id = fields["peer_id"]
    node.api = fields["api"]
    node.swarm = fields["swarm"].split(",")
    node.ipfs_api = fields.get("ipfs_api", "")
    return node


async def _read_line(process: trio.Process) -> str:
    buffer = b""
    while b"\n" not in buffer:
        chunk = await process.stdout.receive_some(4096)
        if not chunk:
            break
        buffer += chunk
    return buffer.decode(errors="replace").strip()


async def _wait_until_meshed(nodes: list[DevNode]) -> None:
    """Every node lists every node (itself included) in /api/v1/nodes."""
    want = {n.peer_id for n in nodes}
    # The nodes start together on the same cores: a 20-node stack on 2 cores
    # needed 68 s to mesh (bench/scale.py), so allow more time per node.
    timeout = START_TIMEOUT + 2.0 * len(nodes)
    async with httpx.AsyncClient(timeout=5.0) as client:
        try:
            with trio.fail_after(timeout):
                for node in nodes:
                    while True:
                        response = await client.get(f"{node.api}/api/v1/nodes")
                        if response.status_code == 200 and want <= {n["peer_id"] for n in response.json()["nodes"]}:
                            break
                        await trio.sleep(0.2)
        except trio.TooSlowError:
            raise BacalhauError(
                f"the {len(nodes)} nodes did not all know each other within {timeout:g}s; see their node.log"
            ) from None
