"""The body of kubo's `add`: a multipart/form-data stream of files, folders and symlinks, sized or chunked.

The multipart parsing is python-multipart's (Starlette's parser); what is
ours is small: the chunked transfer coding (`BodyReader`, strict: a bad size
line is an error, never a guess) and turning parts into files. Whatever the
body holds, the result is files below the upload folder or a `KuboFailure`;
tests/unit/test_kubo_upload_fuzz.py holds both to that with generated bodies.

Parts follow go-ipfs-files: the file name is QueryEscaped and relative to the
upload (`dir`, `dir/a.txt`); the part's Content-Type says what it is
(`application/x-directory`, `application/symlink` whose body is the target,
anything else a file).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from bacalhau_py.ipfs.libkubo import KuboFailure

CHUNK = 1 << 20
_MAX_LINE = 4096
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_SYMLINK_TARGET = 4096


class BodyReader:
    """The request body as a byte stream, whether sized or chunked (KuboFailure if it is malformed)."""

    def __init__(self, stream: BinaryIO, length: int | None, chunked: bool) -> None:
        self.stream = stream
        self.remaining = length
        self.chunked = chunked
        self.chunk_left = 0
        self.eof = False

    def read(self, size: int = CHUNK) -> bytes:
        if self.eof:
            return b""
        if self.chunked:
            return self._read_chunked(size)
        if self.remaining is None or self.remaining <= 0:
            self.eof = True
            return b""
        data = self.stream.read(min(size, self.remaining))
        self.remaining -= len(data)
        if not data:
            self.eof = True
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self.chunk_left == 0:
            line = self._line()
            digits = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(digits):
                self.eof = True
                raise KuboFailure(f"malformed chunked body: {digits[:20]!r} is not a chunk size (hex digits)")
            self.chunk_left = int(digits, 16)
            if self.chunk_left == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass  # trailers
                self.eof = True
                return b""
        data = self.stream.read(min(size, self.chunk_left))
        if not data:
            self.eof = True
            raise KuboFailure("truncated chunked body")
        self.chunk_left -= len(data)
        if self.chunk_left == 0 and self._line() not in (b"\r\n", b"\n"):
            self.eof = True
            raise KuboFailure("malformed chunked body: a chunk is longer than its size")
        return data

    def _line(self) -> bytes:
        line = self.stream.readline(_MAX_LINE + 1)
        if not line:
            self.eof = True
            raise KuboFailure("truncated chunked body")
        if len(line) > _MAX_LINE:
            self.eof = True
            raise KuboFailure(f"malformed chunked body: a line longer than {_MAX_LINE} bytes")
        return line


def safe_relative(name: str) -> Path:
    """A multipart filename as a path inside the upload folder, or an error (no `..`, no `/x`)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or name.startswith("/") or any(p == ".." for p in parts) or "\0" in name:
        raise KuboFailure(f"invalid file name in upload: {name!r}")
    return Path(*parts)


class _Parts:
    """python-multipart's callbacks: each part becomes a file, a folder or a symlink below `into`."""

    def __init__(self, into: Path) -> None:
        self.into = into
        self.tops: list[Path] = []
        self.headers: dict[str, bytes] = {}
        self.field = b""
        self.value = b""
        self.handle: BinaryIO | None = None
        self.link: tuple[Path, bytearray] | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.data,
            "on_part_end": self.close,
        }

    def begin(self) -> None:
        self.headers = {}

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.field.decode("latin-1").strip().lower()] = self.value.strip()
        self.field = self.value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition"))
        filename = options.get(b"filename")
        if filename is None:
            return  # a part that is no file: its body is skipped
        # kubo's clients QueryEscape the file name (go-ipfs-files).
        relative = safe_relative(urllib.parse.unquote_plus(filename.decode("utf-8", "replace")))
        target = self.into / relative
        # An earlier part may have been a symlink: never write through one, out of the upload.
        if any((self.into / parent).is_symlink() for parent in relative.parents) or target.is_symlink():
            raise KuboFailure(f"upload: {relative} goes through a symlink of the same upload")
        if len(relative.parts) == 1:
            self.tops.append(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        content_type, _ = parse_options_header(self.headers.get("content-type"))
        if content_type == b"application/x-directory":
            target.mkdir(exist_ok=True)
        elif content_type == b"application/symlink":
            self.link = (target, bytearray())
        else:
            # O_EXCL: a name sent twice is an error, not an overwrite.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            self.handle = os.fdopen(os.open(target, flags, 0o644), "wb")

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is not None:
            self.handle.write(data[start:end])
        elif self.link is not None:
            self.link[1].extend(data[start:end])
            if len(self.link[1]) > _MAX_SYMLINK_TARGET:
                raise KuboFailure(f"symlink {self.link[0].name} in upload: target over {_MAX_SYMLINK_TARGET} bytes")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.link is not None:
            target, link = self.link
            self.link = None
            os.symlink(link.decode("utf-8", "replace"), target)


def receive_multipart(body: BodyReader, boundary: bytes, into: Path) -> list[Path]:
    """Stream the parts to disk below `into`; return the top-level entries in order."""
    parts = _Parts(into)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        while data := body.read():
            parser.write(data)
        parser.finalize()
    except FormParserError as error:
        raise KuboFailure(f"malformed multipart body: {error}") from None
    except OSError as error:
        # A name that is also a folder, a symlink on a folder, ...: the body contradicts itself.
        raise KuboFailure(f"cannot store the upload: {error.strerror or error}") from None
    finally:
        parts.close()
    if parser.state != MultipartState.END:
        raise KuboFailure("truncated multipart body")
    return parts.tops


def tree_size(path: Path) -> int:
    """The bytes of the files (and symlinks) in a tree; iterative, as an upload may nest deeply."""
    total, pending = 0, [path]
    while pending:
        item = pending.pop()
        if item.is_symlink() or not item.is_dir():
            total += item.lstat().st_size
        else:
            pending.extend(item.iterdir())
    return total
