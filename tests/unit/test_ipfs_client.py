"""Pure parts of the IPFS client and the kubo child: addresses, multipart, tar safety (no node needed)."""

from __future__ import annotations

import io
import os
import tarfile
import urllib.parse

import pytest

from bacalhau_py.errors import UserInputError
from bacalhau_py.ipfs.client import _extract_tar, _multipart_body, _multipart_length, _multipart_parts, api_url_from
from bacalhau_py.ipfs.kubo_http import parse_duration
from bacalhau_py.ipfs.kubo_upload import BodyReader, receive_multipart, safe_relative
from bacalhau_py.ipfs.libkubo import KuboFailure

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
        ("/dns4/ipfs.local/tcp/5001/http", "http://ipfs.local:5001"),
        ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
        ("127.0.0.1:5001", "http://127.0.0.1:5001"),
    ],
)
def test_api_address_forms(address, url):
    assert api_url_from(address) == url


@pytest.mark.parametrize("address", ["/ip4/127.0.0.1/udp/5001", "/unix/tmp/sock", "http://"])
def test_bad_api_addresses_are_user_errors(address):
    with pytest.raises(UserInputError):
        api_url_from(address)


def test_go_durations():
    assert parse_duration("30s") == 30
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2.5") == 2.5
    assert parse_duration(None) is None
    with pytest.raises(KuboFailure):
        parse_duration("soon")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "."])
def test_upload_names_cannot_escape(name):
    with pytest.raises(KuboFailure):
        safe_relative(name)


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, file bytes or None for a folder, symlink target) -> tar bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_extract_puts_a_file_cid_exactly_at_target(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([(CID, b"hello\n", None)]))
    _extract_tar(archive, CID, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"hello\n"


def test_extract_puts_a_folder_cid_exactly_at_target(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([(CID, None, None), (f"{CID}/sub", None, None), (f"{CID}/sub/f", b"f", None),
                              (f"{CID}/link", None, "sub/f")]))
    _extract_tar(archive, CID, tmp_path / "dir")
    assert (tmp_path / "dir" / "sub" / "f").read_bytes() == b"f"
    assert (tmp_path / "dir" / "link").read_bytes() == b"f"


@pytest.mark.parametrize(
    "entries",
    [
        [(CID, None, None), (f"{CID}/../escape", b"x", None)],
        [(CID, None, None), ("other/file", b"x", None)],
        [("/etc/evil", b"x", None)],
        [(CID, None, None), (f"{CID}/up", None, "../.."), (f"{CID}/up/escape", b"x", None)],
    ],
)
def test_extract_refuses_entries_leaving_the_target(tmp_path, entries):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar(entries))
    target_parent = tmp_path / "stage"
    target_parent.mkdir()
    with pytest.raises(tarfile.TarError):
        _extract_tar(archive, CID, target_parent / "root")
    assert not (tmp_path / "escape").exists()


def test_extract_keeps_a_link_that_points_outside_as_a_link(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([(CID, None, None), (f"{CID}/link", None, "/etc/passwd")]))
    (tmp_path / "stage").mkdir()
    _extract_tar(archive, CID, tmp_path / "stage" / "root")
    assert os.readlink(tmp_path / "stage" / "root" / "link") == "/etc/passwd"


async def _collect(parts, boundary) -> bytes:
    return b"".join([chunk async for chunk in _multipart_body(parts, boundary)])


@pytest.mark.parametrize("read_size", [1, 7, 1 << 20])
async def test_multipart_round_trip_through_the_child_parser(tmp_path, read_size):
    folder = tmp_path / "my folder+x"
    (folder / "sub").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "sub" / "a b.txt").write_bytes(b"A\r\n--not-a-boundary\r\n" * 100)
    (folder / "z").write_bytes(b"")
    (folder / "ln").symlink_to("z")
    boundary = "b0undary"
    parts = _multipart_parts(folder)
    # go-ipfs-files QueryEscapes names: '/' and '+' and ' ' are escaped
    assert urllib.parse.unquote_plus(parts[1][0]) == "my folder+x/empty"
    body = await _collect(parts, boundary)
    assert len(body) == _multipart_length(parts, boundary)

    class Slow(io.BytesIO):
        def read(self, size=-1):
            return super().read(min(size, read_size) if size and size > 0 else read_size)

    into = tmp_path / "received"
    into.mkdir()
    tops = receive_multipart(BodyReader(Slow(body), len(body), False), boundary.encode(), into)
    assert tops == [into / "my folder+x"]
    received = into / "my folder+x"
    assert (received / "sub" / "a b.txt").read_bytes() == (folder / "sub" / "a b.txt").read_bytes()
    assert (received / "empty").is_dir() and (received / "z").read_bytes() == b""
    assert (received / "ln").is_symlink() and str((received / "ln").readlink()) == "z"


async def test_chunked_upload_body(tmp_path):
    source = tmp_path / "f.txt"
    source.write_bytes(b"0123456789" * 1000)
    parts = _multipart_parts(source)
    body = await _collect(parts, "xyz")
    chunked = b"".join(f"{len(body[i:i + 333]):x}\r\n".encode() + body[i:i + 333] + b"\r\n"
                       for i in range(0, len(body), 333)) + b"0\r\n\r\n"
    into = tmp_path / "in"
    into.mkdir()
    tops = receive_multipart(BodyReader(io.BytesIO(chunked), None, True), b"xyz", into)
    assert [t.read_bytes() for t in tops] == [source.read_bytes()]
