"""URL inputs: download one http(s) file into the input folder.

The job sees a folder at the mount path holding one file named after the
URL's last path segment (as Bacalhau's `--input-urls`), e.g.
`https://host/data/file.csv` mounted at `/inputs` gives `/inputs/file.csv`.

A URL comes from whoever submitted the job, and the download runs on the
compute node, inside its network: unless the node allows private URLs
(`serve --allow-private-urls`), a host that resolves to a loopback, private,
link-local, multicast, unspecified or reserved address is refused, before
connecting and again at every redirect. The request then goes to the very
address that was checked (`httpclient.pinned_get`), so a second DNS answer
cannot send it elsewhere. Redirects are followed here, one checked hop at a time.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from pathlib import Path

import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import BacalhauError, StorageError
from bacalhau_py.httpclient import AsyncClient, Origin, pinned_get, translate
from bacalhau_py.models import InputSource

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

__all__ = ["URLStorage", "address_class", "download", "file_name_from"]


def file_name_from(url: str) -> str:
    """The last path segment, unquoted, made safe as one file name (never `..`, never empty)."""
    path = urllib.parse.urlsplit(url).path
    name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._+=@-]", "_", name).lstrip(".")
    return name or "download"


def address_class(address: str) -> str | None:
    """What kind of non-public address `address` is ("loopback", "private", ...), or None if public.

    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64)
    are judged by the IPv4 address they reach.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    for kind, test in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if test:
            return kind
    # What is left and still not global: shared address space (100.64.0.0/10).
    return None if ip.is_global else "private"


async def download(url: str, target: Path, *, limit: int, timeout: float, allow_private: bool) -> None:
    """Download `url` into the file `target`: at most `limit` bytes, within `timeout` seconds.

    Raises StorageError with one line naming the URL; `target` is removed on
    any failure. Without `allow_private`, hosts that resolve to non-public
    addresses are refused (see the module's docstring).
    """
    try:
        with trio.fail_after(timeout):
            await _download(url, target, limit, allow_private)
    except trio.TooSlowError:
        target.unlink(missing_ok=True)
        raise StorageError(f"downloading {url} took longer than {timeout:g}s") from None
    except BacalhauError as error:
        target.unlink(missing_ok=True)
        raise StorageError(str(error)) from None
    except OSError as error:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot save {url}: {error.strerror}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise


async def _download(url: str, target: Path, limit: int, allow_private: bool) -> None:
    # trust_env=False: an HTTP(S)_PROXY from the environment would connect on
    # our behalf, to an address we never checked.
    async with AsyncClient(timeout=None, follow_redirects=False, trust_env=False) as http:
        location = url
        for _ in range(_MAX_REDIRECTS + 1):
            address = await _checked_address(url, location, allow_private)
            with translate(f"cannot download {url}", unreachable=StorageError, failed=StorageError):
                response = await http.send(pinned_get(location, address), stream=True)
                try:
                    if response.has_redirect_location:
                        location = urllib.parse.urljoin(location, response.headers["Location"])
                        continue
                    if response.status_code >= 400:
                        raise StorageError(
                            f"downloading {url} failed: HTTP {response.status_code} {response.reason_phrase}"
                        )
                    await _save(url, response, target, limit)
                    return
                finally:
                    await response.aclose()
    raise StorageError(f"downloading {url}: more than {_MAX_REDIRECTS} redirects")


async def _checked_address(url: str, location: str, allow_private: bool) -> str:
    """The address to connect to for `location` (`url` itself or a redirect from it), checked."""
    try:
        origin = Origin.of(location)
    except BacalhauError as error:
        raise StorageError(f"cannot download {url}: {error}") from None
    try:
        found = await trio.socket.getaddrinfo(origin.host, origin.port, type=trio.socket.SOCK_STREAM)
    except OSError:
        raise StorageError(f"cannot download {url}: cannot resolve {origin.host}") from None
    addresses = [entry[4][0] for entry in found]
    if not allow_private:
        for address in addresses:
            kind = address_class(address)
            if kind is not None:
                via = "" if location == url else f" (redirected to {location})"
                raise StorageError(
                    f"refused to download {url}{via}: {origin.host} resolves to {address} ({kind}); "
                    "URL inputs may reach public addresses only (serve --allow-private-urls lifts this)"
                )
    return addresses[0]


async def _save(url: str, response, target: Path, limit: int) -> None:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise StorageError(f"{url} is {int(declared)} bytes, over the {limit}-byte limit for URL inputs")
    received = 0
    async with await trio.open_file(target, "wb") as out:
        async for chunk in response.aiter_bytes(_CHUNK):
            received += len(chunk)
            if received > limit:
                # The server may not say the length (or lie): count.
                raise StorageError(f"{url} is over the {limit}-byte limit for URL inputs")
            await out.write(chunk)


class URLStorage:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def is_installed(self) -> bool:
        return True

    async def has_locally(self, source: InputSource) -> bool:
        return False

    async def prepare(self, source: InputSource, dest: Path) -> Path:
        if source.url is None:
            raise StorageError(f"the URL input at {source.path} has no URL")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        await download(
            source.url,
            dest / file_name_from(source.url),
            limit=self.ctx.max_url_bytes,
            timeout=self.ctx.fetch_timeout,
            allow_private=self.ctx.allow_private_urls,
        )
        return dest
