"""A small synchronous client for the node's HTTP API (what the CLI uses).

Every method raises `bacalhau_py.errors`: the server's `{"error", "kind"}`
body becomes the same exception class with the server's one-line message,
and a node that cannot be reached becomes `NodeUnreachable` naming the address.
Jobs and node infos are returned as the server's JSON (dicts).
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bacalhau_py import errors
from bacalhau_py.errors import BacalhauError, NodeUnreachable, NotFound, UserInputError

PREFIX = "/api/v1"
TAR = "application/x-tar"
CHUNK = 1 << 16


class APIClient:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._http = httpx.Client(
            base_url=self.address + PREFIX,
            timeout=httpx.Timeout(timeout, connect=5.0),
            # The API is on the node itself (often loopback): never via an HTTP proxy.
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "APIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a job spec (ours or an IPVM task, as JSON); return the job record."""
        return self._json("POST", "/jobs", json=spec)

    def list_jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._json("GET", "/jobs", params={"limit": limit})["jobs"]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}")

    def wait(self, job_id: str, since: str | None, timeout: float) -> dict[str, Any]:
        """The job once it changed after `since` (its `updated_at`), or after `timeout` seconds."""
        params: dict[str, Any] = {"timeout": timeout}
        if since:
            params["since"] = since
        return self._json("GET", f"/jobs/{job_id}/wait", params=params, timeout=timeout + 15)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def logs(self, job_id: str, follow: bool = False) -> Iterator[tuple[str, bytes]]:
        """("stdout" | "stderr", bytes) chunks; with `follow`, until the job ends."""
        # A followed job may print nothing for a long time: no read timeout then.
        timeout = httpx.Timeout(None, connect=5.0) if follow else httpx.USE_CLIENT_DEFAULT
        with self._stream("GET", f"/jobs/{job_id}/logs", params={"follow": follow}, timeout=timeout) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if "error" in item:
                    raise _error_from(item, response.status_code)
                yield item["stream"], base64.b64decode(item["data"])

    def download_results(self, job_id: str, dest: Path) -> list[str]:
        """Extract the job's results tar (layout of shared/CLI.md) into `dest`; return its top-level names."""
        with self._stream("GET", f"/jobs/{job_id}/results") as response:
            return extract(response.iter_bytes(CHUNK), dest)

    # data and nodes

    def ipfs_add(self, path: Path) -> str:
        """Upload a local file or folder to the node and add it to its IPFS; return the CID."""
        if not path.exists():
            raise UserInputError(f"{path}: no such file or folder")
        with tempfile.TemporaryFile() as spool:
            # Symlinks travel as links, as `ipfs add -r` would see them.
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                archive.add(str(path), arcname=path.name)
            spool.seek(0)
            chunks = iter(lambda: spool.read(CHUNK), b"")
            return self._json("POST", "/ipfs/add", content=chunks, headers={"Content-Type": TAR})["cid"]

    def node_info(self) -> dict[str, Any]:
        return self._json("GET", "/node")

    def nodes(self) -> list[dict[str, Any]]:
        return self._json("GET", "/nodes")["nodes"]

    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version")

    # plumbing

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with _mapped(self.address):
            response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise _error_from(_body(response), response.status_code)
        return response.json()

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        # The caller reads the body inside this block, so errors mid-body are mapped too.
        with _mapped(self.address):
            with self._http.stream(method, path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(_body(response), response.status_code)
                yield response


@contextmanager
def _mapped(address: str) -> Iterator[None]:
    """httpx's errors, translated to ours in one place."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        raise NodeUnreachable(f"cannot reach the node at {address}: {_reason(error)}") from None
    except httpx.HTTPError as error:
        raise NodeUnreachable(f"lost the connection to the node at {address}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    return str(error).strip() or type(error).__name__


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return body
    return {"error": f"HTTP {response.status_code} from {response.request.url}: {response.text[:200]}"}


def _error_from(body: dict[str, Any], status: int) -> BacalhauError:
    """The server's exception class again (by its name), else one chosen by status code."""
    cls = getattr(errors, str(body.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, BacalhauError)):
        cls = {400: UserInputError, 404: NotFound}.get(status, BacalhauError)
    return cls(" ".join(str(body["error"]).split()))


def extract(chunks: Iterable[bytes], dest: Path) -> list[str]:
    """Extract a tar stream into `dest` (created); return its top-level names.

    The archive came over the network: tarfile's `data` filter refuses absolute
    paths, `..`, links out of `dest`, devices and setuid bits.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        # Stream mode ("r|"): read once, front to back, never held whole.
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|*") as archive:
            archive.extractall(dest, filter="data")
    except tarfile.FilterError as error:
        raise BacalhauError(f"the node sent an unsafe archive member {error.tarinfo.name!r}: {error}") from None
    except (tarfile.TarError, EOFError) as error:
        raise BacalhauError(f"the node sent a broken archive: {error}") from None
    return sorted(p.name for p in dest.iterdir())


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body), for tarfile."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
