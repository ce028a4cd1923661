"""Plain HTTP/1.1 on a socket: what the CLI's API client sends a node, and what a node answers.

The standard library's `http.client` imports `email` (to parse headers) and
`ssl`: about 20 ms of every command on these machines, a fifth of a
`run --wait`'s CPU (BENCHMARKS.md). The client needs only this: a request
with a Content-Length body (bytes or a file), and an answer whose body has a
Content-Length or is chunked (hypercorn sends nothing else), on one
keep-alive connection.

The answer is network input: its lines, headers and chunk sizes are bounded,
and anything malformed is a `ProtocolError`.
"""

from __future__ import annotations

import socket
from typing import BinaryIO

MAX_LINE = 1 << 16
MAX_HEADERS = 100
CHUNK = 1 << 16


class ProtocolError(Exception):
    """The peer's answer is not HTTP/1.1 as this module reads it."""


class Connection:
    """One keep-alive connection to `host:port`."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        # An ASCII name as bytes: a str is encoded with the `idna` codec, which imports unicodedata.
        address = host.encode() if host.isascii() else host
        self.sock = socket.create_connection((address, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._reader = self.sock.makefile("rb")

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | BinaryIO | None) -> None:
        """Send a request; a file body needs its Content-Length in `headers`."""
        if body is None:
            body = b""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}", *(f"{k}: {v}" for k, v in headers.items())]
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes):
            # One send: head and body in one segment, never a delayed-ACK wait between them.
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            while piece := body.read(CHUNK):
                self.sock.sendall(piece)

    def response(self) -> Response:
        """The answer to the request sent: its head read, its body still to read."""
        return Response(self._reader)

    def close(self) -> None:
        self._reader.close()
        self.sock.close()


class Response:
    """An answer: `status`, `headers` (lower-case names), and its body, read once."""

    def __init__(self, reader: BinaryIO) -> None:
        self._reader = reader
        version, _, rest = _line(reader).partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {version[:40]!r}")
        self.status = int(code)
        self.headers: dict[str, str] = {}
        count = 0
        while line := _line(reader):
            count += 1
            if count > MAX_HEADERS:
                raise ProtocolError(f"more than {MAX_HEADERS} headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"a header line without a colon: {name[:40]!r}")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._left = 0 if self._chunked else self._length()
        self._done = self._left == 0 and not self._chunked
        self.reusable = self.headers.get("connection", "").lower() != "close"

    def _length(self) -> int:
        text = self.headers.get("content-length", "0")
        if not text.isdigit():
            raise ProtocolError(f"Content-Length {text[:40]!r} is not a number")
        return int(text)

    def isclosed(self) -> bool:
        """True once the whole body was read."""
        return self._done

    def read1(self, size: int = CHUNK) -> bytes:
        """The next piece of the body (at most `size` bytes); b"" at its end."""
        if self._done:
            return b""
        if self._left == 0:
            # Chunked, at a chunk boundary: the next chunk's size line.
            text = _line(self._reader).split(b";", 1)[0].strip()
            try:
                self._left = int(text, 16)
            except ValueError:
                raise ProtocolError(f"a chunk size that is not hex: {text[:40]!r}") from None
            if self._left == 0:
                while _line(self._reader):
                    pass  # trailers: none we use
                self._done = True
                return b""
        piece = self._reader.read1(min(size, self._left))
        if not piece:
            raise ProtocolError("the connection closed inside the body")
        self._left -= len(piece)
        if self._left == 0:
            if self._chunked:
                if _line(self._reader):
                    raise ProtocolError("a chunk longer than its size")
            else:
                self._done = True
        return piece

    def read(self) -> bytes:
        return b"".join(iter(self.read1, b""))

    def __iter__(self):
        """The body's lines, each with its b"\\n" (a log line carries up to 1 MiB, base64)."""
        pending: list[bytes] = []
        while piece := self.read1():
            *lines, rest = piece.split(b"\n")
            if lines:
                yield b"".join([*pending, lines[0]]) + b"\n"
                yield from (line + b"\n" for line in lines[1:])
                pending = []
            pending.append(rest)
        if any(pending):
            yield b"".join(pending)


def _line(reader: BinaryIO) -> bytes:
    """One CRLF-terminated line of the head, without it; b"" for the blank line."""
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"a line over {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        raise ProtocolError("the connection closed inside the answer's head")
    return line.rstrip(b"\r\n")
