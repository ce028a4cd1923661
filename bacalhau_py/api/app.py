"""The node's HTTP API (JSON under /api/v1), served by hypercorn inside the node's trio nursery.

Every route is a thin translation between HTTP and `NodeService`; the node
does the work. Errors are `bacalhau_py.errors` everywhere: one handler turns
them into a status code and `{"error": "<one line>", "kind": "<class name>"}`,
and `api.client` turns that back into the same exception class. Bacalhau
v1's routes (`api/v1/`, included at the end of `create_app`) answer in v1's
own error body instead, since v1 clients read that one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path

import trio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bacalhau_py import __version__, tarstream
from bacalhau_py.api.access import caller, operator, owned_job
from bacalhau_py.api.limits import BodyLimit, RequestLimits, load_json
from bacalhau_py.api.service import NodeService
from bacalhau_py.auth.access import Caller
from bacalhau_py.errors import (
    AccessDenied,
    BacalhauError,
    NodeUnreachable,
    NotAuthenticated,
    NotFound,
    RequestTooLarge,
    SpecError,
    StorageError,
    TransportError,
    UserInputError,
)
from bacalhau_py.models import Job
from bacalhau_py.models.codec import spec_from_dict

PREFIX = "/api/v1"
TAR = "application/x-tar"
MAX_WAIT_SECONDS = 60.0
"""Longest single long-poll: clients loop, so a poll never outlives proxies' idle timeouts."""

log = logging.getLogger(__name__)

# Looked up along the exception's MRO, so a subclass maps like its base.
_STATUS: dict[type[BacalhauError], int] = {
    UserInputError: 400,
    NotFound: 404,
    RequestTooLarge: 413,
    StorageError: 502,
    TransportError: 502,
    NodeUnreachable: 502,
    NotAuthenticated: 401,
    AccessDenied: 403,
}


def status_for(error: BacalhauError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_body(message: str, kind: str) -> dict[str, str]:
    # One line, always: the CLI prints it as-is after "Error: ".
    return {"error": " ".join(message.split()), "kind": kind}


def _job_json(job: Job, *, with_signed_request: bool = False) -> dict:
    # The client's signed request repeats the spec (up to the size limit): only
    # `describe` shows it; lists and long polls would carry it again and again.
    return job.model_dump(mode="json", exclude=None if with_signed_request else {"client_request"})


def _since(since: str | None) -> str | None:
    """`since` as the node compares it: `datetime.isoformat()` ("+00:00").

    Clients send back the `updated_at` they were given, which JSON wrote with
    a "Z"; compared as-is it never equals the node's string, and every long
    poll returned at once (a client spun ~170 requests per job)."""
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since).isoformat()
    except ValueError:
        raise UserInputError(f"since: {since!r} is not a timestamp (expected a job's updated_at)") from None


def create_app(
    node: NodeService, *, scratch_dir: Path | None = None, limits: RequestLimits = RequestLimits()
) -> FastAPI:
    """The API for `node`. Uploads (`POST /ipfs/add`) are unpacked below `scratch_dir`; bodies obey `limits`."""
    uploads = Path(scratch_dir or tempfile.gettempdir())
    # Every route depends on `caller`: no request passes a missing API key or a bad signature.
    app = FastAPI(
        title="bacalhau-py", version=__version__, docs_url=None, redoc_url=None, dependencies=[Depends(caller)]
    )
    app.state.node = node
    app.add_middleware(BodyLimit, limits=limits, upload_paths=frozenset({PREFIX + "/ipfs/add"}))

    @app.exception_handler(BacalhauError)
    async def _bacalhau_error(request: Request, error: BacalhauError) -> JSONResponse:
        status = status_for(error)
        if status == 500:
            log.error("%s %s failed: %s", request.method, request.url.path, error)
        # A 401 names its scheme (RFC 9110): an API key as a bearer token.
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = error_body(str(error), type(error).__name__)
        if isinstance(error, SpecError):
            # Where and what, apart: the CLI names the flag its user typed (cli/flags.py).
            body |= {"field": list(error.field), "problem": error.problem}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid')}", "UserInputError"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "NotFound" if error.status_code == 404 else "BacalhauError"
        message = f"{request.method} {request.url.path}: {error.detail}"
        return JSONResponse(error_body(message, kind), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug, not a user error: log the traceback here, send one line.
        log.exception("%s %s crashed", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error: {error!r}", "BacalhauError"), status_code=500)

    @app.post(PREFIX + "/jobs")
    async def submit(request: Request, who: Caller = Depends(caller)) -> dict:
        data = load_json(await request.body(), "a job spec object")
        # spec_from_dict accepts both this project's spec and IPVM tasks.
        job = await node.submit(spec_from_dict(data), client_id=who.client_id, client_request=who.request)
        return _job_json(job)

    @app.get(PREFIX + "/jobs")
    async def list_jobs(
        limit: int = Query(20, ge=1, le=10_000), every: bool = Query(False, alias="all"), who: Caller = Depends(caller)
    ) -> dict:
        """The caller's own jobs; with `all`, every job (operators only)."""
        if every:
            node.access.check_operator(who, "listing every job (list --all)")
            jobs = await node.list_jobs(limit)
        else:
            jobs = await node.list_jobs(limit, client_id=who.client_id)
        return {"jobs": [_job_json(job) for job in jobs]}

    @app.get(PREFIX + "/jobs/{job_id}")
    async def get_job(job_id: str) -> dict:
        return _job_json(await node.get_job(job_id), with_signed_request=True)

    @app.get(PREFIX + "/jobs/{job_id}/wait")
    async def wait(
        job_id: str,
        since: str | None = None,
        timeout: float = Query(30.0, ge=0, le=MAX_WAIT_SECONDS),
        terminal: bool = False,
    ) -> dict:
        """The job once it changed after `since`; with `terminal`, once it is finished.

        `terminal` serves clients that only want the end (`run --wait --id-only`,
        scripts): one request per job instead of one per state change (about
        six), which under a burst was a sixth of the requester's CPU."""
        job = await node.get_job(job_id)
        since = _since(since)
        with trio.move_on_after(timeout):
            while not job.state.terminal:
                job = await node.wait_for_change(job.id, since, MAX_WAIT_SECONDS)
                if not terminal:
                    break
                since = job.updated_at.isoformat()
        return _job_json(job)

    @app.post(PREFIX + "/jobs/{job_id}/cancel")
    async def cancel(job: Job = Depends(owned_job)) -> dict:
        return _job_json(await node.cancel(job.id))

    @app.get(PREFIX + "/jobs/{job_id}/logs")
    async def logs(follow: bool = False, job: Job = Depends(owned_job)) -> Response:
        # Resolved first (owned_job), so an unknown ID is a 404 rather than an error inside the stream.
        return NodeStream(partial(_ndjson_logs, node, job.id, follow), "application/x-ndjson")

    @app.get(PREFIX + "/jobs/{job_id}/results")
    async def results(job: Job = Depends(owned_job)) -> Response:
        # Headers wait for the first chunk: "no results yet" must be a 404,
        # which is impossible once a 200 is sent.
        return NodeStream(partial(node.results, job.id), TAR, headers={"X-Bacalhau-Job-Id": job.id})

    @app.post(PREFIX + "/ipfs/add")
    async def ipfs_add(request: Request) -> dict:
        return {"cid": await _add_upload(node, request, uploads)}

    @app.post(PREFIX + "/workflows")
    async def submit_workflow(request: Request, who: Caller = Depends(caller)) -> dict:
        from bacalhau_py.workflow.spec import read_workflow

        try:
            data = json.loads(await request.body())
        except ValueError:
            raise UserInputError('request body: not valid JSON (expected a workflow {"tasks": [...]})') from None
        workflow = await node.submit_workflow(read_workflow(data), client_id=who.client_id)
        return workflow.model_dump(mode="json")

    @app.get(PREFIX + "/workflows/{workflow_id}")
    async def get_workflow(workflow_id: str) -> dict:
        return (await node.get_workflow(workflow_id)).model_dump(mode="json")

    @app.get(PREFIX + "/workflows/{workflow_id}/wait")
    async def wait_workflow(workflow_id: str, timeout: float = Query(30.0, ge=0, le=MAX_WAIT_SECONDS)) -> dict:
        """The workflow once it is finished, or as it is after `timeout` seconds."""
        return (await node.wait_workflow(workflow_id, timeout)).model_dump(mode="json")

    @app.get(PREFIX + "/receipts/{instruction_cid}")
    async def receipt(instruction_cid: str) -> dict:
        from bacalhau_py.workflow.receipts import receipt_cid

        found = await node.receipt(instruction_cid)
        return {"cid": receipt_cid(found), "receipt": found.model_dump(mode="json")}

    @app.get(PREFIX + "/node")
    async def node_info() -> dict:
        return (await node.info()).model_dump(mode="json")

    @app.get(PREFIX + "/nodes")
    async def nodes() -> dict:
        return {
            "nodes": [
                {**info.model_dump(mode="json"), "approval": node.approval(info.peer_id)}
                for info in await node.known_nodes()
            ]
        }

    @app.post(PREFIX + "/nodes/{peer_id}/approve", dependencies=[Depends(operator)])
    async def approve_node(peer_id: str) -> dict:
        return {"peer_id": peer_id, "approval": await node.set_approval(peer_id, "approved")}

    @app.post(PREFIX + "/nodes/{peer_id}/reject", dependencies=[Depends(operator)])
    async def reject_node(peer_id: str) -> dict:
        return {"peer_id": peer_id, "approval": await node.set_approval(peer_id, "rejected")}

    @app.get(PREFIX + "/version")
    async def version() -> dict:
        return {"version": __version__, "peer_id": node.peer_id}

    from bacalhau_py.api.v1 import routes as v1_routes  # it builds on this module (NodeStream, status_for)

    app.include_router(v1_routes(node))
    return app


class NodeStream(Response):
    """A streamed response whose chunks come from one of the node's async generators.

    The node's generators may open nurseries (tar streams are produced in a
    thread), so each is iterated from start to end inside ONE task of our own,
    never resumed from another task as StreamingResponse would. That task
    ends when the body is sent or the client goes away.

    The status waits for the first chunk, so an error raised before any data
    (NotFound: no results yet) still gets its own status code; a generator
    that wants the headers out at once yields b"" first.
    """

    def __init__(self, chunks: Callable[[], AsyncIterator[bytes]], media_type: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(media_type=media_type, headers=headers)
        # The length is unknown: the body goes out chunked.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.chunks = chunks

    async def __call__(self, scope, receive, send) -> None:
        send_chunk, receive_chunk = trio.open_memory_channel[bytes | BacalhauError](0)

        async def pump() -> None:
            async with send_chunk:
                try:
                    async with _closing(self.chunks()) as chunks:
                        async for chunk in chunks:
                            await send_chunk.send(chunk)
                except BacalhauError as error:
                    await send_chunk.send(error)

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            nursery.start_soon(until_disconnect)
            started = False
            async with receive_chunk:
                async for item in receive_chunk:
                    if isinstance(item, BacalhauError):
                        if started:
                            # The status is sent; breaking the body is the only way left to say it failed.
                            raise item
                        await JSONResponse(error_body(str(item), type(item).__name__), status_for(item))(
                            scope, receive, send
                        )
                        nursery.cancel_scope.cancel()
                        return
                    if not started:
                        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                        started = True
                    if item:
                        await send({"type": "http.response.body", "body": item, "more_body": True})
            if not started:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()


async def _ndjson_logs(node: NodeService, job_id: str, follow: bool) -> AsyncIterator[bytes]:
    """One JSON object per line: {"stream": "stdout"|"stderr", "data": base64}.

    An error after the stream has started is sent as a last line {"error", "kind"}.
    """
    yield b""  # lets NodeStream send the headers at once, before any log exists
    try:
        async with _closing(node.logs(job_id, follow)) as chunks:
            async for stream, data in chunks:
                line = {"stream": stream, "data": base64.b64encode(data).decode()}
                yield (json.dumps(line) + "\n").encode()
    except BacalhauError as error:
        yield (json.dumps(error_body(str(error), type(error).__name__)) + "\n").encode()


@asynccontextmanager
async def _closing(chunks: AsyncIterator):
    # Close the node's generator as soon as the client goes away, not at GC time.
    try:
        yield chunks
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _add_upload(node: NodeService, request: Request, uploads: Path) -> str:
    """Unpack the uploaded tar safely into a fresh folder, add its one entry to IPFS, clean up."""
    uploads.mkdir(parents=True, exist_ok=True)
    workdir = Path(await trio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix="upload-", dir=uploads)))
    try:
        tree = workdir / "tree"
        try:
            await tarstream.extract(request.stream(), tree)
        except StorageError as error:
            # Here the archive is the client's, so it is bad input, not a storage failure.
            raise UserInputError(f"upload: {error}") from None
        names = await trio.to_thread.run_sync(os.listdir, tree)
        if len(names) != 1:
            raise UserInputError(f"upload: expected one file or folder in the archive, found {len(names)}")
        return await node.ipfs_add(tree / names[0])
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(partial(shutil.rmtree, workdir, ignore_errors=True))


async def serve_api(
    node: NodeService,
    host: str,
    port: int,
    *,
    scratch_dir: Path | None = None,
    limits: RequestLimits = RequestLimits(),
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API on host:port until cancelled (or until `shutdown_trigger` returns).

    `task_status.started((host, port))` comes only once the socket listens, with
    the real port, so port 0 works. Cancelling closes connections at once;
    `shutdown_trigger` returning lets in-flight requests finish first.
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 5.0
    app = create_app(node, scratch_dir=scratch_dir, limits=limits)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=shutdown_trigger or trio.sleep_forever)
        )
        # hypercorn reports "http://HOST:PORT" for each socket it listens on.
        real_port = int(binds[0].rsplit(":", 1)[1])
        task_status.started((host, real_port))
