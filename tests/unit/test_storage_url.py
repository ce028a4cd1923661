"""URL inputs refuse non-public addresses: the classification, and the check at every redirect hop."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bacalhau_py.errors import StorageError
from bacalhau_py.storage import url as url_storage
from bacalhau_py.storage.url import address_class, download


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # shared address space (carrier NAT)
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services live here
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        # IPv6 spellings of IPv4 addresses are judged by the IPv4 address they reach.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("64:ff9b::a00:1", "private"),  # NAT64
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo to 10.0.0.1
    ],
)
def test_non_public_addresses_are_classified(address, kind):
    assert address_class(address) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert address_class(address) is None


class Handler(BaseHTTPRequestHandler):
    """`/to?LOCATION` redirects there; `/data` answers DATA; `/host` echoes the Host header."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to?"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = {"/data": DATA, "/host": self.headers["Host"].encode()}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


DATA = b"public data\n"
# Stands in for a public web server: every 127/8 address is loopback on Linux,
# so the server can listen on one that the test then declares public.
PUBLIC_STAND_IN = "127.0.0.2"


@contextmanager
def web_server(host: str):
    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def public_web(monkeypatch):
    real = url_storage.address_class
    monkeypatch.setattr(url_storage, "address_class", lambda a: None if a == PUBLIC_STAND_IN else real(a))
    with web_server(PUBLIC_STAND_IN) as base:
        yield base


async def fetch(url: str, tmp_path, *, allow_private: bool = False) -> bytes:
    target = tmp_path / "file"
    await download(url, target, limit=1 << 20, timeout=10, allow_private=allow_private)
    return target.read_bytes()


async def test_a_public_server_is_downloaded_and_its_own_redirects_followed(public_web, tmp_path):
    assert await fetch(f"{public_web}/data", tmp_path) == DATA
    assert await fetch(f"{public_web}/to?{public_web}/data", tmp_path) == DATA


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/data", "http://10.0.0.1/data", "http://[::1]:{port}/data",
                                    "http://[::ffff:127.0.0.1]:{port}/data", "http://localhost:{port}/data"])
async def test_a_redirect_to_a_private_address_is_refused(public_web, tmp_path, target):
    port = public_web.rsplit(":", 1)[1]
    location = target.format(port=port)
    url = f"{public_web}/to?{location}"
    with pytest.raises(StorageError) as refused:
        await fetch(url, tmp_path)
    message = str(refused.value)
    assert message.startswith(f"refused to download {url} (redirected to {location}):")
    assert "--allow-private-urls" in message and "\n" not in message
    assert not (tmp_path / "file").exists()


async def test_a_private_address_gets_the_same_refusal_whether_or_not_something_listens(tmp_path):
    with web_server("127.0.0.1") as listening:
        port = int(listening.rsplit(":", 1)[1])
        with pytest.raises(StorageError) as open_port:
            await fetch(f"{listening}/data", tmp_path)
    # The server is gone: nothing listens on that port any more.
    with pytest.raises(StorageError) as closed_port:
        await fetch(f"http://127.0.0.1:{port}/data", tmp_path)
    assert str(open_port.value) == str(closed_port.value)
    assert str(open_port.value) == (
        f"refused to download http://127.0.0.1:{port}/data: 127.0.0.1 resolves to 127.0.0.1 (loopback); "
        "URL inputs may reach public addresses only (serve --allow-private-urls lifts this)"
    )


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "[::ffff:7f00:1]", "localhost", "LOCALHOST"])
async def test_other_spellings_of_loopback_are_refused_too(tmp_path, host):
    # What is checked is the address the name resolves to, however it is spelled.
    url = f"http://{host}:9/data"
    with pytest.raises(StorageError, match=rf"^refused to download {re.escape(url)}: .* \(loopback\); "):
        await fetch(url, tmp_path)


async def test_allow_private_reaches_loopback_with_the_host_name_kept(tmp_path):
    with web_server("127.0.0.1") as base:
        port = base.rsplit(":", 1)[1]
        assert await fetch(f"{base}/data", tmp_path, allow_private=True) == DATA
        # Sent to the resolved address, yet the server sees the name it was asked by.
        host = await fetch(f"http://localhost:{port}/host", tmp_path, allow_private=True)
        assert host == f"localhost:{port}".encode()
        assert await fetch(f"{base}/to?http://localhost:{port}/data", tmp_path, allow_private=True) == DATA


async def test_a_redirect_to_another_scheme_is_refused(public_web, tmp_path):
    url = f"{public_web}/to?file:///etc/passwd"
    with pytest.raises(StorageError, match=rf"^cannot download {re.escape(url)}: file:///etc/passwd: expected an http"):
        await fetch(url, tmp_path)


async def test_endless_redirects_stop(public_web, tmp_path):
    # Each hop wraps the next: eleven redirects, then the data.
    url = f"{public_web}/data"
    for _ in range(11):
        url = f"{public_web}/to?{url}"
    with pytest.raises(StorageError, match="more than 10 redirects"):
        await fetch(url, tmp_path)


async def test_an_unknown_host_is_one_line(tmp_path):
    with pytest.raises(StorageError, match=r"^cannot download http://no-such-host\.invalid/x: cannot resolve"):
        await fetch("http://no-such-host.invalid/x", tmp_path)
