"""The HTTP front under callers that send too much, too many, too slowly, or nonsense."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from syncd.errors import UsageError
from syncd.service.http import (
    LISTEN_BACKLOG,
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    STOP_GRACE,
    THREADS,
    HTTPServer,
    Request,
    Response,
    Routes,
)
from tests.support.daemons import running_daemon
from tests.support.waiting import wait_for

MAX_BODY = 1000
JSON = {"Content-Type": "application/json"}


class Gate:
    """Handlers that wait until the test lets them go, counting who is waiting."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0

    def handler(self, _: Request) -> Response:
        with self.lock:
            self.waiting += 1
        self.open.wait(30)
        return Response.text(200, "slow\n")


def boom(_: Request) -> Response:
    raise RuntimeError("secret detail")


def routes(gate: Gate) -> Routes:
    return {
        ("POST", "/echo"): lambda r: Response.json(200, {"got": len(r.body)}),
        ("GET", "/healthz"): lambda _: Response.text(200, "ok\n"),
        ("GET", "/query"): lambda r: Response.json(200, {"q": r.query, "h": dict(r.headers)}),
        ("GET", "/slow"): gate.handler,
        ("GET", "/boom"): boom,
    }


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open.set()


@contextlib.contextmanager
def started(server: HTTPServer) -> Iterator[HTTPServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(gate: Gate) -> Iterator[HTTPServer]:
    with started(HTTPServer("127.0.0.1", 0, routes(gate), max_connections=2)) as running:
        yield running


@pytest.fixture
def small(gate: Gate) -> Iterator[HTTPServer]:
    """Room for every worker thread, a small body limit and a one-second timeout."""
    with started(
        HTTPServer("127.0.0.1", 0, routes(gate), max_body=MAX_BODY, request_timeout=1)
    ) as running:
        yield running


def answer_then_close(address: tuple[str, int], sent: bytes) -> tuple[bytes, bool]:
    """What the server answers to ``sent``, and whether it then closed the connection."""
    received = b""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(sent)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
    return received, True


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]["message"]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


# --- lengths and framing --------------------------------------------------------


@pytest.mark.parametrize(
    "lengths", [b"Content-Length: 2\r\nContent-Length: 3\r\n", b"Content-Length: \xb2\r\n"]
)
def test_a_duplicate_or_odd_content_length_is_a_400(server: HTTPServer, lengths: bytes) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + lengths + b"\r\n"
    answer, closed = answer_then_close(server.address, head + b"{}")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert status_and_error(answer) == (400, "Content-Length must be one whole number")
    assert closed


# --- connections ----------------------------------------------------------------


def test_connections_beyond_the_cap_get_a_503_while_all_are_busy(
    server: HTTPServer, gate: Gate
) -> None:
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(requests.get, server.url + "/slow", timeout=30) for _ in range(2)]
        wait_for(lambda: gate.waiting == 2, what="both slots to be busy")
        answer = requests.post(server.url + "/echo", data=b"{}", headers=JSON, timeout=10)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["message"] == "too many connections; retry later"
        gate.open.set()
        assert [b.result().status_code for b in busy] == [200, 200]

    def served() -> bool:
        answer = requests.post(server.url + "/echo", data=b"{}", headers=JSON, timeout=10)
        return answer.status_code == 200

    wait_for(served, what="a connection slot to free up")


def test_a_flood_beyond_the_cap_is_refused_and_the_server_recovers(
    server: HTTPServer, gate: Gate
) -> None:
    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            pool.submit(requests.get, server.url + "/slow", timeout=30)
        wait_for(lambda: gate.waiting == 2, what="both slots to be busy")
        flood = [socket.create_connection(server.address, timeout=10) for _ in range(50)]
        for sock in flood:
            with sock:
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
        gate.open.set()

    def healthy() -> bool:
        return requests.get(server.url + "/healthz", timeout=10).status_code == 200

    wait_for(healthy, what="/healthz once the slow requests were answered")


def test_a_newcomer_takes_the_slot_of_the_connection_waiting_longest(
    server: HTTPServer,
) -> None:
    oldest = socket.create_connection(server.address, timeout=10)
    trickling = socket.create_connection(server.address, timeout=10)
    trickling.sendall(b"GET /healthz HTTP/1.1\r\n")
    with oldest, trickling, requests.Session() as kept_alive:
        assert kept_alive.get(server.url + "/healthz", timeout=10).status_code == 200
        assert closed_by_server(oldest)
        assert not closed_by_server(trickling)
        # The kept-alive connection sent its last request after the trickling one began its own.
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        assert closed_by_server(trickling)
        assert kept_alive.get(server.url + "/healthz", timeout=10).status_code == 200


def test_a_run_of_connections_beyond_the_cap_is_logged_once(
    server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    idle = [socket.create_connection(server.address, timeout=10) for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="syncd.service.http"):
        for _ in range(20):
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    for sock in idle:
        sock.close()
    # waitress may add its own "Task queue depth" warning under load: not ours to count.
    assert [r.getMessage() for r in caplog.records if r.name == "syncd.service.http"] == [
        "all 2 connection slots in use: a new connection takes the slot of the one waiting "
        "longest without a whole request, or is answered 503"
    ]


def test_the_listen_backlog_absorbs_bursts() -> None:
    assert LISTEN_BACKLOG >= 128


# --- body size ------------------------------------------------------------------


def test_a_body_of_exactly_the_limit_is_taken(small: HTTPServer) -> None:
    answer = requests.post(small.url + "/echo", data=b"x" * MAX_BODY, headers=JSON, timeout=10)
    assert answer.json() == {"got": MAX_BODY}


def test_a_declared_length_over_the_limit_is_a_413_before_the_body_is_sent(
    small: HTTPServer,
) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    answer, closed = answer_then_close(small.address, head)
    assert status_and_error(answer) == (413, f"request body over {MAX_BODY} bytes")
    assert closed


def test_a_chunked_body_that_grows_past_the_limit_is_a_413(small: HTTPServer) -> None:
    chunks = b"64\r\n" + b"x" * 100 + b"\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # Never ends: the answer comes without the last chunk.
    answer, closed = answer_then_close(small.address, head + chunks * 11)
    assert status_and_error(answer)[0] == 413
    assert closed


def test_a_chunked_body_under_the_limit_is_read(small: HTTPServer) -> None:
    def body() -> Iterator[bytes]:
        yield b"x" * 300
        yield b"y" * 300

    answer = requests.post(small.url + "/echo", data=body(), headers=JSON, timeout=10)
    assert answer.json() == {"got": 600}


# --- header size ----------------------------------------------------------------


def test_headers_over_the_limit_are_a_431_without_waiting_for_their_end(
    small: HTTPServer,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEADER_BYTES + 1000)
    answer, closed = answer_then_close(small.address, head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert status_and_error(answer) == (
        431,
        f"request line and headers over {MAX_HEADER_BYTES} bytes",
    )
    assert closed


def fields(count: int) -> bytes:
    return b"".join(b"X-Field-%d: v\r\n" % n for n in range(count))


def test_more_header_fields_than_the_limit_are_a_431(small: HTTPServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields(MAX_HEADER_FIELDS) + b"\r\n"
    answer, closed = answer_then_close(small.address, head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert status_and_error(answer) == (431, f"more than {MAX_HEADER_FIELDS} header fields")
    assert closed


def test_as_many_header_fields_as_the_limit_are_taken(small: HTTPServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\n" + fields(MAX_HEADER_FIELDS - 2)
    head += b"Host: x\r\nConnection: close\r\n\r\n"
    answer, _ = answer_then_close(small.address, head)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_headers_under_the_limit_are_taken(small: HTTPServer) -> None:
    pad = "a" * (MAX_HEADER_BYTES - 1000)
    answer = requests.get(small.url + "/healthz", headers={"X-Pad": pad}, timeout=10)
    assert answer.status_code == 200


# --- slow clients ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 9\r\n\r\n{",
    ],
    ids=["idle", "mid-headers", "mid-body"],
)
def test_a_client_that_stalls_is_cut_after_the_timeout(small: HTTPServer, sent: bytes) -> None:
    with socket.create_connection(small.address, timeout=10) as sock:
        sock.sendall(sent)
        wait_for(lambda: closed_by_server(sock), what="the server to cut the stalled client")


def test_a_kept_alive_connection_left_idle_is_cut(small: HTTPServer) -> None:
    with socket.create_connection(small.address, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: closed_by_server(sock), what="the server to cut the idle connection")


def test_a_slow_handler_is_not_cut_by_the_timeout(small: HTTPServer, gate: Gate) -> None:
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, small.url + "/slow", timeout=30)
        wait_for(lambda: gate.waiting == 1, what="the slow handler to start")
        # Opened now, cut once the timeout has passed for both connections.
        with socket.create_connection(small.address, timeout=10) as idle:
            wait_for(lambda: closed_by_server(idle), what="the idle connection to be cut")
        gate.open.set()
        assert slow.result().status_code == 200


def trickle(
    address: tuple[str, int], sent: bytes, *, every: float = 0.05, prefix: bytes = b""
) -> tuple[bytes, float]:
    """Send ``prefix`` at once, then ``sent`` one byte per ``every`` seconds (the wait
    for an answer paces it); what the server answered, and after how long."""
    began = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(prefix)
        sock.settimeout(every)
        for byte in sent:
            sock.sendall(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                if answer := sock.recv(65536):
                    return _rest_of(sock, answer), time.monotonic() - began
            assert time.monotonic() - began < 10, "the server never cut the client"
        # The last byte's answer may take longer than the pace on a loaded machine.
        sock.settimeout(5)
        if answer := sock.recv(65536):
            return _rest_of(sock, answer), time.monotonic() - began
    raise AssertionError("everything was sent and nothing answered")


def _rest_of(sock: socket.socket, answer: bytes) -> bytes:
    """The whole answer, read up to its Content-Length: the server closes after it
    with the client's last bytes unread, so a read past it may meet a reset."""
    sock.settimeout(5)
    while not _whole(answer) and (chunk := sock.recv(65536)):
        answer += chunk
    return answer


def _whole(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
    return bool(found) and length is not None and len(body) >= int(length.group(1))


ENDLESS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000


@contextlib.contextmanager
def paced(gate: Gate, header_timeout: float, min_rate: float = 1024) -> Iterator[HTTPServer]:
    server = HTTPServer(
        "127.0.0.1", 0, routes(gate), header_timeout=header_timeout, min_rate=min_rate
    )
    with started(server) as running:
        yield running


def test_a_client_trickling_its_headers_is_cut_at_the_header_deadline(gate: Gate) -> None:
    # Twenty bytes a second pass a minimum rate of one; only the deadline stops them.
    with paced(gate, header_timeout=1, min_rate=1) as server:
        answer, took = trickle(server.address, ENDLESS_HEAD)
    assert status_and_error(answer) == (408, "request line and headers not received within 1 s")
    assert 1 <= took < 3.5


def test_a_client_below_the_minimum_rate_is_cut_before_the_header_deadline(gate: Gate) -> None:
    with paced(gate, header_timeout=4, min_rate=1000) as server:
        answer, took = trickle(server.address, ENDLESS_HEAD)
    assert status_and_error(answer) == (408, "request sent slower than 1000 bytes/s")
    assert 2 <= took < 4


def test_a_body_trickled_below_the_minimum_rate_is_cut(gate: Gate) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n"
    with paced(gate, header_timeout=1, min_rate=100) as server:
        answer, took = trickle(server.address, b"x" * 900, prefix=head)
    assert status_and_error(answer) == (408, "request sent slower than 100 bytes/s")
    assert took < 5


def test_a_connection_that_never_sends_is_closed_without_an_answer(gate: Gate) -> None:
    with paced(gate, header_timeout=1) as server:
        began = time.monotonic()
        answer, closed = answer_then_close(server.address, b"")
    assert (answer, closed) == (b"", True)
    assert time.monotonic() - began < 3


def test_a_request_sent_in_pieces_at_a_fair_pace_is_served(gate: Gate) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with paced(gate, header_timeout=2, min_rate=100) as server:
        answer, _ = trickle(server.address, head, every=0.02)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_a_kept_alive_connection_idle_past_the_header_deadline_is_kept(gate: Gate) -> None:
    """The deadline counts from a request's first byte; between requests only the
    idle timeout (``request_timeout``) does."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        paced(gate, header_timeout=1) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        began = time.monotonic()

        def still_open_past_the_deadline() -> bool:
            assert not closed_by_server(sock), "the idle connection was cut"
            return time.monotonic() - began > 2

        wait_for(still_open_past_the_deadline, what="the header deadline to pass")
        sock.settimeout(10)
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


# --- threads --------------------------------------------------------------------


def test_healthz_answers_while_all_but_one_worker_wait(small: HTTPServer, gate: Gate) -> None:
    with ThreadPoolExecutor(THREADS - 1) as pool:
        slow = [
            pool.submit(requests.get, small.url + "/slow", timeout=30) for _ in range(THREADS - 1)
        ]
        wait_for(lambda: gate.waiting == THREADS - 1, what="the slow handlers to start")
        assert requests.get(small.url + "/healthz", timeout=10).status_code == 200
        gate.open.set()
        assert [s.result().status_code for s in slow] == [200] * (THREADS - 1)


def test_a_kept_alive_connection_is_not_held_up_by_delayed_acks(small: HTTPServer) -> None:
    with requests.Session() as session:
        assert session.get(small.url + "/healthz", timeout=10).status_code == 200
        began = time.monotonic()
        for _ in range(20):
            answer = session.post(small.url + "/echo", data=b"{}", headers=JSON, timeout=10)
            assert answer.status_code == 200
            assert session.get(small.url + "/healthz", timeout=10).status_code == 200
        took = time.monotonic() - began
    # About 40 ms an answer when Nagle waits for the delayed ACK.
    assert took < 1.0, f"40 requests on one connection took {took:.2f} s"


# --- routing and answers --------------------------------------------------------


def test_unknown_paths_and_methods_are_json_errors(small: HTTPServer) -> None:
    missing = requests.get(small.url + "/nowhere", timeout=10)
    assert (missing.status_code, missing.json()["error"]["message"]) == (404, "Not Found")
    wrong = requests.get(small.url + "/echo", timeout=10)
    assert (wrong.status_code, wrong.json()["error"]["message"]) == (405, "Method Not Allowed")


def test_a_failing_handler_is_a_500_without_its_traceback(
    small: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="syncd.service.http"):
        answer = requests.get(small.url + "/boom", timeout=10)
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": 500, "message": "internal error"}}
    assert "secret detail" not in answer.text
    assert [r.exc_info is not None for r in caplog.records] == [True]


def test_query_and_headers_reach_the_handler(small: HTTPServer) -> None:
    answer = requests.get(
        small.url + "/query?a=1&a=2&b=x", headers={"X-Syncd-Thing": "v"}, timeout=10
    ).json()
    assert answer["q"] == {"a": ["1", "2"], "b": ["x"]}
    assert answer["h"]["x-syncd-thing"] == "v"


def test_the_server_names_itself_without_a_version(small: HTTPServer) -> None:
    assert requests.get(small.url + "/healthz", timeout=10).headers["Server"] == "syncd"


# --- listening and stopping -----------------------------------------------------


def test_stop_returns_promptly_with_a_handler_stuck_and_frees_the_port(gate: Gate) -> None:
    server = HTTPServer("127.0.0.1", 0, routes(gate))
    server.start()
    idle = socket.create_connection(server.address, timeout=10)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(requests.get, server.url + "/slow", timeout=30)
        wait_for(lambda: gate.waiting == 1, what="the slow handler to start")
        began = time.monotonic()
        server.stop()
        took = time.monotonic() - began
        gate.open.set()
    assert took < STOP_GRACE + 2, f"stop() took {took:.2f} s"
    with idle:
        assert closed_by_server(idle)
    again = HTTPServer("127.0.0.1", server.address[1], routes(gate))
    again.stop()


def test_a_port_in_use_is_a_usage_error(server: HTTPServer) -> None:
    port = server.address[1]
    with pytest.raises(UsageError) as raised:
        HTTPServer("127.0.0.1", port, {})
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{port} (--listen): Address already in use"
    )


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_works(gate: Gate) -> None:
    with started(HTTPServer("::1", 0, routes(gate))) as server:
        assert re.fullmatch(r"http://\[::1\]:\d+", server.url)
        assert requests.get(server.url + "/healthz", timeout=10).text == "ok\n"
        # Host [::1]:PORT names the listener; 127.0.0.1:PORT does not.
        assert requests.get(server.url + "/query", timeout=10).status_code == 200
        port = server.address[1]
        wrong = {"Host": f"127.0.0.1:{port}"}
        assert requests.get(server.url + "/query", headers=wrong, timeout=10).status_code == 421


# --- the daemon -----------------------------------------------------------------


@pytest.fixture
def daemon_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as daemon:
        yield daemon.server.url


def test_more_than_1000_events_in_one_post_is_a_413_naming_the_limit(daemon_url: str) -> None:
    event = {"project": "nosuch", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    too_many = requests.post(daemon_url + "/v1/events", json=[event] * 1001, timeout=30)
    assert too_many.status_code == 413
    assert json.loads(too_many.text)["error"]["message"] == (
        "at most 1000 events per request, got 1001"
    )
    assert (
        requests.post(daemon_url + "/v1/events", json=[event] * 1000, timeout=60).status_code == 202
    )
