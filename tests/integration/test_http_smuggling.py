"""Requests whose length two HTTP parsers could read differently are refused.

When a proxy and this server disagree on where a request's body ends, the
bytes one of them takes as body the other serves as a second request the
proxy never saw: request smuggling. Every header set below has two
readings; each must get one 400, no handler run, and a closed connection,
so no second request is ever read from what follows.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from syncd.service.http import HTTPServer, Request, Response

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class Served:
    """The server, and the path and body length of every request a handler saw."""

    server: HTTPServer
    seen: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Request) -> Response:
        with self.lock:
            self.seen.append((request.path, len(request.body)))
        return Response.json(200, {"got": len(request.body)})


@pytest.fixture
def served() -> Iterator[Served]:
    holder: list[Served] = []

    def record(request: Request) -> Response:
        return holder[0].record(request)

    server = HTTPServer(
        "127.0.0.1",
        0,
        {("POST", "/echo"): record, ("GET", "/smuggled"): record},
        allowed_hosts=["x"],
    )
    holder.append(Served(server))
    server.start()
    try:
        yield holder[0]
    finally:
        server.stop()


def exchange(served: Served, raw: bytes) -> tuple[list[bytes], bool]:
    """The status codes answered to ``raw``, and whether the server then closed.

    Reading stops at the server's close; a server that keeps the connection
    open after its answers is noticed by the read timing out.
    """
    received = b""
    closed = False
    with socket.create_connection(served.server.address, timeout=5) as sock:
        sock.sendall(raw)
        try:
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    return re.findall(rb"^HTTP/1\.[01] (\d{3}) ", received, re.MULTILINE), closed


def post(headers: bytes, body: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = b"POST /echo " + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head + headers + b"\r\n" + body


def assert_refused(served: Served, raw: bytes) -> None:
    statuses, closed = exchange(served, raw)
    assert statuses == [b"400"], statuses
    assert closed, "the connection stayed open after the 400"
    assert served.seen == [], f"handlers ran for {served.seen}"


def test_content_length_then_chunked_is_a_400(served: Served) -> None:
    # By length the body is the last chunk; by chunks it is too. Either way the
    # GET after it would be a second request.
    headers = b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(LAST_CHUNK)
    assert_refused(served, post(headers, LAST_CHUNK + SMUGGLED))


def test_chunked_then_content_length_is_a_400(served: Served) -> None:
    # By chunks the GET is the body; by length the body is the chunk's size
    # line, and the GET is a second request.
    size_line = b"%x\r\n" % len(SMUGGLED)
    headers = b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(size_line)
    assert_refused(served, post(headers, size_line + SMUGGLED + b"\r\n" + LAST_CHUNK))


def test_two_different_content_lengths_are_a_400(served: Served) -> None:
    headers = b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED)
    assert_refused(served, post(headers, SMUGGLED))


@pytest.mark.parametrize(
    "value",
    [b"\xb2", "\u0663".encode(), b"\xd9\xa3", b"-1", b"+2", b"0x2", b"2 2", b"9" * 5000],
    ids=["superscript", "arabic-indic", "utf8-bytes", "negative", "plus", "hex", "two", "huge"],
)
def test_a_content_length_that_is_not_ascii_digits_is_a_400(served: Served, value: bytes) -> None:
    assert_refused(served, post(b"Content-Length: " + value + b"\r\n", b"{}" + SMUGGLED))


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Note: a\r\n b\r\nContent-Length: 2\r\n",
        b"Content-Length: 2\r\nX-Note: a\r\n\tb\r\n",
        b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 2\r\n",
    ],
    ids=["space", "tab", "folded-transfer-encoding"],
)
def test_a_folded_header_line_is_a_400(served: Served, headers: bytes) -> None:
    assert_refused(served, post(headers, b"{}" + SMUGGLED))


@pytest.mark.parametrize(
    "coding",
    [b"chunked, identity", b"identity", b"gzip", b"gzip, chunked", b"chunked, chunked", b""],
    ids=["chunked-identity", "identity", "gzip", "gzip-chunked", "chunked-chunked", "empty"],
)
def test_a_transfer_coding_other_than_chunked_alone_is_a_400(served: Served, coding: bytes) -> None:
    headers = b"Transfer-Encoding: " + coding + b"\r\n"
    assert_refused(served, post(headers, LAST_CHUNK + SMUGGLED))


def test_chunked_named_twice_is_a_400(served: Served) -> None:
    headers = b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
    assert_refused(served, post(headers, LAST_CHUNK + SMUGGLED))


def test_chunked_in_an_http_1_0_request_is_a_400(served: Served) -> None:
    # HTTP/1.0 has no transfer codings, so a 1.0 parser reads by length.
    headers = b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
    assert_refused(served, post(headers, LAST_CHUNK + SMUGGLED, version=b"HTTP/1.0"))


# --- what is not smuggling still works ------------------------------------------


def test_a_chunked_body_is_read_whole(served: Served) -> None:
    body = b"4\r\nabcd\r\n3\r\nefg\r\n" + LAST_CHUNK
    raw = post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", body)
    statuses, closed = exchange(served, raw)
    assert (statuses, closed) == ([b"200"], True)
    assert served.seen == [("/echo", 7)]


def test_two_pipelined_requests_get_two_answers(served: Served) -> None:
    # What the checks above would see if a second request got through.
    first = post(b"Content-Length: 2\r\n", b"{}")
    second = post(b"Content-Length: 2\r\nConnection: close\r\n", b"{}")
    statuses, closed = exchange(served, first + second)
    assert (statuses, closed) == ([b"200", b"200"], True)
    assert served.seen == [("/echo", 2), ("/echo", 2)]
