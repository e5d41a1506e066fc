"""The event-loop client against servers that answer hand-written bytes: chunked
bodies, connections closed while idle or after an answer, HTTP/1.0, heads and
bodies past the caps, interim answers, and a CONNECT proxy in front of HTTPS."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from syncd.hipchat.wire import Message, RoomTarget
from syncd.testing import HipChatServer
from tests.support.loopclient import LoopSender, make_client

TOKEN = "loop-room-token-0123456789abcdef"
MESSAGE = Message("hello", "text", "yellow", False)
CAP = 64 * 1024


@dataclass
class Peer:
    """One accepted connection, as the server's handler sees it."""

    sock: socket.socket
    index: int
    server: RawServer
    buffer: bytes = b""

    def read_request(self) -> bytes | None:
        """The next request (head and body), or None when the client closed."""
        while b"\r\n\r\n" not in self.buffer:
            part = self._recv()
            if not part:
                return None
            self.buffer += part
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            part = self._recv()
            if not part:
                return None
            rest += part
        request, self.buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
        with self.server.lock:
            self.server.requests.append((self.index, request))
        return request

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def wait_closed(self) -> None:
        """Until the client closes its end (what it sends meanwhile is dropped)."""
        while self._recv():
            pass


Handler = Callable[[Peer], None]


@dataclass
class RawServer:
    """Accepts on 127.0.0.1 and runs ``handler`` for each connection in a thread."""

    handler: Handler
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: int = 0
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                peer = Peer(conn, self.accepted, self)
                self.accepted += 1
                self.peers.append(peer)
            threading.Thread(target=self._serve, args=(peer,), daemon=True).start()

    def _serve(self, peer: Peer) -> None:
        try:
            self.handler(peer)
        finally:
            with contextlib.suppress(OSError):
                peer.sock.close()

    def requests_on(self, index: int) -> int:
        with self.lock:
            return sum(1 for i, _ in self.requests if i == index)

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self.lock:
            peers = list(self.peers)
        for peer in peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def sender() -> Iterator[LoopSender]:
    client = make_client("loop", timeout=(2.0, 2.0), send_timeout=5.0)
    assert isinstance(client, LoopSender)
    with client:
        yield client


def room(url: str, ca_file: str | None = None) -> RoomTarget:
    return RoomTarget(url, "1234567", TOKEN, ca_file)


def answering(answer: bytes, *, close: bool = False) -> Handler:
    """A handler answering each request with ``answer``; ``close``: then it closes."""

    def handle(peer: Peer) -> None:
        while peer.read_request() is not None:
            if not peer.send(answer) or close:
                return

    return handle


ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_a_chunked_hipchat_error_is_read_and_classified(
    serve: Callable[[Handler], RawServer], sender: LoopSender
) -> None:
    body = b'{"error": {"code": 400, "message": "color must be one of ...", "type": "Bad Request"}}'
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 7)
    )
    server = serve(answering(answer))
    result = sender.send(room(server.url), MESSAGE)
    assert (result.outcome, result.status, result.retry_after) == ("permanent", 400, None)
    assert result.reason == "HTTP 400 Bad Request: color must be one of ..."
    # Read to its last chunk, the connection is kept for the next send.
    assert sender.send(room(server.url), MESSAGE).status == 400
    assert server.accepted == 1


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "unnoticed"])
def test_a_keep_alive_connection_closed_while_idle_is_replaced(
    serve: Callable[[Handler], RawServer], sender: LoopSender, noticed: bool
) -> None:
    closed = threading.Event()

    def handle(peer: Peer) -> None:
        if peer.index == 0:
            assert peer.read_request() is not None
            peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            peer.sock.close()  # the server's idle timeout, right after the answer
            closed.set()
            return
        answering(ACCEPTED)(peer)

    server = serve(handle)
    assert sender.send(room(server.url), MESSAGE).ok
    assert closed.wait(5)
    if noticed:
        threading.Event().wait(0.2)  # the loop sees the end of the stream first
    result = sender.send(room(server.url), MESSAGE)
    assert (result.outcome, result.status) == ("delivered", 202), result.reason
    assert len(server.requests) == 2  # one for each send: the second was never lost
    assert server.accepted == 2
    assert server.requests_on(1) == 1


def test_a_request_the_server_read_before_closing_is_not_sent_again(
    serve: Callable[[Handler], RawServer], sender: LoopSender
) -> None:
    """The server took the request on a kept connection, then closed it without an
    answer: it may have posted the message, so the send is the dispatcher's to retry
    (with its backoff), not sent again at once."""

    def handle(peer: Peer) -> None:
        if peer.index == 0:
            assert peer.read_request() is not None
            peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            peer.read_request()
            return
        answering(ACCEPTED)(peer)

    server = serve(handle)
    assert sender.send(room(server.url), MESSAGE).ok
    result = sender.send(room(server.url), MESSAGE)
    assert (result.outcome, result.status) == ("retry", None), result
    assert result.reason.startswith("ConnectionError: ProtocolError"), result.reason
    assert len(server.requests) == 2  # one for each send
    assert server.accepted == 1


HTTP10 = {
    "connection-close": (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 204),
    "http-1.0": (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202),
    "http-1.0-to-eof": (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}", 200),
}


@pytest.mark.parametrize("name", sorted(HTTP10))
def test_an_answer_that_ends_its_connection_is_not_reused(
    serve: Callable[[Handler], RawServer], sender: LoopSender, name: str
) -> None:
    answer, status = HTTP10[name]
    # The server itself keeps the connection open unless the answer is read to its end.
    server = serve(answering(answer, close=name == "http-1.0-to-eof"))
    for _ in range(3):
        result = sender.send(room(server.url), MESSAGE)
        assert (result.outcome, result.status) == ("delivered", status), result.reason
    assert server.accepted == 3
    assert [server.requests_on(i) for i in range(3)] == [1, 1, 1]


def _long_heads() -> dict[str, bytes]:
    one_line = b"X-Pad: peer-secret-LINE " + b"a" * (CAP + 10) + b"\r\n"
    many = b"".join(b"X-Pad-%d: peer-secret-MANY %s\r\n" % (n, b"b" * 900) for n in range(80))
    return {"one line": one_line, "many lines": many}


LONG_HEADS = _long_heads()


@pytest.mark.parametrize("name", sorted(LONG_HEADS))
def test_an_answer_head_past_64_kib_is_a_protocol_error_without_its_bytes(
    serve: Callable[[Handler], RawServer],
    sender: LoopSender,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = b"HTTP/1.1 202 Accepted\r\n" + LONG_HEADS[name] + b"Content-Length: 0\r\n\r\n"
    assert len(answer) > CAP

    def handle(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(answer)
            peer.wait_closed()

    server = serve(handle)
    result = sender.send(room(server.url), MESSAGE)
    assert (result.outcome, result.status) == ("retry", None)
    assert result.retry_after is not None
    assert result.reason.startswith("ConnectionError: ProtocolError"), result.reason
    for text in (result.reason, caplog.text):
        assert "peer-secret" not in text and "aaaa" not in text and "bbbb" not in text
        assert TOKEN not in text
    assert len(server.requests) == 1


def test_an_interim_100_continue_is_skipped(
    serve: Callable[[Handler], RawServer], sender: LoopSender
) -> None:
    server = serve(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + ACCEPTED))
    for _ in range(2):
        result = sender.send(room(server.url), MESSAGE)
        assert (result.outcome, result.status) == ("delivered", 202), result.reason
    assert server.accepted == 1


def first_answer_then_202(
    serve: Callable[[Handler], RawServer], sender: LoopSender, first: bytes
) -> RawServer:
    """A server answering ``first`` on its first connection, 202 on the others: the
    first send keeps its 500 and closes its connection, the next opens another."""

    def handle(peer: Peer) -> None:
        answer = first if peer.index == 0 else ACCEPTED
        while peer.read_request() is not None:
            if not peer.send(answer):
                return

    server = serve(handle)
    result = sender.send(room(server.url), MESSAGE)
    assert (result.outcome, result.status) == ("retry", 500)
    assert result.reason == "HTTP 500 Internal Server Error"
    assert sender.send(room(server.url), MESSAGE).ok
    assert server.accepted == 2
    return server


@pytest.mark.parametrize("size", [CAP + 1, 5 * 1024 * 1024])
def test_a_body_past_64_kib_closes_its_connection(
    serve: Callable[[Handler], RawServer], sender: LoopSender, size: int
) -> None:
    body = b'{"error": {"message": "' + b"x" * size + b'"}}'
    big = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    server = first_answer_then_202(serve, sender, big)
    assert [server.requests_on(i) for i in range(2)] == [1, 1]


CHUNKED_PAST_CAP = {
    "size line": b"0" * (CAP + 10) + b"1\r\nx\r\n0\r\n\r\n",
    "trailer": b"1\r\nx\r\n0\r\nX-Trailer: " + b"t" * (CAP + 10) + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CHUNKED_PAST_CAP))
def test_a_chunked_line_past_64_kib_keeps_the_status_and_closes_the_connection(
    serve: Callable[[Handler], RawServer], sender: LoopSender, name: str
) -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"

    first_answer_then_202(serve, sender, head + CHUNKED_PAST_CAP[name])


class ConnectProxy:
    """A CONNECT proxy: answers ``refuse`` when set, else tunnels bytes both ways."""

    def __init__(self, refuse: bytes | None = None) -> None:
        self.refuse = refuse
        self.request_lines: list[str] = []
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = RawServer(self._handle)

    @property
    def url(self) -> str:
        return self.server.url

    def _handle(self, peer: Peer) -> None:
        while b"\r\n\r\n" not in peer.buffer:
            part = peer._recv()
            if not part:
                return
            peer.buffer += part
        head, _, rest = peer.buffer.partition(b"\r\n\r\n")
        line = head.split(b"\r\n")[0].decode("latin-1")
        with self.lock:
            self.request_lines.append(line)
        if self.refuse is not None:
            peer.send(self.refuse)
            peer.wait_closed()
            return
        host, _, port = line.split(" ")[1].rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        upstream.settimeout(None)
        with self.lock:
            self.sockets.append(upstream)
        peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        back = threading.Thread(target=_pipe, args=(upstream, peer.sock), daemon=True)
        back.start()
        _pipe(peer.sock, upstream)
        back.join(timeout=5)

    def close(self) -> None:
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def use_https_proxy(proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_https_through_a_connect_proxy(
    private_ca: tuple[trustme.CA, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, ca_file = private_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    proxy = ConnectProxy()
    use_https_proxy(proxy, monkeypatch)
    try:
        with (
            HipChatServer({"1234567": TOKEN}, limits=None, tls=context) as server,
            make_client("loop", timeout=(2.0, 2.0), send_timeout=5.0) as client,
        ):
            for _ in range(2):
                result = client.send(room(server.url, str(ca_file)), MESSAGE)
                assert (result.outcome, result.status) == ("delivered", 204), result.reason
            port = server.url.rsplit(":", 1)[1]
            assert len(server.messages) == 2
    finally:
        proxy.close()
    # One tunnel, kept alive for the second send.
    assert proxy.request_lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]


def test_a_proxy_refusing_the_tunnel_is_a_proxy_error_to_retry(
    private_ca: tuple[trustme.CA, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b"peer-secret-PROXY denied"
    proxy = ConnectProxy(
        refuse=b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    use_https_proxy(proxy, monkeypatch)
    try:
        with make_client("loop", timeout=(2.0, 2.0), send_timeout=5.0) as client:
            result = client.send(room("https://127.0.0.1:9", str(private_ca[1])), MESSAGE)
    finally:
        proxy.close()
    assert (result.outcome, result.status) == ("retry", None)
    assert result.retry_after is not None
    assert result.reason.startswith("ConnectionError: ProxyError"), result.reason
    assert "errno" not in result.reason  # 403 is the proxy's status, not a system errno
    assert proxy.request_lines == ["CONNECT 127.0.0.1:9 HTTP/1.1"]
    for text in (result.reason, caplog.text):
        assert "peer-secret" not in text and TOKEN not in text


def test_a_closed_loop_client_refuses_to_send(
    serve: Callable[[Handler], RawServer], sender: LoopSender
) -> None:
    server = serve(answering(ACCEPTED))
    assert sender.send(room(server.url), MESSAGE).ok
    sender.loop_client.close()
    with pytest.raises(RuntimeError):
        sender.send(room(server.url), MESSAGE)
