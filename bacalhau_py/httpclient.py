"""The one adapter for httpx, the HTTP client the node uses (URL inputs, the devstack's checks).

httpx's exceptions become ours here, in one helper (`translate`), so callers
catch `BacalhauError`s only: a connection refused or reset (the other side is
not, or no longer, listening) is `unreachable`; any other failure (timeout,
too many redirects, a protocol error) is `failed`. The CLI's own client
(`api.client`) does not use httpx: it is kept off the CLI's import path.

URLs that come from the network (a job's URL inputs) are parsed here too
(`Origin.of`), by the same parser that sends the request, and sent with
`pinned_get` to the one address the caller resolved and checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bacalhau_py.errors import BacalhauError, NodeUnreachable, TransportError, UserInputError

__all__ = ["AsyncClient", "Origin", "Response", "pinned_get", "translate"]

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


@dataclass(frozen=True)
class Origin:
    """Where a URL points: its scheme, host (IDNA-encoded, no brackets) and port."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        """Parse `url` as httpx will send it; UserInputError unless it is http(s) with a host."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise UserInputError(f"{url}: not a URL ({_describe(error)})") from None
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise UserInputError(f"{url}: expected an http(s)://HOST/... URL")
        return cls(parsed.scheme, parsed.raw_host.decode("ascii"), parsed.port or _DEFAULT_PORTS[parsed.scheme])


_DEFAULT_PORTS = {"http": 80, "https": 443}


def pinned_get(url: str, address: str) -> httpx.Request:
    """A GET of `url` that connects to `address` only (an IP the caller resolved and checked).

    The URL's own host stays in the Host header and in TLS (SNI and the
    certificate check), so the server sees an ordinary request; no second DNS
    lookup happens, so the name cannot be re-pointed between check and connect.
    """
    parsed = httpx.URL(url)
    return httpx.Request(
        "GET",
        parsed.copy_with(host=address),
        headers={"Host": parsed.netloc.decode("ascii")},
        extensions={"sni_hostname": parsed.raw_host.decode("ascii")},
    )


def _describe(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
