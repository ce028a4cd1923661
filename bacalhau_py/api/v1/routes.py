"""Bacalhau v1's orchestrator and agent routes, over the same `NodeService` as our own routes.

Every route is a thin translation: read v1's request, call the node, answer
in v1's shapes (`translate`). Errors leave in v1's error body (`error_body`)
rather than ours, since v1 clients read that one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from functools import partial
from typing import Any

import trio
from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from bacalhau_py import __version__
from bacalhau_py.api.access import caller, owned_job
from bacalhau_py.api.app import NodeStream, status_for
from bacalhau_py.api.service import NodeService
from bacalhau_py.api.v1 import translate
from bacalhau_py.auth.access import Caller
from bacalhau_py.errors import BacalhauError, NotFound, UserInputError
from bacalhau_py.models import Job

MAX_LIST = 10_000
# v1's ExecutionLogType: stdout 1, stderr 2.
_LOG_TYPE = {"stdout": 1, "stderr": 2}


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    """v1's error body: Bacalhau's `APIError` keys, plus v1.4's lower-case `message` (what its clients read)."""
    line = " ".join(message.split())
    return {"Status": status, "Code": kind, "Message": line, "Component": "API", "message": line}


class V1Route(APIRoute):
    """A route whose errors are answered in v1's error body instead of the app-wide one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except BacalhauError as error:
                status = status_for(error)
                return JSONResponse(error_body(status, type(error).__name__, str(error)), status_code=status)
            except RequestValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                return JSONResponse(error_body(400, "UserInputError", f"{where}: {first.get('msg', 'invalid')}"), status_code=400)

        return handle


def routes(node: NodeService) -> APIRouter:
    """`/api/v1/orchestrator/...` and `/api/v1/agent/...` for `node`.

    One router, so one `dependencies=[...]` where it is included covers every route."""
    router = APIRouter(prefix="/api/v1", route_class=V1Route)

    @router.put("/orchestrator/jobs")
    @router.post("/orchestrator/jobs")
    async def put_job(request: Request, who: Caller = Depends(caller)) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise UserInputError('request body: not valid JSON (expected {"Job": {...}})') from None
        if not isinstance(body, dict) or not isinstance(body.get("Job"), dict):
            raise UserInputError('request body: expected {"Job": {...}}')
        submission = translate.job_from_v1(body["Job"], matching_nodes=await _ops_nodes(node, body["Job"]))
        # The caller owns the job; its body is v1's, not a spec a compute node
        # could check a signature against, so the job travels unsigned (anonymous).
        job = await node.submit(submission.spec, client_id=who.client_id)
        return {"JobID": job.id, "EvaluationID": str(uuid.uuid4()), "Warnings": submission.warnings}

    @router.get("/orchestrator/jobs")
    async def list_jobs(
        limit: int = Query(20, ge=1, le=MAX_LIST),
        next_token: str = "",
        reverse: bool = False,
        who: Caller = Depends(caller),
    ) -> dict:
        offset = _offset(next_token)
        # Operators see every job; other clients their own.
        jobs = await node.list_jobs(min(offset + limit + 1, MAX_LIST), client_id=None if who.operator else who.client_id)
        if reverse:
            jobs.reverse()
        page = jobs[offset:offset + limit]
        more = len(jobs) > offset + limit
        return {"Items": [translate.job_to_v1(job) for job in page], "NextToken": str(offset + limit) if more else ""}

    @router.get("/orchestrator/jobs/{job_id}")
    async def get_job(job_id: str, include: str = "", limit: int = Query(0, ge=0)) -> dict:
        job = await node.get_job(job_id)
        answer: dict[str, Any] = {"Job": translate.job_to_v1(job)}
        wanted = {part.strip() for part in include.split(",") if part.strip()}
        unknown = wanted - {"executions", "history"}
        if unknown:
            raise UserInputError(f"include: {sorted(unknown)[0]!r} is not known (expected executions, history)")
        if "executions" in wanted:
            answer["Executions"] = {"Items": _executions(job, limit), "NextToken": ""}
        if "history" in wanted:
            history = translate.history_to_v1(job)
            answer["History"] = {"Items": history[:limit] if limit else history, "NextToken": ""}
        return answer

    @router.delete("/orchestrator/jobs/{job_id}")
    async def stop_job(reason: str = "", job: Job = Depends(owned_job)) -> dict:
        await node.cancel(job.id)
        return {"EvaluationID": str(uuid.uuid4())}

    @router.get("/orchestrator/jobs/{job_id}/executions")
    async def executions(job_id: str, limit: int = Query(0, ge=0), reverse: bool = False) -> dict:
        items = _executions(await node.get_job(job_id), 0)
        if reverse:
            items.reverse()
        return {"Items": items[:limit] if limit else items, "NextToken": ""}

    @router.get("/orchestrator/jobs/{job_id}/history")
    async def history(job_id: str, event_type: str = "all", execution_id: str = "", node_id: str = "") -> dict:
        if event_type not in ("all", "job", "execution"):
            raise UserInputError(f"event_type: {event_type!r} is not known (expected all, job or execution)")
        items = translate.history_to_v1(await node.get_job(job_id))
        if event_type != "all":
            items = [i for i in items if i["Type"] == ("JobLevel" if event_type == "job" else "ExecutionLevel")]
        if execution_id:
            items = [i for i in items if i.get("ExecutionID") == execution_id]
        if node_id:
            items = [i for i in items if i.get("NodeID") == node_id]
        return {"Items": items, "NextToken": ""}

    @router.get("/orchestrator/jobs/{job_id}/results")
    async def results(job: Job = Depends(owned_job)) -> dict:
        return {"Items": translate.results_to_v1(job), "NextToken": ""}

    @router.websocket("/orchestrator/jobs/{job_id}/logs")
    async def logs(websocket: WebSocket, job_id: str, follow: bool = False, who: Caller = Depends(caller)) -> None:
        await _stream_logs(node, websocket, job_id, follow, who)

    @router.get("/orchestrator/jobs/{job_id}/logs")
    async def logs_http(follow: bool = False, job: Job = Depends(owned_job)) -> Response:
        # The same messages as the websocket, one JSON per line, for plain HTTP clients (curl, our CLI).
        return NodeStream(partial(_ndjson_logs, node, job.id, follow), "application/x-ndjson")

    @router.get("/orchestrator/nodes")
    async def nodes(limit: int = Query(0, ge=0)) -> dict:
        items = [translate.node_to_v1(info) for info in await node.known_nodes()]
        return {"Items": items[:limit] if limit else items, "NextToken": ""}

    @router.get("/orchestrator/nodes/{peer_id}")
    async def get_node(peer_id: str) -> dict:
        for info in await node.known_nodes():
            if info.peer_id == peer_id:
                return {"Node": translate.node_to_v1(info)}
        raise NotFound(f"node {peer_id[:64]!r} is not known to this node")

    @router.get("/agent/alive")
    async def alive() -> dict:
        return {"Status": "OK"}

    @router.get("/agent/version")
    async def version() -> dict:
        return translate.version_to_v1(__version__)

    @router.get("/agent/node")
    async def agent_node() -> dict:
        return translate.node_to_v1(await node.info())

    return router


def _executions(job: Job, limit: int) -> list[dict[str, Any]]:
    items = [translate.execution_to_v1(job, e) for e in job.executions]
    return items[:limit] if limit else items


def _offset(next_token: str) -> int:
    if not next_token:
        return 0
    if not next_token.isdigit():
        raise UserInputError(f"next_token: {next_token[:40]!r} is not a token this node gave (expected the NextToken of a previous page)")
    return int(next_token)


async def _ops_nodes(node: NodeService, job: dict[str, Any]) -> int | None:
    """For an ops job: how many compute nodes meet its constraints now (it runs once on each)."""
    if job.get("Type") != "ops":
        return None
    rules = translate.job_from_v1(job).spec.constraints
    known = await node.known_nodes()
    return sum(
        1 for info in known
        if "compute" in info.node_types and all(rule.matches(info.labels) for rule in rules)
    )


async def _log_messages(node: NodeService, job_id: str, follow: bool) -> AsyncIterator[dict[str, Any]]:
    """v1's log messages, `{"value": {"Type", "Line"}}`; a failure is a last message with `error`."""
    try:
        async with aclosing(node.logs(job_id, follow)) as chunks:
            async for stream, data in chunks:
                for line in data.decode(errors="replace").splitlines(keepends=True):
                    yield {"value": {"Type": _LOG_TYPE[stream], "Line": line}}
    except BacalhauError as error:
        yield {"value": {"Type": 0, "Line": ""}, "error": str(error)}


async def _ndjson_logs(node: NodeService, job_id: str, follow: bool) -> AsyncIterator[bytes]:
    yield b""  # lets NodeStream send the headers at once, before any log exists
    async with aclosing(_log_messages(node, job_id, follow)) as messages:
        async for message in messages:
            yield (json.dumps(message) + "\n").encode()


async def _stream_logs(node: NodeService, websocket: WebSocket, job_id: str, follow: bool, who: Caller) -> None:
    """v1.4's log stream: a websocket of `{"value": {"Type", "Line"}}` messages, an `error` on failure.

    Errors (an unknown job, another client's) come in the stream, as v1 sends them."""
    await websocket.accept()
    try:
        job = await node.get_job(job_id)
        node.access.check_owner(who, job)
    except BacalhauError as error:
        await websocket.send_json({"value": {"Type": 0, "Line": ""}, "error": str(error)})
    else:
        try:
            async with aclosing(_log_messages(node, job.id, follow)) as messages:
                async for message in messages:
                    await websocket.send_json(message)
        except WebSocketDisconnect:
            return
    with trio.move_on_after(5):
        await websocket.close()

