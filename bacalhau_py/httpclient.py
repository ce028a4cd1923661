"""The one adapter for httpx, the HTTP client the node uses (URL inputs, the devstack's checks).

httpx's exceptions become ours here, in one helper (`translate`), so callers
catch `BacalhauError`s only: a connection refused or reset (the other side is
not, or no longer, listening) is `unreachable`; any other failure (timeout,
too many redirects, a protocol error) is `failed`. The CLI's own client
(`api.client`) does not use httpx: it is kept off the CLI's import path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bacalhau_py.errors import BacalhauError, NodeUnreachable, TransportError

__all__ = ["AsyncClient", "Response", "translate"]

AsyncClient = httpx.AsyncClient
Response = httpx.Response


@contextmanager
def translate(
    what: str,
    *,
    unreachable: type[BacalhauError] = NodeUnreachable,
    failed: type[BacalhauError] = TransportError,
) -> Iterator[None]:
    """Raise `unreachable` or `failed` (with `what` first in the message) for httpx's errors."""
    try:
        yield
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
        # Refused, reset or closed mid-way: nothing (or nothing ready) listens there.
        raise unreachable(f"{what}: {_describe(error)}") from None
    except httpx.TimeoutException:
        raise failed(f"{what}: timed out") from None
    except httpx.TooManyRedirects:
        raise failed(f"{what}: too many redirects") from None
    except httpx.HTTPError as error:
        raise failed(f"{what}: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
