"""The embedded kubo's `add` body parser, fuzzed: any body gives files below the upload folder or a KuboFailure.

Bodies are generated (hypothesis): valid ones must round-trip, whatever the
file names, contents (boundary look-alikes included), read sizes and chunking;
mutated and random ones must never raise anything else, nor write outside the
upload folder.
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bacalhau_py.ipfs.client import _part_head
from bacalhau_py.ipfs.kubo_upload import BodyReader, receive_multipart
from bacalhau_py.ipfs.libkubo import KuboFailure

BOUNDARY = "9a8b7c6d5e4f"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\\0", exclude_categories=["Cs"]),
    min_size=1,
    max_size=24,
).filter(lambda name: name not in (".", ".."))
# Contents that look like the boundary, or part of it, are where parsers slip;
# a client picks a boundary its contents do not hold, so they never hold the delimiter itself.
contents = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from([b"\r\n", b"--", BOUNDARY.encode(), BOUNDARY[:5].encode(), b"x", b"\r"]), max_size=40)
    .map(b"".join),
).filter(lambda data: f"\r\n--{BOUNDARY}".encode() not in b"\r\n" + data)
files = st.dictionaries(names, contents, min_size=1, max_size=5)


def multipart(parts: list[tuple[str, str, bytes]]) -> bytes:
    """A body as kubo's clients write it: (path, content type, body) per part, names QueryEscaped."""
    body = b""
    for name, content_type, data in parts:
        body += _part_head(BOUNDARY, urllib.parse.quote(name, safe=""), content_type) + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, position, index = b"", 0, 0
    while position < len(body):
        size = sizes[index % len(sizes)]
        index += 1
        piece = body[position:position + size]
        position += size
        out += f"{len(piece):x}".encode() + (b";ext=1" if index % 3 == 0 else b"") + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\nTrailer: x\r\n\r\n"


class Trickle(io.BytesIO):
    """A socket-like stream: reads return at most `step` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size=-1):
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


def receive(data: bytes, *, chunk: bool = False, step: int = 1 << 20) -> tuple[Path, list[Path] | KuboFailure]:
    """Parse `data` into a fresh folder: (the folder's parent, tops or the failure)."""
    root = Path(tempfile.mkdtemp(prefix="upload-fuzz-"))
    into = root / "into"
    into.mkdir()
    reader = BodyReader(Trickle(data, step), None if chunk else len(data), chunk)
    try:
        return root, receive_multipart(reader, BOUNDARY.encode(), into)
    except KuboFailure as failure:
        return root, failure


def everything_below(root: Path) -> list[str]:
    return sorted(
        str(Path(folder, name).relative_to(root)) for folder, dirs, found in os.walk(root) for name in dirs + found
    )


def cleanup(root: Path) -> None:
    for folder, dirs, found in os.walk(root, topdown=False):
        for name in found:
            os.unlink(os.path.join(folder, name))
        for name in dirs:
            path = os.path.join(folder, name)
            os.unlink(path) if os.path.islink(path) else os.rmdir(path)
    os.rmdir(root)


@FUZZ
@given(files=files, step=st.integers(1, 4096), chunk=st.booleans(), sizes=st.lists(st.integers(1, 700), min_size=1))
def test_valid_bodies_round_trip(files, step, chunk, sizes):
    parts = [("top", "application/x-directory", b"")]
    parts += [(f"top/{name}", "application/octet-stream", data) for name, data in files.items()]
    body = multipart(parts)
    root, tops = receive(chunked(body, sizes) if chunk else body, chunk=chunk, step=step)
    try:
        assert tops == [root / "into" / "top"]
        assert {p.name: p.read_bytes() for p in (root / "into" / "top").iterdir()} == files
    finally:
        cleanup(root)


@FUZZ
@given(
    files=files,
    edits=st.lists(
        st.tuples(
            st.integers(0, 1 << 16), st.sampled_from(["flip", "drop", "insert", "cut"]), st.binary(min_size=1, max_size=8)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_bodies_fail_cleanly(files, edits):
    body = bytearray(multipart([(name, "application/octet-stream", data) for name, data in files.items()]))
    for position, kind, data in edits:
        at = position % (len(body) + 1)
        if kind == "flip" and at < len(body):
            body[at] ^= data[0] or 1
        elif kind == "drop":
            del body[at:at + len(data)]
        elif kind == "insert":
            body[at:at] = data
        else:
            del body[at:]
    root, outcome = receive(bytes(body), step=97)
    try:
        assert isinstance(outcome, (list, KuboFailure))
        assert all(path.startswith("into") for path in everything_below(root))
    finally:
        cleanup(root)


@FUZZ
@given(data=st.binary(max_size=4000), chunk=st.booleans())
def test_random_bytes_fail_cleanly(data, chunk):
    root, outcome = receive(data, chunk=chunk, step=61)
    try:
        assert isinstance(outcome, (list, KuboFailure))
        assert all(path.startswith("into") for path in everything_below(root))
    finally:
        cleanup(root)


@FUZZ
@given(data=st.binary(max_size=2000), step=st.integers(1, 64))
def test_a_chunked_reader_never_reads_more_than_it_was_sent(data, step):
    reader = BodyReader(Trickle(data, step), None, True)
    received = b""
    try:
        while chunk := reader.read(256):
            received += chunk
    except KuboFailure:
        pass
    assert len(received) <= len(data)


@FUZZ
@given(payload=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 500), min_size=1), step=st.integers(1, 300))
def test_chunked_round_trip(payload, sizes, step):
    reader = BodyReader(Trickle(chunked(payload, sizes), step), None, True)
    received = b""
    while chunk := reader.read(128):
        received += chunk
    assert received == payload


@pytest.mark.parametrize("size_line", [b"-5\r\n", b"0x10\r\n", b"1_0\r\n", b"zz\r\n", b"f" * 5000 + b"\r\n"])
def test_bad_chunk_sizes_are_failures_not_guesses(size_line):
    reader = BodyReader(io.BytesIO(size_line + b"x" * 100 + b"\r\n0\r\n\r\n"), None, True)
    with pytest.raises(KuboFailure, match="malformed chunked body"):
        reader.read()


def test_a_symlink_in_the_upload_cannot_be_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for parts in (
        [("x", "application/symlink", str(outside).encode()), ("x/evil", "application/octet-stream", b"!")],
        [("x", "application/symlink", str(outside / "evil").encode()), ("x", "application/octet-stream", b"!")],
    ):
        root, outcome = receive(multipart(parts))
        try:
            assert isinstance(outcome, KuboFailure), outcome
            assert list(outside.iterdir()) == []
        finally:
            cleanup(root)
