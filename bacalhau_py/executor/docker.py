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
- Limits: memory (swap disabled, so going over it kills the process, and
  the run fails with "killed for using more than N of memory"), CPU as
  nano-CPUs, `PIDS_LIMIT` processes, GPUs as device requests; docker's own
  log of the container capped (`DOCKER_LOG_CONFIG`).
- A fixed hostname, so that jobs printing it agree across nodes.
- The labels ``CONTAINER_LABEL=<execution id>`` and ``NODE_LABEL=<node work
  folder>``: whatever a crash left behind is found by `cleanup_containers`,
  which removes only this node's containers (a devstack's nodes share one
  engine).
- stdout and stderr in ``result_dir/stdout`` and ``result_dir/stderr``,
  followed from the engine's log while the container runs (so `logs -f`
  sees them grow) and each cut at `MAX_LOG_BYTES`.

Images
------
`prepare_image` makes IMAGE local and says which image it is (its ID): a
name is looked up (or pulled, once, bounded); `NAME@sha256:HEX` only if HEX
is a local image's ID or repo digest; `ipfs://CID` and
`http(s)://...#sha256=HEX` archives (`docker save`, plain or gzipped) are
fetched, checked, stripped of their tags (an archive must not re-point a name
other jobs use) and loaded once per CID or hash. The container then runs that
ID, so what runs is what the admission policy approved.

The container runs as the image's user (root for most images), so files in
the outputs belong to root. Forcing the node's uid would break images that
expect their own user or write to their home, and the node runs as root here.

Lifecycle: create, start, follow logs while waiting, remove. The container is removed
whatever happens (exit, error, cancellation); on cancellation (the job's
timeout or a user's cancel, as the runner's trio cancel scope) it is killed
and removed inside a shielded scope and then `Cancelled` propagates. After a
normal exit, with a `cleanup` nursery given, it is removed there, off the
job's critical path.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import BacalhauError, ExecutorError
from bacalhau_py.executor.base import (
    CONTAINER_LABEL,
    MAX_LOG_BYTES,
    PreparedExecution,
    RunResult,
    job_environment,
    live_log,
    over_memory,
)
from bacalhau_py.models.image import ImageIdentity, ImageRef, parse_image

T = TypeVar("T")

log = logging.getLogger("bacalhau_py.executor.docker")

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
LOAD_TIMEOUT = 300.0
"""Longest wait for the engine to load one image archive."""
MAX_IMAGE_BYTES = 16 << 30
"""What an image archive may unpack to: a small gzip bomb must not fill the node's disk."""

_OOM_EXIT_CODE = 137
# Docker keeps its own copy of a container's output (json-file, in its data
# folder). Ours, in the result folder, is the one that counts; docker's is
# capped per container (not in the daemon's config, which is the operator's):
# 3 files of 32 MB hold both streams up to our MAX_LOG_BYTES each, JSON included.
DOCKER_LOG_CONFIG = {"max-size": "32m", "max-file": "3"}


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
        self._archives: dict[str, str] = {}
        """Loaded archives: CID or `sha256:HEX` of the archive file -> image ID."""
        self._archive_locks: dict[str, trio.Lock] = {}

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
        image_id = execution.image_id or (await self.prepare_image(task.image)).id
        execution.result_dir.mkdir(parents=True, exist_ok=True)

        container = None
        try:
            container = await self._call(
                client.containers.create, doing=f"create a container from {task.image}",
                abandon=False, **self._create_options(execution, image_id),
            )
            await self._call(container.start, doing="start the container")
            async with trio.open_nursery() as nursery:
                for name in ("stdout", "stderr"):
                    nursery.start_soon(self._follow_log, container, name, execution.result_dir)
                status = await self._wait(container)
                # The live copies are for `logs -f` only; the copy below is the result.
                nursery.cancel_scope.cancel()
            exit_code = int(status.get("StatusCode", -1))
            # Only a SIGKILLed run can have been killed for its memory: the
            # others save an inspect call on every job's critical path.
            oom_killed = False
            if exit_code == _OOM_EXIT_CODE and spec.resources.memory:
                await self._call(container.reload, doing="inspect the container")
                oom_killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
            message = ""
            if (status.get("Error") or {}).get("Message"):
                message = _one_line(status["Error"]["Message"])
            truncated = await self._call(
                self._copy_logs, container, execution.result_dir,
                doing="read the container's output", timeout=LOG_TIMEOUT,
            )
            if oom_killed:
                # After the logs are copied: they show what the job did up to then.
                raise ExecutorError(over_memory(spec.resources.memory))
            if truncated:
                message = "; ".join(filter(None, [message, f"{truncated} cut at {self.max_log_bytes} bytes"]))
            if execution.cleanup is not None:
                # Its output is copied: the removal (tens of ms) need not delay the result.
                execution.cleanup.start_soon(self._remove, container)
                container = None
            return RunResult(exit_code=exit_code, message=message)
        finally:
            # Shielded: a cancelled run must still kill and remove its
            # container before the Cancelled goes on.
            with trio.CancelScope(shield=True):
                await self._remove(container)

    def _create_options(self, execution: PreparedExecution, image_id: str) -> dict[str, Any]:
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
            "image": image_id,
            "command": list(task.command) or None,
            "environment": job_environment(execution),
            "working_dir": task.workdir,
            "network_mode": "bridge" if task.network == "full" else "none",
            "mounts": mounts,
            "labels": {CONTAINER_LABEL: execution.execution_id, NODE_LABEL: self.node_label},
            "log_config": docker.types.LogConfig(type="json-file", config=DOCKER_LOG_CONFIG),
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

    # -- images ------------------------------------------------------------

    async def image_identity(self, image: str) -> ImageIdentity | None:
        """The local image that IMAGE names, fetching nothing; None if it is not here (yet)."""
        ref = parse_image(image)
        client = await self._docker()
        if ref.archive:
            loaded = self._archives.get(ref.cid or ref.digest)
            return await self._lookup(client, loaded) if loaded else None
        if ref.kind == "digest":
            return await self._verified(client, ref)
        return await self._lookup(client, image)

    async def prepare_image(self, image: str) -> ImageIdentity:
        """Make IMAGE local (load its archive, or try one bounded pull) and say which image it is.

        Raises `ExecutorError` naming IMAGE when it cannot be had or verified.
        """
        ref = parse_image(image)
        client = await self._docker()
        if ref.archive:
            return await self._load_archive(client, ref)
        if ref.kind == "digest":
            identity = await self._verified(client, ref)
            if identity is None:
                await self._try_pull(client, image)
                identity = await self._verified(client, ref)
            if identity is None:
                local = await self._lookup(client, ref.name)
                seen = f" (the local {ref.name} is {local.id})" if local else ""
                raise ExecutorError(
                    f"image {image} is not on this node: no local image has ID or repo digest {ref.digest}{seen}"
                )
            return identity
        await self._ensure_image(client, image)
        identity = await self._lookup(client, image)
        if identity is None:
            raise ExecutorError(f"image '{image}' is not available on this node")
        return identity

    async def _lookup(self, client: docker.DockerClient, name: str) -> ImageIdentity | None:
        try:
            found = await self._thread(client.images.get, name, doing=f"look up image {name}")
        except docker.errors.ImageNotFound:
            return None
        except _SDK_ERRORS as error:
            raise _translate(error, f"look up image {name}") from None
        return ImageIdentity(id=found.id, repo_digests=tuple(found.attrs.get("RepoDigests") or ()))

    async def _verified(self, client: docker.DockerClient, ref: ImageRef) -> ImageIdentity | None:
        """The local image whose ID, or one of whose repo digests, is the reference's digest."""
        for candidate in (ref.digest, ref.text):
            identity = await self._lookup(client, candidate)
            if identity is not None and (identity.id == ref.digest or ref.text in identity.repo_digests):
                return identity
        return None

    async def _try_pull(self, client: docker.DockerClient, image: str) -> None:
        try:
            await self._thread(client.images.pull, image, doing=f"pull image {image}", timeout=PULL_TIMEOUT)
        except (ExecutorError, *_SDK_ERRORS):
            pass  # the caller says what is missing

    async def _load_archive(self, client: docker.DockerClient, ref: ImageRef) -> ImageIdentity:
        """Fetch, check and load an image archive, once per CID or hash."""
        key = ref.cid or ref.digest
        async with self._archive_locks.setdefault(key, trio.Lock()):
            loaded = self._archives.get(key)
            identity = await self._lookup(client, loaded) if loaded else None
            if identity is not None:
                return identity
            folder = self.ctx.work_dir / "images" / uuid.uuid4().hex
            await trio.to_thread.run_sync(functools.partial(folder.mkdir, parents=True))
            try:
                archive = await self._fetch_archive(ref, folder)
                stripped = folder / "image.tar"
                await trio.to_thread.run_sync(_untagged_archive, archive, stripped, ref.text, MAX_IMAGE_BYTES)
                identity = await self._load(client, stripped, ref.text)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(shutil.rmtree, folder, True)
            self._archives[key] = identity.id
            return identity

    async def _fetch_archive(self, ref: ImageRef, folder: Path) -> Path:
        """The archive file, checked: IPFS checks a CID's content itself; a URL's is hashed here."""
        from bacalhau_py.storage.url import download

        archive = folder / "archive"
        try:
            if ref.kind == "ipfs":
                return await self.ctx.ipfs.get(ref.cid, archive, timeout=self.ctx.fetch_timeout)
            await download(
                ref.url, archive, limit=self.ctx.max_url_bytes, timeout=self.ctx.fetch_timeout, allow_private=self.ctx.allow_private_urls
            )
        except BacalhauError as error:
            raise ExecutorError(f"cannot fetch image {ref.text}: {error.message}") from None
        actual = "sha256:" + await trio.to_thread.run_sync(_sha256_of, archive)
        if actual != ref.digest:
            raise ExecutorError(f"image {ref.url}: the archive's SHA-256 is {actual}, not {ref.digest} as the job says")
        return archive

    async def _load(self, client: docker.DockerClient, archive: Path, image: str) -> ImageIdentity:
        def load() -> list[Any]:
            with archive.open("rb") as data:
                return client.images.load(data)

        images = await self._call(load, doing=f"load image {image}", timeout=LOAD_TIMEOUT)
        if len(images) != 1:
            raise ExecutorError(f"image {image}: the archive holds {len(images)} images; expected exactly one")
        identity = await self._lookup(client, images[0].id)
        if identity is None:
            raise ExecutorError(f"image {image}: the engine loaded it but cannot find it")
        return identity

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
            live = live_log(result_dir, name)
            if live.is_file() and live.stat().st_size >= self.max_log_bytes:
                # Docker's capped log may have rotated its start away; the
                # live copy holds the first MAX_LOG_BYTES, which is what we keep.
                live.replace(result_dir / name)
                cut.append(name)
                continue
            stream = container.logs(stdout=name == "stdout", stderr=name == "stderr", stream=True, follow=False)
            if _copy_log(stream, result_dir / name, self.max_log_bytes):
                cut.append(name)
        return " and ".join(cut)

    async def _remove(self, container: Any) -> None:
        """Kill (if running) and remove; failures leave it to `cleanup_containers`."""
        if container is None:
            return
        try:
            # force: SIGKILL first if it still runs, all in one call. Shielded:
            # a node stopping while it runs in the background still removes it.
            with trio.CancelScope(shield=True):
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


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _untagged_archive(source: Path, target: Path, image: str, limit: int) -> None:
    """(In a thread.) Copy a `docker save` archive (plain or gzipped) without its tags.

    Loading an archive applies the names in it: a job's archive must not
    re-point a name (`busybox:latest`) that other jobs run. The image is run
    by ID, so it needs none. Refuses an archive that holds more than one
    image, or that unpacks to more than `limit` bytes.
    """
    try:
        with tarfile.open(source, "r:*") as archive, tarfile.open(target, "w") as out:
            seen_manifest = False
            size = 0
            for member in archive:
                size += member.size
                if size > limit:
                    raise ExecutorError(f"image {image}: the archive unpacks to more than {limit} bytes")
                if member.name in ("repositories", "./repositories"):
                    continue
                if member.name in ("manifest.json", "./manifest.json"):
                    manifest = json.load(archive.extractfile(member))
                    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
                        count = len(manifest) if isinstance(manifest, list) else "no"
                        raise ExecutorError(f"image {image}: the archive holds {count} images; expected exactly one")
                    manifest[0]["RepoTags"] = None
                    data = json.dumps(manifest).encode()
                    member.size = len(data)
                    out.addfile(member, io.BytesIO(data))
                    seen_manifest = True
                    continue
                out.addfile(member, archive.extractfile(member) if member.isreg() else None)
            if not seen_manifest:
                raise ExecutorError(f"image {image}: not an archive written by docker save (no manifest.json)")
    except tarfile.ReadError:
        raise ExecutorError(f"image {image}: not an archive written by docker save (not a tar file, plain or gzipped)") from None
    except (OSError, tarfile.TarError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExecutorError(_one_line(f"image {image}: not an archive written by docker save ({error})")) from None
async def remove_node_containers(work_dirs: list[Path]) -> int:
    """Remove every container of the stopped nodes whose work folders are `work_dirs`; return how many.

    For a devstack that stopped its nodes: a node killed mid-job could not
    remove its own containers. An engine that cannot be reached is logged,
    not raised: there is nothing of ours to remove then.
    """
    removed = 0
    for work_dir in work_dirs:
        executor = DockerExecutor(ProviderContext(ipfs=None, work_dir=work_dir))  # type: ignore[arg-type]
        try:
            with trio.move_on_after(CLEANUP_TIMEOUT):
                removed += await executor.cleanup_containers()
        except ExecutorError as error:
            log.warning("could not remove the containers of %s: %s", work_dir, error)
        finally:
            await executor.aclose()
    return removed
