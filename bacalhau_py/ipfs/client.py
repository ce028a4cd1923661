"""`KuboRPC`: the one IPFS client, speaking kubo's RPC API (`/api/v0`) with httpx.

It talks to the embedded kubo child process (`ipfs.kubo_process`) and to a
user's real kubo daemon alike. httpx errors are translated into
`bacalhau_py.errors.IPFSError` in one place, `_translate`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from typing import BinaryIO

import httpx
import trio

from bacalhau_py import safetar
from bacalhau_py.errors import IPFSError, UserInputError
from bacalhau_py.ipfs.base import IPFSIdentity

_CHUNK = 1 << 20
# Calls that touch no remote data (id, version, connect, add) get this long.
DEFAULT_TIMEOUT = 30.0
# A collection waits for requests in flight, then walks every pinned DAG.
GC_TIMEOUT = 600.0
# Extra wait past a fetch's own deadline, so kubo's error (which names the
# cause) normally arrives before our own timer fires.
_GRACE = 2.0


def api_url_from(address: str) -> str:
    """`http://host:port`, `host:port` or a multiaddr `/ip4/H/tcp/P` -> base URL (no trailing /)."""
    text = address.strip()
    if text.startswith("/"):
        match = re.match(r"^/(ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d+)(/https?)?/?$", text)
        if not match:
            raise UserInputError(f"{address!r} is not an IPFS API address (expected e.g. /ip4/127.0.0.1/tcp/5001)")
        kind, host, port, scheme = match.groups()
        host = f"[{host}]" if kind == "ip6" else host
        return f"{'https' if scheme == '/https' else 'http'}://{host}:{port}"
    if not re.match(r"^https?://", text):
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    if not parsed.hostname:
        raise UserInputError(f"{address!r} is not an IPFS API address (expected e.g. http://127.0.0.1:5001)")
    return text.rstrip("/")


def _go_duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds * 1000))}ms"


def _kubo_message(response: httpx.Response) -> str:
    """kubo's errors are JSON `{"Message": ..., "Code": ..., "Type": "error"}`, or plain text."""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("Message"):
            return str(body["Message"])
    except (ValueError, httpx.ResponseNotRead):
        pass
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    return text.splitlines()[0] if text else f"HTTP {response.status_code}"


class KuboRPC:
    """IPFSClient over kubo's RPC API. `api` is a URL or a multiaddr."""

    def __init__(self, api: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_url = api_url_from(api)
        self.timeout = timeout
        # No client-wide timeout: each call sets its own deadline with trio.
        self._http = httpx.AsyncClient(base_url=self.api_url + "/api/v0", timeout=None)

    def __repr__(self) -> str:
        return f"KuboRPC({self.api_url!r})"

    async def __aenter__(self) -> "KuboRPC":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one place that turns httpx/kubo errors into ours -------------------

    @contextlib.contextmanager
    def _translate(self, what: str, timeout: float) -> Iterator[None]:
        """Run one RPC under `timeout`; any failure becomes an IPFSError naming `what`."""
        try:
            with trio.fail_after(timeout):
                yield
        except trio.TooSlowError:
            raise IPFSError(f"IPFS timed out after {timeout:g}s {what}") from None
        except httpx.ConnectError:
            raise IPFSError(f"cannot reach the IPFS API at {self.api_url} ({what})") from None
        except httpx.HTTPStatusError as error:
            message = _kubo_message(error.response)
            if "deadline exceeded" in message or "timeout" in message.lower():
                raise IPFSError(f"IPFS timed out {what}") from None
            raise IPFSError(f"IPFS failed {what}: {message}") from None
        except httpx.HTTPError as error:
            raise IPFSError(f"IPFS connection failed {what}: {error or type(error).__name__}") from None
        except (tarfile.TarError, json.JSONDecodeError, KeyError) as error:
            raise IPFSError(f"IPFS sent an unexpected answer {what}: {error}") from None

    async def _post_json(self, command: str, params: dict | None = None) -> dict:
        response = await self._http.post(command, params=params)
        if response.status_code != 200:
            raise httpx.HTTPStatusError("kubo error", request=response.request, response=response)
        return response.json()

    # -- IPFSClient ---------------------------------------------------------

    async def id(self) -> IPFSIdentity:
        with self._translate("asking for the node's identity", self.timeout):
            body = await self._post_json("id")
            return IPFSIdentity(peer_id=body["ID"], addresses=list(body.get("Addresses") or []))

    async def version(self) -> str:
        with self._translate("asking for the version", self.timeout):
            return str((await self._post_json("version"))["Version"])

    async def connect(self, multiaddr: str) -> None:
        if "/p2p/" not in multiaddr and "/ipfs/" not in multiaddr:
            raise UserInputError(f"{multiaddr!r} is not a peer address (expected /ip4/.../tcp/.../p2p/PEER)")
        with self._translate(f"connecting to {multiaddr}", self.timeout):
            await self._post_json("swarm/connect", {"arg": multiaddr})

    async def is_pinned(self, cid: str) -> bool:
        with self._translate(f"checking the pin of {cid}", self.timeout):
            # `timeout` bounds kubo's path resolution should it try the network.
            response = await self._http.post("pin/ls", params={"arg": cid, "timeout": "5s"})
            if response.status_code == 200:
                return cid in (response.json().get("Keys") or {})
            if "not pinned" in _kubo_message(response):
                return False
            response.raise_for_status()
            return False

    async def unpin(self, cid: str) -> None:
        with self._translate(f"unpinning {cid}", self.timeout):
            await self._post_json("pin/rm", {"arg": cid})

    async def collect_garbage(self) -> int:
        with self._translate("collecting garbage", GC_TIMEOUT):
            response = await self._http.post("repo/gc", timeout=GC_TIMEOUT)
            response.raise_for_status()
            return sum(1 for line in response.text.splitlines() if line.strip())

    async def add(self, path: Path, *, only_hash: bool = False) -> str:
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise UserInputError(f"{path} does not exist")
        boundary = uuid.uuid4().hex
        parts = _multipart_parts(path)
        length = _multipart_length(parts, boundary)
        params = {"only-hash": str(only_hash).lower(), "pin": "true", "cid-version": "0",
                  "quieter": "false", "progress": "false"}
        # Large uploads need time; allow 10 MiB/s on top of the base timeout.
        timeout = self.timeout + length / (10 << 20)
        with self._translate(f"adding {path.name}", timeout):
            response = await self._http.post(
                "add",
                params=params,
                content=_multipart_body(parts, boundary),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                         "Content-Length": str(length)},
            )
            if response.status_code != 200:
                raise httpx.HTTPStatusError("kubo error", request=response.request, response=response)
            lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
            entries = [line for line in lines if "Hash" in line]
            if not entries:
                raise IPFSError(f"IPFS returned no CID adding {path.name}")
            # The root is the last entry (kubo prints children first).
            return str(entries[-1]["Hash"])

    async def cat(self, cid: str, *, timeout: float, max_bytes: int | None = None) -> bytes:
        """The bytes of a file CID (small files: results' stdout, wasm modules)."""
        with self._translate(f"fetching {cid}", timeout + _GRACE):
            async with self._http.stream("POST", "cat", params={"arg": cid, "timeout": _go_duration(timeout)}) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise httpx.HTTPStatusError("kubo error", request=response.request, response=response)
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data.extend(chunk)
                    if max_bytes is not None and len(data) > max_bytes:
                        raise IPFSError(f"{cid} is larger than {max_bytes} bytes")
                return bytes(data)

    async def get(self, cid: str, dest: Path, *, timeout: float) -> Path:
        dest = Path(dest).absolute()
        if dest.is_symlink() or dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
            raise IPFSError(f"cannot fetch {cid}: {dest} already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The tar lands beside dest (same file system: the final move is a rename).
        staging = Path(await trio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent)))
        try:
            archive = staging / "get.tar"
            with self._translate(f"fetching {cid}", timeout + _GRACE):
                async with self._http.stream(
                    "POST", "get", params={"arg": cid, "timeout": _go_duration(timeout), "archive": "true"}
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise httpx.HTTPStatusError("kubo error", request=response.request, response=response)
                    # kubo reports errors met mid-stream in a trailer.
                    async with await trio.open_file(archive, "wb") as out:
                        async for chunk in response.aiter_bytes(_CHUNK):
                            await out.write(chunk)
                extracted = staging / "root"
                await trio.to_thread.run_sync(_extract_tar, archive, cid, extracted)
            if dest.is_dir():
                dest.rmdir()  # the empty folder we were given to fill
            extracted.rename(dest)
            return dest
        finally:
            await trio.to_thread.run_sync(shutil.rmtree, staging, True)


    def open_tar(self, cid: str, *, timeout: float) -> BinaryIO:
        """(Blocking: for a worker thread.) kubo's tar of `cid`, to read front to back.

        Entries are `CID` and `CID/...`, as `get` receives them. For streaming a
        result on to a client without landing it on disk first.
        """
        url = urllib.parse.urlsplit(self.api_url)
        query = urllib.parse.urlencode({"arg": cid, "timeout": _go_duration(timeout), "archive": "true"})
        connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(url.hostname, url.port, timeout=timeout + _GRACE)
        try:
            connection.request("POST", f"/api/v0/get?{query}")
            response = connection.getresponse()
        except OSError as error:
            connection.close()
            raise IPFSError(f"fetching {cid}: the IPFS node at {self.api_url} did not answer ({error})") from None
        if response.status != 200:
            body = response.read(4096).decode(errors="replace")
            connection.close()
            raise IPFSError(f"fetching {cid}: {' '.join(body.split()) or response.reason}")
        return response


# -- kubo's tar, unpacked safely ------------------------------------------------


def _extract_tar(archive: Path, cid: str, target: Path) -> None:
    """Unpack kubo's `get` tar (entries `CID` and `CID/...`) so that `CID` becomes `target`.

    Every entry must sit below `CID`; names with `..`, absolute names, links
    leaving the folder and device files are refused (tarfile's "data" filter,
    which also resolves symlinks already extracted).
    """
    root_name = cid.split("/")[-1]
    base = target.parent
    seen_root = False
    with tarfile.open(archive, mode="r:") as tar:
        for member in tar:
            name = member.name.rstrip("/")
            parts = name.split("/")
            if parts[0] != root_name and name != cid:
                raise tarfile.TarError(f"unexpected entry {member.name!r} in the tar of {cid}")
            relative = parts[1:] if parts[0] == root_name else []
            if any(p in ("", ".", "..") for p in relative):
                raise tarfile.TarError(f"unsafe entry {member.name!r} in the tar of {cid}")
            member.name = "/".join([target.name, *relative])
            seen_root = seen_root or not relative
            if member.islnk():
                raise tarfile.TarError(f"hard link {name!r} in the tar of {cid}")
            safetar.extract_member(tar, member, base, set_attrs=False)
            if member.isreg():
                # kubo files carry mode 0644 by default; make them readable by
                # a container's non-root user whatever the tar says.
                extracted = base / member.name
                extracted.chmod(extracted.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if not seen_root:
        if target.exists():
            return
        raise tarfile.TarError(f"the tar of {cid} is empty")


# -- kubo's multipart upload ---------------------------------------------------


def _multipart_parts(path: Path) -> list[tuple[str, str, Path | None, bytes | None]]:
    """(encoded name, content type, file to send, inline body) in the order kubo's clients send them.

    A folder is sent as a directory part followed by its entries (parents
    before children, names sorted) with paths relative to its parent, so the
    first path component is the folder's own name; that is what go-ipfs-files
    produces and what kubo's `add` turns into a folder. Names are
    QueryEscaped as go-ipfs-files does.
    """
    parts: list[tuple[str, str, Path | None, bytes | None]] = []

    def visit(current: Path, relative: str) -> None:
        name = urllib.parse.quote(relative, safe="")
        if current.is_symlink():
            parts.append((name, "application/symlink", None, os.readlink(current).encode()))
        elif current.is_dir():
            parts.append((name, "application/x-directory", None, b""))
            for child in sorted(current.iterdir(), key=lambda p: p.name):
                visit(child, f"{relative}/{child.name}")
        else:
            parts.append((name, "application/octet-stream", current, None))

    visit(path, path.name)
    return parts


def _part_head(boundary: str, name: str, content_type: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _multipart_length(parts, boundary: str) -> int:
    total = 0
    for name, content_type, file, inline in parts:
        total += len(_part_head(boundary, name, content_type)) + 2  # CRLF after the body
        total += file.stat().st_size if file is not None else len(inline or b"")
    return total + len(f"--{boundary}--\r\n")


async def _multipart_body(parts, boundary: str) -> AsyncIterator[bytes]:
    for name, content_type, file, inline in parts:
        yield _part_head(boundary, name, content_type)
        if file is None:
            yield inline or b""
        else:
            expected = file.stat().st_size
            sent = 0
            async with await trio.open_file(file, "rb") as handle:
                while chunk := await handle.read(_CHUNK):
                    sent += len(chunk)
                    yield chunk
            if sent != expected:
                # The Content-Length promised `expected`: a file that changed
                # under us would corrupt the stream.
                raise IPFSError(f"{file} changed while it was being added")
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
