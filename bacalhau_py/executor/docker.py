"""The docker executor: runs a job's task in a container on the local engine.

The docker SDK is imported only here. It blocks, so every call goes through
`trio.to_thread.run_sync` with a deadline (`_call`), and its errors become
`ExecutorError` in one place (`_translate`).

What a job gets
---------------
- ``spec.task.image``, with ``spec.task.entrypoint`` (when given) replacing the
  image's entrypoint and ``spec.task.command`` (when given) its command.
- Inputs bind-mounted read-only (a file at a file path, or a folder), outputs
  bind-mounted writable, ``job_environment(execution)`` (the task's env and the
  ``BACALHAU_*`` job variables), ``spec.task.workdir``.
- No network unless ``spec.task.network == "full"`` (the default bridge).
- Limits: memory (swap disabled, so going over it kills the process: exit
  137 with "out of memory" in the message), CPU as nano-CPUs, `PIDS_LIMIT`
  processes, GPUs as device requests.
- A fixed hostname, so that jobs printing it agree across nodes.
- The labels ``CONTAINER_LABEL=<execution id>`` and ``NODE_LABEL=<node work
  folder>``: whatever a crash left behind is found by `cleanup_containers`,
  which removes only this node's containers (a devstack's nodes share one
  engine).
- stdout and stderr in ``result_dir/stdout`` and ``result_dir/stderr``,
  followed from the engine's log while the container runs (so `logs -f`
  sees them grow) and each cut at `MAX_LOG_BYTES`.

The container runs as the image's user (root for most images), so files in
the outputs belong to root. Forcing the node's uid would break images that
expect their own user or write to their home, and the node runs as root here.

Lifecycle: create, start, follow logs while waiting, remove. The container is removed
whatever happens (exit, error, cancellation); on cancellation (the job's
timeout or a user's cancel, as the runner's trio cancel scope) it is killed
and removed inside a shielded scope and then `Cancelled` propagates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import ExecutorError
from bacalhau_py.executor.base import (
    CONTAINER_LABEL,
    MAX_LOG_BYTES,
    PreparedExecution,
    RunResult,
    job_environment,
    live_log,
)

T = TypeVar("T")

NODE_LABEL = "bacalhau-py.node"
"""Second label: which node (its work folder) started the container. Several
nodes of a devstack share one engine; a stopping node removes only its own."""

PIDS_LIMIT = 1024
HOSTNAME = "bacalhau"
API_TIMEOUT = 30.0
"""Longest wait for one engine call (create, start, remove, ...)."""
PULL_TIMEOUT = 20.0
"""Longest wait for a pull of a missing image (no registry: it fails at once)."""
LOG_TIMEOUT = 120.0
"""Longest wait, after the container exits, to finish copying its logs (up to 2 x MAX_LOG_BYTES)."""
CLEANUP_TIMEOUT = 20.0
WAIT_POLL = 30
"""`wait` is a long poll: it returns at exit; this only bounds each request."""
PING_TIMEOUT = 5.0

_OOM_EXIT_CODE = 137


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _translate(error: BaseException, doing: str) -> ExecutorError:
    """The one place where docker SDK (and requests) errors become ours."""
    if isinstance(error, docker.errors.APIError):
        reason = error.explanation or str(error)
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        return ExecutorError(_one_line(f"docker could not {doing}: {reason}"))
    if isinstance(error, (requests.exceptions.ConnectionError, docker.errors.DockerException)):
        return ExecutorError(
            _one_line(f"cannot reach the docker engine to {doing} (is dockerd running?): {error}")
        )
    if isinstance(error, requests.exceptions.RequestException):
        return ExecutorError(_one_line(f"docker engine failed to {doing}: {error}"))
    return ExecutorError(_one_line(f"docker could not {doing}: {error}"))


_SDK_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def _is_poll_timeout(error: BaseException) -> bool:
    """A long-poll `wait` that simply ran out its HTTP read timeout."""
    if isinstance(error, requests.exceptions.ReadTimeout):
        return True
    return isinstance(error, requests.exceptions.ConnectionError) and "timed out" in str(error).lower()


def _copy_log(stream: Any, path: Path, limit: int) -> int:
    """Write the first `limit` bytes of a log stream to `path`; return bytes dropped."""
    kept = dropped = 0
    try:
        # Unbuffered: a follower (`logs -f`) sees each chunk as it arrives.
        with open(path, "wb", buffering=0) as out:
            for chunk in stream:
                room = limit - kept
                if room <= 0:
                    # Past the cap: stop reading rather than drain what is left.
                    dropped += len(chunk)
                    break
                out.write(chunk[:room])
                kept += min(room, len(chunk))
                dropped += max(0, len(chunk) - room)
    finally:
        stream.close()
    return dropped


class DockerExecutor:
    """Runs docker tasks on the local engine (see the module docstring)."""

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.max_log_bytes = MAX_LOG_BYTES
        self.node_label = str(ctx.work_dir.resolve())
        self._client: docker.DockerClient | None = None
        self._client_lock = trio.Lock()

    # -- engine access -----------------------------------------------------

    async def _thread(
        self, fn: Callable[..., T], *args: Any, doing: str, timeout: float = API_TIMEOUT,
        abandon: bool = True, **kwargs: Any,
    ) -> T:
        """Run one blocking SDK call in a thread, bounded by `timeout`; SDK errors pass through.

        `abandon=False` for calls whose result we must not lose to a
        cancellation (`create`: an abandoned create would leave an unseen
        container behind); their bound is the client's HTTP timeout.
        """
        try:
            with trio.fail_after(timeout):
                return await trio.to_thread.run_sync(
                    functools.partial(fn, *args, **kwargs), abandon_on_cancel=abandon
                )
        except trio.TooSlowError:
            raise ExecutorError(f"the docker engine did not {doing} within {timeout:.0f}s") from None

    async def _call(self, fn: Callable[..., T], *args: Any, doing: str, **kwargs: Any) -> T:
        """`_thread`, with SDK errors translated into `ExecutorError`."""
        try:
            return await self._thread(fn, *args, doing=doing, **kwargs)
        except _SDK_ERRORS as error:
            raise _translate(error, doing) from None

    async def _docker(self) -> docker.DockerClient:
        """The client, created on first use (creating it asks the engine its API version)."""
        async with self._client_lock:
            if self._client is None:
                self._client = await self._call(
                    functools.partial(docker.from_env, timeout=int(API_TIMEOUT)), doing="connect"
                )
            return self._client

    async def is_installed(self) -> bool:
        try:
            client = await self._docker()
            return bool(await self._call(client.ping, doing="answer a ping", timeout=PING_TIMEOUT))
        except ExecutorError:
            return False

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await trio.to_thread.run_sync(client.close)

    # -- running -----------------------------------------------------------

    async def run(self, execution: PreparedExecution) -> RunResult:
        spec = execution.spec
        task = spec.task
        if not task.image:
            raise ExecutorError("docker job has no image")
        client = await self._docker()
        await self._ensure_image(client, task.image)
        execution.result_dir.mkdir(parents=True, exist_ok=True)

        container = None
        try:
            container = await self._call(
                client.containers.create, doing=f"create a container from {task.image}",
                abandon=False, **self._create_options(execution),
            )
            await self._call(container.start, doing="start the container")
            async with trio.open_nursery() as nursery:
                for name in ("stdout", "stderr"):
                    nursery.start_soon(self._follow_log, container, name, execution.result_dir)
                status = await self._wait(container)
                # The live copies are for `logs -f` only; the copy below is the result.
                nursery.cancel_scope.cancel()
            exit_code = int(status.get("StatusCode", -1))
            await self._call(container.reload, doing="inspect the container")
            message = ""
            if container.attrs.get("State", {}).get("OOMKilled"):
                message = f"out of memory: killed at the job's memory limit of {spec.resources.memory} bytes"
            elif (status.get("Error") or {}).get("Message"):
                message = _one_line(status["Error"]["Message"])
            truncated = await self._call(
                self._copy_logs, container, execution.result_dir,
                doing="read the container's output", timeout=LOG_TIMEOUT,
            )
            if truncated:
                message = "; ".join(filter(None, [message, f"{truncated} cut at {self.max_log_bytes} bytes"]))
            return RunResult(exit_code=exit_code, message=message)
        finally:
            # Shielded: a cancelled run must still kill and remove its
            # container before the Cancelled goes on.
            with trio.CancelScope(shield=True):
                await self._remove(container)

    def _create_options(self, execution: PreparedExecution) -> dict[str, Any]:
        spec = execution.spec
        task = spec.task
        mounts = [
            docker.types.Mount(
                target=mount.target, source=str(mount.source.resolve()), type="bind",
                read_only=mount.read_only,
            )
            for mount in [*execution.inputs, *execution.outputs]
        ]
        options: dict[str, Any] = {
            "image": task.image,
            "command": list(task.command) or None,
            "environment": job_environment(execution),
            "working_dir": task.workdir,
            "network_mode": "bridge" if task.network == "full" else "none",
            "mounts": mounts,
            "labels": {CONTAINER_LABEL: execution.execution_id, NODE_LABEL: self.node_label},
            "pids_limit": PIDS_LIMIT,
            "hostname": HOSTNAME,
            "tty": False,
            "stdin_open": False,
        }
        if task.entrypoint:
            options["entrypoint"] = list(task.entrypoint)
        if spec.resources.memory:
            options["mem_limit"] = spec.resources.memory
            # Same as the memory limit: no swap, so going over it kills.
            options["memswap_limit"] = spec.resources.memory
        if spec.resources.cpu:
            options["nano_cpus"] = int(spec.resources.cpu * 1e9)
        if spec.resources.gpu:
            options["device_requests"] = [
                docker.types.DeviceRequest(count=spec.resources.gpu, capabilities=[["gpu"]])
            ]
        return options

    async def _ensure_image(self, client: docker.DockerClient, image: str) -> None:
        """Make sure `image` is local: look it up, else try one bounded pull."""
        try:
            await self._thread(client.images.get, image, doing=f"look up image {image}")
            return
        except docker.errors.ImageNotFound:
            pass
        except _SDK_ERRORS as error:
            raise _translate(error, f"look up image {image}") from None
        try:
            await self._thread(client.images.pull, image, doing=f"pull image {image}", timeout=PULL_TIMEOUT)
        except (ExecutorError, *_SDK_ERRORS) as error:
            reason = error.message if isinstance(error, ExecutorError) else _translate(error, "pull").message
            raise ExecutorError(
                _one_line(
                    f"image '{image}' is not available on this node (not found locally, "
                    f"and pulling it failed: {reason.removeprefix('docker could not pull: ')})"
                )
            ) from None

    async def _wait(self, container: Any) -> dict[str, Any]:
        """Wait for the container to exit; a trio cancellation interrupts it.

        The waiting thread is abandoned on cancellation; it ends as soon as the
        cleanup kills the container (its `wait` then returns).
        """
        while True:
            try:
                return await trio.to_thread.run_sync(
                    functools.partial(container.wait, timeout=WAIT_POLL), abandon_on_cancel=True
                )
            except _SDK_ERRORS as error:
                if _is_poll_timeout(error):
                    continue
                raise _translate(error, "wait for the container") from None

    async def _follow_log(self, container: Any, name: str, result_dir: Path) -> None:
        """Best effort, while the container runs: copy one stream to its `live_log`.

        This lets `logs -f` show output as it is written. A stream followed
        right after start can miss output of a container that exits at once,
        so `_copy_logs` writes the final files after the exit.
        """

        def follow() -> None:
            stream = container.logs(stdout=name == "stdout", stderr=name == "stderr", stream=True, follow=True)
            _copy_log(stream, live_log(result_dir, name), self.max_log_bytes)

        try:
            await trio.to_thread.run_sync(follow, abandon_on_cancel=True)
        except _SDK_ERRORS:
            pass  # the final copy reports real errors

    def _copy_logs(self, container: Any, result_dir: Path) -> str:
        """(In a thread.) Copy stdout and stderr out separately; name any that were cut."""
        cut = []
        for name in ("stdout", "stderr"):
            stream = container.logs(stdout=name == "stdout", stderr=name == "stderr", stream=True, follow=False)
            if _copy_log(stream, result_dir / name, self.max_log_bytes):
                cut.append(name)
        return " and ".join(cut)

    async def _remove(self, container: Any) -> None:
        """Kill (if running) and remove; failures leave it to `cleanup_containers`."""
        if container is None:
            return
        try:
            # force: SIGKILL first if it still runs, all in one call.
            await self._thread(
                container.remove, force=True, v=True, doing="remove the container",
                timeout=CLEANUP_TIMEOUT,
            )
        except (ExecutorError, *_SDK_ERRORS):
            # Never hide the run's own outcome behind a cleanup failure; the
            # label lets a later sweep find it.
            pass

    async def cleanup_containers(self, *, all_nodes: bool = False) -> int:
        """Kill and remove this node's labelled containers; return how many.

        A stopping (or restarting) node calls it: containers of runs that a
        crash left behind are found by `CONTAINER_LABEL` and `NODE_LABEL`.
        `all_nodes=True` removes every node's (a devstack tearing down).
        """
        client = await self._docker()
        labels = [CONTAINER_LABEL] if all_nodes else [CONTAINER_LABEL, f"{NODE_LABEL}={self.node_label}"]
        containers = await self._call(
            client.containers.list, all=True, filters={"label": labels},
            doing="list leftover containers",
        )
        removed = 0
        for container in containers:
            try:
                await self._call(
                    container.remove, force=True, v=True, doing="remove a leftover container",
                    timeout=CLEANUP_TIMEOUT,
                )
                removed += 1
            except ExecutorError:
                continue
        return removed
