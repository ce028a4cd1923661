"""A local network of N nodes, each its own `bacalhau serve` OS process.

The first node starts alone; the others join it with `--peer`. A node counts
as started when it prints its `ready` line, which `serve` prints only once its
API, libp2p host and IPFS node answer. The stack is ready when every node
knows every other node. Start failures are one line each (which node, what
the devstack waited for, where its log is), never a traceback, and the nodes
already started are stopped.

While the stack runs, a node that exits on its own is reported (`on_exit`:
which node, its exit code, the last lines of its log) and the others keep
running. Leaving the context stops every process (SIGTERM, then SIGKILL
after a grace period), so nothing is left behind, containers included: each
node removes its own on the way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bacalhau_py import httpclient
from bacalhau_py.errors import BacalhauError

START_TIMEOUT = 60.0
# Nodes starting at once. A start is about 3 s of CPU (imports, keys, the IPFS
# repo): started all together on 2 cores, 19 nodes each took over a minute to
# report ready (and 49 would pass START_TIMEOUT); a few at a time keeps both
# cores busy and each start short.
START_PARALLEL = 4
STOP_GRACE = 20.0
LOG_TAIL_LINES = 10
POLL_SECONDS = 0.2

Report = Callable[[str], None]


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
    stopping: bool = False
    """Set when the devstack stops it on purpose: then its exit is not news."""
    _watch: Callable[[DevNode], None] | None = field(default=None, repr=False, compare=False)

    @property
    def log(self) -> Path:
        return self.repo / "node.log"

    @property
    def api_host(self) -> str:
        return self.api.rsplit("//", 1)[-1].rsplit(":", 1)[0].strip("[]")

    @property
    def api_port(self) -> int:
        return int(self.api.rsplit(":", 1)[1])


def env_exports(first: DevNode) -> str:
    lines = [f"export BACALHAU_API_HOST={first.api_host}", f"export BACALHAU_API_PORT={first.api_port}"]
    if first.ipfs_api:
        lines.append(f"export BACALHAU_IPFS_API={first.ipfs_api}")
    return "\n".join(lines) + "\n"


def report_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@asynccontextmanager
async def devstack(
    repo_dir: Path,
    nodes: int = 3,
    *,
    bad_actors: int = 0,
    node_args: list[list[str]] | None = None,
    on_exit: Report = report_to_stderr,
) -> AsyncIterator[list[DevNode]]:
    """Start `nodes` nodes under `repo_dir`; the last `bad_actors` return forged results.

    `node_args[i]` adds `bacalhau serve` flags for node i (labels, limits, ...).
    `on_exit` is told, in a few lines, about each node that exits on its own.
    Raises `BacalhauError` (one line) if the stack cannot start.
    """
    if nodes < 1 or not 0 <= bad_actors <= nodes:
        raise BacalhauError(f"devstack needs 1+ nodes and 0..{nodes} bad actors")
    # Every process as soon as it exists, so a failed start stops them all.
    spawned: list[DevNode] = []
    async with _one_error(), trio.open_nursery() as watchers:

        def watch(node: DevNode) -> None:
            watchers.start_soon(_watch_exit, node, node.process, on_exit)

        def on_spawn(node: DevNode) -> None:
            node._watch = watch
            spawned.append(node)
            watch(node)

        try:
            first = await _start(repo_dir, 0, [], _extra(node_args, 0, bad=nodes - bad_actors <= 0), on_spawn)
            peer = first.swarm[0]

            starting = trio.CapacityLimiter(START_PARALLEL)

            # The nodes already up share the cores with each start: a big
            # stack's last nodes start slower (the 26th of 50 took over 60 s).
            ready_within = START_TIMEOUT + 2.0 * nodes

            async def start_other(index: int) -> None:
                extra = _extra(node_args, index, bad=index >= nodes - bad_actors)
                async with starting:
                    await _start(repo_dir, index, [peer], extra, on_spawn, ready_within)

            async with _one_error(), trio.open_nursery() as nursery:
                for index in range(1, nodes):
                    nursery.start_soon(start_other, index)
            started = sorted(spawned, key=lambda n: n.index)
            await _wait_until_meshed(started)
            yield started
        finally:
            with trio.CancelScope(shield=True):
                await stop(spawned)
            watchers.cancel_scope.cancel()


async def stop(nodes: list[DevNode]) -> None:
    """SIGTERM every node, wait for each to stop cleanly; SIGKILL those that do not."""
    for node in nodes:
        node.stopping = True
        if node.process.returncode is None:
            node.process.send_signal(signal.SIGTERM)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(_reap, node.process)
    from bacalhau_py.executor.docker import remove_node_containers

    # What a node killed mid-job could not remove itself.
    await remove_node_containers([node.repo / "work" for node in nodes])


async def restart(node: DevNode, network: list[DevNode] | None = None) -> DevNode:
    """Stop one node (SIGTERM) and start it again on the same repo, flags and peers.

    `node` is updated in place (new process, addresses and API port; same
    peer ID), so the devstack still stops it on the way out. With `network`
    (the devstack's nodes), return once every node knows every other again.
    A node that died on its own restarts the same way.
    """
    await stop([node])
    # The first node joined nobody: it rejoins through another node.
    peers = node.peers or [n.swarm[0] for n in network or [] if n is not node and n.swarm][:1]
    spawned: list[DevNode] = []
    try:
        fresh = await _start(node.repo.parent, node.index, peers, node.args, spawned.append)
    except BaseException:
        with trio.CancelScope(shield=True):
            await stop(spawned)
        raise
    for name in ("process", "peer_id", "api", "swarm", "ipfs_api"):
        setattr(node, name, getattr(fresh, name))
    node.stopping = False
    if node._watch is not None:
        node._watch(node)
    if network:
        await _wait_until_meshed(network)
    return node


def exit_report(node: DevNode) -> str:
    """Which node exited, how, and the last lines of its log."""
    code = node.process.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
    tail = "".join(f"\n  {line}" for line in log_tail(node.log))
    return f"devstack: node {node.index} ({node.peer_id or 'not started'}) {how}; last lines of {node.log}:{tail}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 16384))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


@asynccontextmanager
async def _one_error() -> AsyncIterator[None]:
    """Let a nursery's single error through as itself, not wrapped in an ExceptionGroup.

    The watcher tasks never raise, so a group here holds what the stack's own
    start (or the caller's block) raised: callers catch that, not a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None


async def _watch_exit(node: DevNode, process: trio.Process, report: Report) -> None:
    await process.wait()
    if node.stopping or node.process is not process:
        return
    report(exit_report(node))


async def _reap(process: trio.Process) -> None:
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()


def _extra(node_args: list[list[str]] | None, index: int, *, bad: bool) -> list[str]:
    extra = list(node_args[index]) if node_args and index < len(node_args) else []
    return [*extra, "--bad-actor"] if bad else extra


async def _start(
    repo_dir: Path,
    index: int,
    peers: list[str],
    extra: list[str],
    on_spawn: Callable[[DevNode], None],
    ready_within: float = START_TIMEOUT,
) -> DevNode:
    """Start node `index` and wait for its ready line; `on_spawn` gets it as soon as its process exists."""
    repo = repo_dir / f"node-{index}"
    try:
        repo.mkdir(parents=True, exist_ok=True)
        log = open(repo / "node.log", "ab")
    except OSError as error:
        raise BacalhauError(f"node {index}: cannot use {repo} as its repo: {error.strerror}") from None
    command = [
        sys.executable, "-m", "bacalhau_py.cli.main", "serve",
        "--repo", str(repo), "--api-port", "0", "--swarm-port", "0", "--ipfs-swarm-port", "0",
        "--exit-on-stdin-eof", "--allow-private-urls",
    ]
    for peer in peers:
        command += ["--peer", peer]
    command += extra
    with log:
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
    node = DevNode(index=index, repo=repo, process=process, peers=list(peers), args=list(extra))
    on_spawn(node)
    try:
        with trio.fail_after(ready_within):
            fields = await _ready_line(process)
    except trio.TooSlowError:
        node.stopping = True
        process.kill()
        raise BacalhauError(
            f"node {index} did not report ready within {ready_within:g}s; see {node.log}"
        ) from None
    if fields is None:
        node.stopping = True
        await process.wait()
        last = next((line for line in reversed(log_tail(node.log)) if line.strip()), "")
        raise BacalhauError(
            f"node {index} failed to start (exit {process.returncode}): {last.strip() or 'no output'}; see {node.log}"
        )
    node.peer_id = fields["peer_id"]
    node.api = fields["api"]
    node.swarm = [a for a in fields["swarm"].split(",") if a]
    node.ipfs_api = fields.get("ipfs_api", "")
    return node


async def _ready_line(process: trio.Process) -> dict[str, str] | None:
    """The fields of the node's `ready k=v ...` line; None if it exited first.

    Other lines (a library printing to stdout) are skipped, not taken for a failure.
    """
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                return None
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        text = line.decode(errors="replace").strip()
        if text.startswith("ready "):
            return dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)


async def _wait_until_meshed(nodes: list[DevNode]) -> None:
    """Every node lists every node (itself included) in /api/v1/nodes.

    A refused or reset connection is retried until the deadline: a node
    that is busy, or that another stack's start slows down, is not a failure.
    A node that exits meanwhile is.
    """
    want = {n.peer_id for n in nodes}
    # The nodes start together on the same cores: a 20-node stack on 2 cores
    # needed 68 s to mesh (bench/scale.py), so allow more time per node.
    timeout = START_TIMEOUT + 2.0 * len(nodes)
    deadline = trio.current_time() + timeout
    async with httpclient.AsyncClient(timeout=5.0) as client:
        for node in nodes:
            while True:
                _check_running(nodes)
                known, problem = await _known_peers(client, node)
                if want <= known:
                    break
                if trio.current_time() > deadline:
                    raise BacalhauError(
                        f"node {node.index} ({node.api}) did not come to know all {len(nodes)} nodes within "
                        f"{timeout:g}s ({problem or f'it knows {len(known & want)}'}); see {node.log}"
                    )
                await trio.sleep(POLL_SECONDS)


def _check_running(nodes: list[DevNode]) -> None:
    for node in nodes:
        if node.process.returncode is not None:
            raise BacalhauError(
                f"node {node.index} exited with code {node.process.returncode} while the devstack started; "
                f"see {node.log}"
            )


async def _known_peers(client: httpclient.AsyncClient, node: DevNode) -> tuple[set[str], str]:
    """The peer IDs `node` lists, and what went wrong asking it (empty if nothing)."""
    try:
        with httpclient.translate(f"{node.api}/api/v1/nodes"):
            response = await client.get(f"{node.api}/api/v1/nodes")
        if response.status_code != 200:
            return set(), f"its API answered HTTP {response.status_code}"
        return {n["peer_id"] for n in response.json()["nodes"]}, ""
    except BacalhauError as error:
        return set(), str(error)
    except (ValueError, KeyError, TypeError):
        return set(), "its API answered something else than a node list"


async def kill(node: DevNode) -> None:
    """SIGKILL one node, as a crash would: no drain, its containers left running; the others go on.

    The devstack reports it, as it would any node that dies.
    """
    node.process.kill()
    await node.process.wait()


async def start_again(node: DevNode, network: list[DevNode] | None = None) -> DevNode:
    """Start a node that died (`kill`) again on the same repo, flags and peers: `restart` does just that."""
    return await restart(node, network)
