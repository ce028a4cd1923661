"""How much a client may send: body sizes (`BodyLimit`) and JSON nesting (`load_json`).

Every request body is limited, by its Content-Length and by counting what
arrives (a chunked body declares no length); uploads (`POST /ipfs/add`) have
a limit of their own. A body over its limit is refused with 413 before the
node stores or parses any of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import trio

from bacalhau_py.errors import RequestTooLarge, UserInputError

MAX_JSON_DEPTH = 64
"""Deeper than any job spec: deeper nesting is an attack on the parser, not a job."""


@dataclass(frozen=True)
class RequestLimits:
    max_body: int = 4 << 20
    """Bytes in a request body: a job spec, or any other JSON."""
    max_upload: int = 1 << 30
    """Bytes in an upload (`ipfs add`): the archive of a file or folder."""


class BodyLimit:
    """ASGI middleware: a body over its limit raises RequestTooLarge in the route that reads it.

    Raised from `receive`, so the app's error handler answers 413 with one line,
    as for any of our errors; a route that reads no body is never refused.
    """

    def __init__(self, app, *, limits: RequestLimits, upload_paths: frozenset[str]) -> None:
        self.app = app
        self.limits = limits
        self.upload_paths = upload_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.upload_paths:
            limit, what = self.limits.max_upload, "upload"
        else:
            limit, what = self.limits.max_body, "request body"
        declared = _content_length(scope)
        received = 0
        refused = False

        async def limited_receive():
            nonlocal received, refused
            if declared is not None and declared > limit:
                refused = True
                raise RequestTooLarge(f"{what}: {declared} bytes is over this node's limit of {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise RequestTooLarge(f"{what}: over this node's limit of {limit} bytes")
            return message

        async def closing_send(message) -> None:
            if not (refused and message["type"] == "http.response.body" and not message.get("more_body", False)):
                await send(message)
                return
            # The client is still sending the body nobody reads. Ending the
            # response makes hypercorn queue a disconnect behind that unread
            # body, and wait for room (it would wait forever): take what is
            # queued until the disconnect is through, then the connection closes.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_discard_until_disconnect, receive)
                await send(message)
                nursery.cancel_scope.cancel()

        await self.app(scope, limited_receive, closing_send)


async def _discard_until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # hypercorn refuses such a request before we see it
    return None


def load_json(body: bytes, expected: str) -> Any:
    """Parse a JSON request body; UserInputError (400) for bad JSON or nesting deeper than MAX_JSON_DEPTH."""
    too_deep = UserInputError(f"request body: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except ValueError:
        raise UserInputError(f"request body: not valid JSON (expected {expected})") from None
    # Iterative, so the check itself cannot overflow the stack.
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_deep
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value
