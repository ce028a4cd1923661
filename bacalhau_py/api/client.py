"""A small synchronous client for the node's HTTP API (what the CLI uses).

Every method raises `bacalhau_py.errors`: the server's `{"error", "kind"}`
body becomes the same exception class with the server's one-line message,
and a node that cannot be reached becomes `NodeUnreachable` naming the address.
Jobs and node infos are returned as the server's JSON (dicts).

It speaks HTTP/1.1 on a plain socket (`api/http1.py`), not with httpx nor
`http.client`: every CLI command pays for this client's imports; httpx (with
httpcore, anyio, ...) took 100-150 ms of a command's start, `http.client`
(with email and ssl) about 20 ms (measured in bench/: BENCHMARKS.md). One
keep-alive connection serves all of a client's calls (a `--wait` makes several).

Every request is signed with the client's key (`auth/client_key.py`) and,
when `BACALHAU_API_KEY` is set, carries it as `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import socket
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bacalhau_py import errors
from bacalhau_py.api import http1
from bacalhau_py.auth.client_key import ClientKey
from bacalhau_py.errors import AccessDenied, BacalhauError, NodeUnreachable, NotAuthenticated, NotFound, UserInputError

PREFIX = "/api/v1"
TAR = "application/x-tar"
CHUNK = 1 << 16
CONNECT_TIMEOUT = 5.0


class _Response:
    """What a call got back: status, and the body (read whole or streamed)."""

    def __init__(self, raw: http1.Response) -> None:
        self.raw = raw
        self.status_code = raw.status

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def read(self) -> bytes:
        return self.raw.read()

    def iter_bytes(self, size: int = CHUNK) -> Iterator[bytes]:
        while chunk := self.raw.read1(size):
            yield chunk

    def iter_lines(self) -> Iterator[str]:
        for line in self.raw:
            yield line.decode()


class APIClient:
    """`key`: the client key requests are signed with (default: `$BACALHAU_DIR/user_id.key`, created on
    first use); `api_key`: the node's API key (default: `$BACALHAU_API_KEY`, if set)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        key: ClientKey | None = None,
        api_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.timeout = timeout
        self.key = key or ClientKey.load_or_create()
        self.api_key = api_key if api_key is not None else os.environ.get("BACALHAU_API_KEY") or None
        self._connection: http1.Connection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "APIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a job spec (ours or an IPVM task, as JSON); return the job record."""
        return self._json("POST", "/jobs", json_body=spec)

    def list_jobs(self, limit: int = 20, *, every: bool = False) -> list[dict[str, Any]]:
        """The client's own jobs, newest first; `every`: all jobs (operators only)."""
        params: dict[str, Any] = {"limit": limit, **({"all": "true"} if every else {})}
        return self._json("GET", "/jobs", params=params)["jobs"]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}")

    def wait(self, job_id: str, since: str | None, timeout: float, *, terminal: bool = False) -> dict[str, Any]:
        """The job once it changed after `since` (its `updated_at`), or after `timeout` seconds.

        With `terminal`, only once it is finished (or at `timeout`): one request, not one per change."""
        params: dict[str, Any] = {"timeout": timeout}
        if since:
            params["since"] = since
        if terminal:
            params["terminal"] = "true"
        return self._json("GET", f"/jobs/{job_id}/wait", params=params, timeout=timeout + 15)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def logs(self, job_id: str, follow: bool = False) -> Iterator[tuple[str, bytes]]:
        """("stdout" | "stderr", bytes) chunks; with `follow`, until the job ends."""
        # A followed job may print nothing for a long time: no read timeout then.
        timeout = None if follow else self.timeout
        params = {"follow": str(follow).lower()}
        with self._stream("GET", f"/jobs/{job_id}/logs", params=params, timeout=timeout) as response:
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

    # workflows and receipts

    def submit_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/workflows", json_body=workflow)

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._json("GET", f"/workflows/{workflow_id}")

    def wait_workflow(self, workflow_id: str, timeout: float) -> dict[str, Any]:
        """The workflow once it is finished, or after `timeout` seconds."""
        return self._json("GET", f"/workflows/{workflow_id}/wait", params={"timeout": timeout}, timeout=timeout + 15)

    def receipt(self, instruction_cid: str) -> dict[str, Any]:
        """{"cid": receipt CID, "receipt": {...}} as the node found it (check its signature yourself)."""
        return self._json("GET", f"/receipts/{instruction_cid}")

    # data and nodes

    def ipfs_add(self, path: Path) -> str:
        """Upload a local file or folder to the node and add it to its IPFS; return the CID."""
        # Here, not at the top: a command that moves no data does not pay for them.
        import tarfile
        import tempfile

        if not path.exists():
            raise UserInputError(f"{path}: no such file or folder")
        with tempfile.TemporaryFile() as spool:
            # Symlinks travel as links, as `ipfs add -r` would see them.
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                archive.add(str(path), arcname=path.name)
            length = spool.tell()
            spool.seek(0)
            headers = {"Content-Type": TAR, "Content-Length": str(length)}
            return self._json("POST", "/ipfs/add", body=spool, headers=headers)["cid"]

    def node_info(self) -> dict[str, Any]:
        return self._json("GET", "/node")

    def nodes(self) -> list[dict[str, Any]]:
        return self._json("GET", "/nodes")["nodes"]

    def set_approval(self, peer_id: str, decision: str) -> dict[str, Any]:
        """`decision`: "approve" or "reject" (operators only)."""
        return self._json("POST", f"/nodes/{urllib.parse.quote(peer_id, safe='')}/{decision}")

    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version")

    # Bacalhau v1's orchestrator API (`bacalhau job ...`)

    def orchestrator(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """`METHOD /api/v1/orchestrator/PATH` with a JSON body; its JSON answer in v1's shapes."""
        return self._json(method, "/orchestrator/" + path.lstrip("/"), params=params, json_body=body)

    # plumbing

    def _json(self, method: str, path: str, *, json_body: Any = None, **kwargs: Any) -> Any:
        if json_body is not None:
            kwargs["body"] = json.dumps(json_body).encode()
            kwargs["headers"] = {"Content-Type": "application/json"}
        with _mapped(self.address):
            response = self._request(method, path, **kwargs)
            data = response.read()
        if not response.raw.reusable:
            self.close()
        if response.is_error:
            raise self._refused(_body(response.status_code, data, path), response.status_code)
        return json.loads(data)

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[_Response]:
        # The caller reads the body inside this block, so errors mid-body are mapped too.
        with _mapped(self.address):
            response = self._request(method, path, **kwargs)
            if response.is_error:
                raise self._refused(_body(response.status_code, response.read(), path), response.status_code)
            finished = False
            try:
                yield response
                finished = response.raw.isclosed() and response.raw.reusable
            finally:
                if not finished:
                    # Left mid-body: this connection cannot carry another request.
                    self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None | object = ...,
    ) -> _Response:
        url = PREFIX + path + ("?" + urllib.parse.urlencode(params) if params else "")
        # A streamed body (an upload, a file) is left unsigned; bytes are signed with their hash.
        signed_body = body if isinstance(body, bytes) else (b"" if body is None else None)
        headers = {**(headers or {}), **self.key.headers(method, url, signed_body)}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        connection = self._connected()
        connection.sock.settimeout(self.timeout if timeout is ... else timeout)
        try:
            try:
                connection.send(method, url, headers, body)
            except (BrokenPipeError, ConnectionResetError):
                # The node may answer before it has read the whole body (413:
                # too large) and close: its answer is still there to read.
                pass
            return _Response(connection.response())
        except BaseException:
            self.close()
            raise

    def _connected(self) -> http1.Connection:
        """The keep-alive connection, (re)opened if the node closed it while idle."""
        connection = self._connection
        if connection is not None and (connection.sock is None or _closed_by_peer(connection.sock)):
            self.close()
            connection = None
        if connection is None:
            connection = http1.Connection(self.host, self.port, CONNECT_TIMEOUT)
            self._connection = connection
        return connection


    def _refused(self, body: dict[str, Any], status: int) -> BacalhauError:
        error = _error_from(body, status)
        if isinstance(error, NotAuthenticated):
            # Name the node: with several nodes and keys, which one refused is the first question.
            return NotAuthenticated(f"the node at {self.address} refused the request: {error}")
        return error


def _closed_by_peer(sock: socket.socket) -> bool:
    # An idle keep-alive socket is readable only when the server closed it
    # (EOF): sending on it would fail or, worse, lose a POST. httpcore checks the same.
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@contextmanager
def _mapped(address: str) -> Iterator[None]:
    """Socket and HTTP errors, translated to ours in one place."""
    try:
        yield
    except (ConnectionRefusedError, socket.gaierror) as error:
        raise NodeUnreachable(f"cannot reach the node at {address}: {_reason(error)}") from None
    except TimeoutError as error:
        raise NodeUnreachable(f"the node at {address} did not answer in time: {_reason(error)}") from None
    except (OSError, http1.ProtocolError) as error:
        raise NodeUnreachable(f"lost the connection to the node at {address}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    return str(error).strip() or type(error).__name__


def _body(status: int, data: bytes, path: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return body
    if isinstance(body, dict) and isinstance(body.get("Message"), str):
        # Bacalhau v1's error body (the orchestrator routes): `Code` is our error's class name.
        return {"error": body["Message"], "kind": body.get("Code")}
    return {"error": f"HTTP {status} from {PREFIX + path}: {data[:200].decode(errors='replace')}"}


def _error_from(body: dict[str, Any], status: int) -> BacalhauError:
    """The server's exception class again (by its name), else one chosen by status code."""
    cls = getattr(errors, str(body.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, BacalhauError)):
        cls = {400: UserInputError, 401: NotAuthenticated, 403: AccessDenied, 404: NotFound, 413: errors.RequestTooLarge}.get(
            status, BacalhauError
        )
    message = " ".join(str(body["error"]).split())
    if issubclass(cls, errors.SpecError):
        return _spec_error(message, body)
    return cls(message)


def _spec_error(message: str, body: dict[str, Any]) -> errors.SpecError:
    """The node's SpecError with its field and problem, when the body holds them in their shapes."""
    field, problem = body.get("field"), body.get("problem")
    if (
        isinstance(field, list)
        and all(isinstance(part, (str, int)) and not isinstance(part, bool) for part in field)
        and isinstance(problem, str)
    ):
        return errors.SpecError(message, field=tuple(field), problem=" ".join(problem.split()))
    return errors.SpecError(message)


def extract(chunks: Iterable[bytes], dest: Path) -> list[str]:
    """Extract a tar stream into `dest` (created); return its top-level names.

    The archive came over the network: tarfile's `data` filter refuses absolute
    paths, `..`, links out of `dest`, devices and setuid bits.
    """
    import tarfile

    from bacalhau_py import safetar

    dest.mkdir(parents=True, exist_ok=True)
    try:
        # Stream mode ("r|"): read once, front to back, never held whole.
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|*") as archive:
            safetar.extract_all(archive, dest)
    except (safetar.UnsafeMember, getattr(tarfile, "FilterError", safetar.UnsafeMember)) as error:
        raise BacalhauError(f"the node sent an unsafe archive member: {error}") from None
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
