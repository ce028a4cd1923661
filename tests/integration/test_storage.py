"""Input sources against real things: the embedded kubo, a local HTTP server, inline bytes."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import IPFSError, StorageError
from bacalhau_py.models import InputSource
from bacalhau_py.storage import STORAGES


UNKNOWN_CID = "QmPwL7zDYDEgfP3URNUUAELDQJgu6k4KaQ4QTFfSbvqEtC"


def storage(name: str, ctx: ProviderContext):
    return STORAGES.load(name)(ctx)


async def test_ipfs_file_input_is_the_file_itself(provider_ctx, tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    cid = await provider_ctx.ipfs.add(source)
    ipfs = storage("ipfs", provider_ctx)
    assert await ipfs.is_installed()
    spec = InputSource(source="ipfs", cid=cid, path="/inputs/file.csv")
    assert await ipfs.has_locally(spec)
    dest = provider_ctx.work_dir / "in0"
    dest.mkdir()
    mounted = await ipfs.prepare(spec, dest)
    assert mounted == dest / "file.csv" and mounted.read_text() == "a,b\n1,2\n"


async def test_ipfs_folder_input_is_the_folder(provider_ctx, tmp_path):
    folder = tmp_path / "dataset"
    (folder / "part").mkdir(parents=True)
    (folder / "part" / "x.txt").write_text("x\n")
    cid = await provider_ctx.ipfs.add(folder)
    dest = provider_ctx.work_dir / "in0"
    dest.mkdir()
    mounted = await storage("ipfs", provider_ctx).prepare(InputSource(source="ipfs", cid=cid, path="/inputs"), dest)
    assert mounted == dest / "inputs" and mounted.is_dir()
    assert (mounted / "part" / "x.txt").read_text() == "x\n"


async def test_unknown_cid_is_a_storage_error_within_the_fetch_timeout(embedded_ipfs, tmp_path):
    ctx = ProviderContext(ipfs=embedded_ipfs, work_dir=tmp_path, fetch_timeout=1.0)
    ipfs = storage("ipfs", ctx)
    spec = InputSource(source="ipfs", cid=UNKNOWN_CID, path="/inputs")
    assert not await ipfs.has_locally(spec)
    started = time.perf_counter()
    with pytest.raises(StorageError, match=UNKNOWN_CID) as caught:
        await ipfs.prepare(spec, tmp_path)
    assert isinstance(caught.value, IPFSError) and "/inputs" in str(caught.value)
    assert time.perf_counter() - started < 8.0


async def test_unreachable_ipfs_is_not_installed(tmp_path):
    from bacalhau_py.ipfs.client import KuboRPC

    async with KuboRPC("/ip4/127.0.0.1/tcp/1") as rpc:
        ctx = ProviderContext(ipfs=rpc, work_dir=tmp_path, fetch_timeout=1.0)
        assert not await storage("ipfs", ctx).is_installed()
        with pytest.raises(IPFSError, match="cannot reach"):
            await rpc.id()


# -- URL inputs against a real HTTP server on 127.0.0.1 (private URLs allowed) --

PAYLOAD = b"col\n" + b"1\n" * 5000


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/data/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/data/moved.csv")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/unsized":
            # No Content-Length: the limit must be enforced while counting.
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(3)
        else:
            self.send_error(404)


@contextmanager
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def web():
    with http_server() as base:
        yield base


@pytest.fixture
def url_ctx(tmp_path):
    # URL inputs need no IPFS; the client is never called.
    from bacalhau_py.ipfs.client import KuboRPC

    return ProviderContext(ipfs=KuboRPC("http://127.0.0.1:1"), work_dir=tmp_path, fetch_timeout=2.0,
                           max_url_bytes=len(PAYLOAD), allow_private_urls=True)


async def test_url_input_is_a_folder_holding_the_named_file(url_ctx, web, tmp_path):
    dest = tmp_path / "in"
    dest.mkdir()
    mounted = await storage("url", url_ctx).prepare(InputSource(source="url", url=f"{web}/data/my%20file.csv?x=1", path="/inputs"), dest)
    assert mounted == dest
    assert (dest / "my_file.csv").read_bytes() == PAYLOAD


async def test_url_redirect_is_followed(url_ctx, web, tmp_path):
    mounted = await storage("url", url_ctx).prepare(InputSource(source="url", url=f"{web}/redirect", path="/inputs"), tmp_path / "r")
    assert (mounted / "redirect").read_bytes() == PAYLOAD  # name from the URL asked for


async def test_url_404_is_a_clear_storage_error(url_ctx, web, tmp_path):
    with pytest.raises(StorageError, match="HTTP 404"):
        await storage("url", url_ctx).prepare(InputSource(source="url", url=f"{web}/missing.txt", path="/inputs"), tmp_path)
    assert not (tmp_path / "missing.txt").exists()


@pytest.mark.parametrize("path", ["/data/big.csv", "/unsized"])
async def test_url_over_the_size_limit(web, tmp_path, path):
    from bacalhau_py.ipfs.client import KuboRPC

    ctx = ProviderContext(ipfs=KuboRPC("http://127.0.0.1:1"), work_dir=tmp_path, max_url_bytes=1000,
                          allow_private_urls=True)
    with pytest.raises(StorageError, match="1000-byte limit"):
        await storage("url", ctx).prepare(InputSource(source="url", url=f"{web}{path}", path="/inputs"), tmp_path / "in")
    assert not any((tmp_path / "in").iterdir())


async def test_url_timeout(web, tmp_path):
    from bacalhau_py.ipfs.client import KuboRPC

    ctx = ProviderContext(ipfs=KuboRPC("http://127.0.0.1:1"), work_dir=tmp_path, fetch_timeout=0.5,
                          allow_private_urls=True)
    started = time.perf_counter()
    with pytest.raises(StorageError, match="longer than 0.5s"):
        await storage("url", ctx).prepare(InputSource(source="url", url=f"{web}/slow", path="/inputs"), tmp_path / "in")
    assert time.perf_counter() - started < 5


async def test_url_unreachable(url_ctx, tmp_path):
    with pytest.raises(StorageError, match="cannot download"):
        await storage("url", url_ctx).prepare(InputSource(source="url", url="http://127.0.0.1:1/x", path="/inputs"), tmp_path)


async def test_inline_input_is_a_file(url_ctx, tmp_path):
    inline = storage("inline", url_ctx)
    spec = InputSource.inline(b"\x00\x01 inline", "/inputs/blob.bin")
    assert await inline.is_installed() and await inline.has_locally(spec)
    mounted = await inline.prepare(spec, tmp_path)
    assert mounted == tmp_path / "blob.bin" and mounted.read_bytes() == b"\x00\x01 inline"
