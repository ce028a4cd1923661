"""The CLI's HTTP/1.1 reader: the answers hypercorn gives, and malformed ones from a hostile peer."""

from __future__ import annotations

import io

import pytest

from bacalhau_py.api.http1 import MAX_HEADERS, ProtocolError, Response


def answer(data: bytes) -> Response:
    # A small buffer: bodies and lines arrive in several reads, as from a socket.
    return Response(io.BufferedReader(io.BytesIO(data), buffer_size=8))


def test_a_content_length_body_and_the_next_answer_on_the_same_connection():
    reader = io.BufferedReader(io.BytesIO(
        b"HTTP/1.1 200 \r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\": true}"
        b"HTTP/1.1 404 \r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    ))
    first = Response(reader)
    assert (first.status, first.headers["content-type"], first.read(), first.isclosed()) == (
        200, "application/json", b'{"a": true}', True)
    assert first.reusable
    second = Response(reader)
    assert (second.status, second.read(), second.reusable) == (404, b"{}", False)


def test_a_chunked_body_read_whole_in_pieces_and_as_lines():
    body = b"HTTP/1.1 200 \r\ntransfer-encoding: chunked\r\n\r\n5\r\nab\ncd\r\n3;ext=1\r\n\nef\r\n0\r\nx-trailer: 1\r\n\r\n"
    assert answer(body).read() == b"ab\ncd\nef"
    response = answer(body)
    assert list(response) == [b"ab\n", b"cd\n", b"ef"] and response.isclosed()
    pieces = answer(body)
    assert b"".join(iter(lambda: pieces.read1(2), b"")) == b"ab\ncd\nef"


def test_a_line_longer_than_a_read():
    line = b"x" * 100_000 + b"\n"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(line[i:i + 7000]), line[i:i + 7000]) for i in range(0, len(line), 7000))
    response = answer(b"HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert list(response) == [line]


@pytest.mark.parametrize("data, problem", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
    (b"HTTP/1.1 2xx \r\n\r\n", "status line"),
    (b"HTTP/1.1 200 \r\nno colon here\r\n\r\n", "colon"),
    (b"HTTP/1.1 200 \r\n" + b"a: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", "headers"),
    (b"HTTP/1.1 200 \r\nx: " + b"y" * 70_000 + b"\r\n\r\n", "line over"),
    (b"HTTP/1.1 200 \r\ncontent-length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 \r\ncontent-len", "closed inside the answer's head"),
])
def test_a_malformed_head_is_a_protocol_error(data, problem):
    with pytest.raises(ProtocolError, match=problem):
        answer(data)


@pytest.mark.parametrize("data, problem", [
    (b"HTTP/1.1 200 \r\ncontent-length: 10\r\n\r\nshort", "closed inside the body"),
    (b"HTTP/1.1 200 \r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "not hex"),
    (b"HTTP/1.1 200 \r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "longer than its size"),
])
def test_a_malformed_body_is_a_protocol_error(data, problem):
    with pytest.raises(ProtocolError, match=problem):
        answer(data).read()
