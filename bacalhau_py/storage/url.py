"""URL inputs: download one http(s) file into the input folder.

The job sees a folder at the mount path holding one file named after the
URL's last path segment (as Bacalhau's `--input-urls`), e.g.
`https://host/data/file.csv` mounted at `/inputs` gives `/inputs/file.csv`.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import httpx
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import StorageError
from bacalhau_py.models import InputSource

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10


def file_name_from(url: str) -> str:
    """The last path segment, unquoted, made safe as one file name (never `..`, never empty)."""
    path = urllib.parse.urlsplit(url).path
    name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._+=@-]", "_", name).lstrip(".")
    return name or "download"


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
            source.url, dest / file_name_from(source.url),
            limit=self.ctx.max_url_bytes, timeout=self.ctx.fetch_timeout, allow_private=True,
        )
        return dest


async def download(url: str, target: Path, *, limit: int, timeout: float, allow_private: bool) -> None:
    """Download `url` into the file `target`: at most `limit` bytes, within `timeout` seconds.

    Any failure is a `StorageError` naming the URL, and leaves no `target`
    behind. `allow_private`: whether the URL may reach loopback and private
    addresses.
    """
    try:
        with trio.fail_after(timeout):
            await _download(url, target, limit)
    except trio.TooSlowError:
        target.unlink(missing_ok=True)
        raise StorageError(f"downloading {url} took longer than {timeout:g}s") from None
    except StorageError:
        target.unlink(missing_ok=True)
        raise
    except httpx.TooManyRedirects:
        target.unlink(missing_ok=True)
        raise StorageError(f"downloading {url}: too many redirects") from None
    except httpx.HTTPError as error:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot download {url}: {error or type(error).__name__}") from None
    except OSError as error:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot save {url}: {error.strerror}") from None


async def _download(url: str, target: Path, limit: int) -> None:
    async with httpx.AsyncClient(follow_redirects=True, max_redirects=_MAX_REDIRECTS, timeout=None) as http:
        async with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise StorageError(f"downloading {url} failed: HTTP {response.status_code} {response.reason_phrase}")
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
