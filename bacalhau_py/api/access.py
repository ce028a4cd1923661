"""The API's gate: who is calling, and whether they may touch the job they name.

`caller` runs for every route (the app declares it once): a missing API key
or a forged signature never reaches a route. Routes that steer a job or read
its output take the job from `owned_job`, the one place ownership is checked;
operator-only routes depend on `operator`. The rules are `auth.access`'s.
"""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from bacalhau_py.auth.access import Caller
from bacalhau_py.auth.client_key import CONTENT_HEADER, KEY_HEADER, UNSIGNED_PAYLOAD
from bacalhau_py.models import Job


async def caller(request: HTTPConnection) -> Caller:
    """Who sent this request or opened this websocket (API key checked first, before any body is read)."""
    access = request.app.state.node.access
    access.check_api_key(request.headers)
    body = None
    signed_body = KEY_HEADER in request.headers and request.headers.get(CONTENT_HEADER) != UNSIGNED_PAYLOAD
    if signed_body and isinstance(request, Request):
        body = await request.body()  # cached: the route reads the same bytes
    # A websocket opens with a GET: that is what a client signs for it.
    method = request.method if isinstance(request, Request) else "GET"
    return access.authenticate(method, _target(request), request.headers, body)


async def owned_job(job_id: str, request: HTTPConnection, who: Caller = Depends(caller)) -> Job:
    """The job, if the caller is its client or an operator; else AccessDenied (403)."""
    node = request.app.state.node
    job = await node.get_job(job_id)
    node.access.check_owner(who, job)
    return job


async def operator(request: HTTPConnection, who: Caller = Depends(caller)) -> Caller:
    request.app.state.node.access.check_operator(who, f"{request.method} {request.url.path}")
    return who


def _target(request: HTTPConnection) -> str:
    # What the client signed: the path and query exactly as sent, not as decoded.
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")
