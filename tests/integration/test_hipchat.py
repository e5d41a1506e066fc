from __future__ import annotations

import email.utils
import http.server
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from syncd.hipchat.client import MAX_REASON, HipChatClient, auth_test
from syncd.hipchat.pacing import Pacing
from syncd.hipchat.wire import (
    DeliveryResult,
    Message,
    RoomTarget,
    backoff,
    notification_url,
    parse_retry_after,
)
from syncd.testing import Fault, HipChatServer, Limits, ServerRoom
from tests.support.loopclient import KINDS, Client, make_client

TOKEN = "s3cr3t-room-token-0123456789"
NAMED_TOKEN = "named-room-token-9876543210"
NAMED = "Ops / alerts? #1 & co"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def message(text: str = "<b>boom</b>", sender: str | None = "syncd") -> Message:
    return Message(text, "html", "red", True, sender)


@pytest.fixture
def server() -> Iterator[HipChatServer]:
    rooms = [ServerRoom("1234567", TOKEN), ServerRoom("42", NAMED_TOKEN, name=NAMED)]
    with HipChatServer(rooms) as srv:
        yield srv


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which client sends: the thread client, or the event-loop one behind it."""
    return str(request.param)


@pytest.fixture
def client(kind: str) -> Iterator[Client]:
    with make_client(kind, timeout=(2.0, 2.0), rng=FixedRandom(0.5)) as c:
        yield c


def target(server: HipChatServer, room: str = "1234567", token: str = TOKEN) -> RoomTarget:
    return RoomTarget(server.url + "/", room, token)


def test_notification_request_shape(server: HipChatServer, client: Client) -> None:
    result = client.send(target(server), message())
    assert result == DeliveryResult("delivered", 204, "sent")
    (got,) = server.messages
    assert got.path == "/v2/room/1234567/notification"
    assert got.body == {
        "message": "<b>boom</b>",
        "message_format": "html",
        "color": "red",
        "notify": True,
        "from": "syncd",
    }
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("syncd/")


def test_one_connection_is_kept_alive_across_answers(server: HipChatServer, client: Client) -> None:
    server.inject(Fault.status(500, body='{"error": {"message": "oops"}}'))
    assert client.send(target(server), message()).outcome == "retry"
    assert client.send(target(server, token="not-the-token"), message()).outcome == "permanent"
    assert client.send(target(server), message()).ok
    assert client.auth_test(target(server)).ok
    assert len(server.attempts) == 4
    assert len({attempt.client_port for attempt in server.attempts}) == 1


def test_a_netrc_entry_does_not_replace_the_room_token(
    server: HipChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with make_client(kind, timeout=(2.0, 2.0)) as client:
        assert client.send(target(server), message()).ok
    assert server.messages[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_from_is_left_out_without_a_sender(server: HipChatServer, client: Client) -> None:
    assert client.send(target(server), message(sender=None)).ok
    assert "from" not in server.messages[0].body


def test_room_names_are_url_encoded(server: HipChatServer, client: Client) -> None:
    assert notification_url("https://h/", "a/b?c#d e").endswith(
        "/v2/room/a%2Fb%3Fc%23d%20e/notification"
    )
    result = client.send(target(server, NAMED.upper(), NAMED_TOKEN), message())
    assert result.ok, result.reason
    (got,) = server.messages
    assert got.room == "42"
    assert "?" not in got.path and "auth_token" not in got.path


@pytest.mark.parametrize(
    ("room", "token", "status", "words"),
    [
        ("1234567", "wrong-token-value", 401, "Invalid OAuth session"),
        ("7654321", TOKEN, 404, "Room not found"),
    ],
)
def test_refusals_are_permanent_with_the_servers_reason(
    server: HipChatServer, client: Client, room: str, token: str, status: int, words: str
) -> None:
    result = client.send(target(server, room, token), message())
    assert (result.outcome, result.status, result.retry_after) == ("permanent", status, None)
    assert words in result.reason


def test_a_bad_request_is_permanent(server: HipChatServer, client: Client) -> None:
    bad = Message("hi", "html", cast(Any, "pink"), False, None)
    result = client.send(target(server), bad)
    assert (result.outcome, result.status) == ("permanent", 400)
    assert "Bad Request: color must be one of" in result.reason
    too_long = client.send(target(server), message("x" * 10_001))
    assert (too_long.outcome, too_long.status) == ("permanent", 400)


def test_a_plain_403_is_permanent_but_flood_control_is_a_rate_limit(
    server: HipChatServer, client: Client
) -> None:
    server.inject(Fault.status(403, "Token lacks the send_notification scope"))
    result = client.send(target(server), message())
    assert (result.outcome, result.rate_limited) == ("permanent", False)
    server.inject(Fault.flood_control())
    result = client.send(target(server), message(), attempt=2)
    assert (result.outcome, result.status, result.rate_limited) == ("retry", 403, True)
    assert result.retry_after == 2.0  # no header: backoff, 0.5 * min(cap, 1 * 2**2)


def test_retry_after_in_seconds_or_as_a_date(server: HipChatServer, kind: str) -> None:
    clock = Clock()
    with make_client(kind, clock=clock, rng=FixedRandom(0.5)) as client:
        server.inject(Fault.rate_limited("7"))
        result = client.send(target(server), message())
        assert (result.outcome, result.status, result.retry_after) == ("retry", 429, 7.0)
        assert result.rate_limited
        assert client.delay_before_send(target(server)) == 7.0
        clock.now += 7
        assert client.delay_before_send(target(server)) == 0.0

        date = email.utils.formatdate(clock.now + 90, usegmt=True)
        server.inject(Fault.status(503, headers={"Retry-After": date}))
        result = client.send(target(server), message())
        assert (result.outcome, result.retry_after) == ("retry", 90.0)
        assert not result.rate_limited


def test_ratelimit_reset_sets_the_wait(server: HipChatServer, kind: str) -> None:
    clock = Clock()
    headers = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(T0) + 42)}
    with make_client(kind, clock=clock, rng=FixedRandom(0.5)) as client:
        server.inject(Fault.status(429, headers=headers))
        result = client.send(target(server), message())
        assert (result.outcome, result.retry_after) == ("retry", 42.0)
        # The whole token is spent: its other rooms wait too.
        other = target(server, NAMED, TOKEN)
        assert client.delay_before_send(other) == 42.0


def test_a_server_wait_is_honoured_past_the_backoff_cap_up_to_its_own_cap(
    server: HipChatServer,
    kind: str,
) -> None:
    with make_client(kind, backoff_cap=1.0, max_server_wait=600.0) as client:
        server.inject(Fault.rate_limited("30"))
        assert client.send(target(server), message()).retry_after == 30.0
        server.inject(Fault.rate_limited("86400"))
        assert client.send(target(server), message()).retry_after == 600.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_retry_with_backoff(
    server: HipChatServer, client: Client, status: int
) -> None:
    server.inject(Fault.server_error(status))
    result = client.send(target(server), message(), attempt=3)
    assert (result.outcome, result.status, result.retry_after) == ("retry", status, 4.0)
    assert "Internal" in result.reason or str(status) in result.reason


def test_a_redirect_is_not_followed(server: HipChatServer, client: Client) -> None:
    server.inject(Fault.status(302, headers={"Location": server.url + "/elsewhere"}))
    result = client.send(target(server), message())
    assert (result.outcome, result.status) == ("permanent", 302)
    assert len(server.attempts) == 1


def test_a_reset_connection_is_retried(server: HipChatServer, client: Client) -> None:
    server.inject(Fault.reset())
    result = client.send(target(server), message())
    assert (result.outcome, result.status) == ("retry", None)
    assert "ConnectionError" in result.reason
    assert client.send(target(server), message()).ok


def test_a_slow_server_times_out_and_is_retried(server: HipChatServer, kind: str) -> None:
    server.inject(Fault.slow(5.0))
    with make_client(kind, timeout=(1.0, 0.2)) as client:
        started = time.monotonic()
        result = client.send(target(server), message())
    assert time.monotonic() - started < 2.0
    assert (result.outcome, result.status) == ("retry", None)
    assert "Timeout" in result.reason


def test_a_trickling_answer_is_cut_at_the_send_timeout(server: HipChatServer, kind: str) -> None:
    """Each read gets a byte before the read timeout; only the whole-request deadline ends it."""
    server.inject(Fault.trickle(0.2))
    with make_client(kind, timeout=(1.0, 1.0), send_timeout=1.0) as client:
        result = client.send(target(server), message())
        assert (result.outcome, result.status) == ("retry", None)
        assert result.reason == "no complete answer within 1 s"
        assert client.send(target(server), message()).ok
    assert [a.fault for a in server.attempts] == ["trickle", None]


def test_a_closed_client_refuses_to_send(server: HipChatServer) -> None:
    client = HipChatClient()
    assert client.send(target(server), message()).ok
    client.close()
    with pytest.raises(RuntimeError):
        client.send(target(server), message())


def test_a_refused_connection_is_retried(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client.send(RoomTarget(f"http://127.0.0.1:{port}", "1", TOKEN), message())
    assert (result.outcome, result.status) == ("retry", None)


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """Answers every request itself and keeps its request line: proxied requests
    name the whole URL there."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.trickle = False
        self.closing = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy.request_lines.append(self.requestline)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if proxy.trickle:
                    self._trickle()
                    return
                self.send_response(204)
                self.end_headers()

            def _trickle(self) -> None:
                self.close_connection = True
                for byte in b"HTTP/1.1 204 No Content\r\nX-Padding: " + b"." * 100:
                    if proxy.closing.wait(0.2):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def proxy() -> Iterator[_ForwardProxy]:
    server = _ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()


def use_proxy(proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment names ``proxy`` for plain http, with no host exempted."""
    host, port = proxy.server_address[:2]
    monkeypatch.setenv("HTTP_PROXY", f"http://{host!s}:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_the_proxy_from_the_environment_is_used(
    proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    use_proxy(proxy, monkeypatch)
    with make_client(kind, timeout=(2.0, 2.0)) as client:
        for _ in range(2):
            assert client.send(RoomTarget("http://hipchat.invalid", "7", TOKEN), message()).ok
    assert (
        proxy.request_lines == ["POST http://hipchat.invalid/v2/room/7/notification HTTP/1.1"] * 2
    )


def test_the_send_timeout_also_bounds_a_request_through_a_proxy(
    proxy: _ForwardProxy, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    use_proxy(proxy, monkeypatch)
    proxy.trickle = True
    with make_client(kind, timeout=(1.0, 1.0), send_timeout=1.0) as client:
        result = client.send(RoomTarget("http://hipchat.invalid", "7", TOKEN), message())
    assert result.reason == "no complete answer within 1 s"


def test_no_proxy_hosts_are_reached_directly(
    server: HipChatServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with make_client(kind, timeout=(2.0, 2.0)) as client:
        assert client.send(target(server), message()).ok
    assert len(server.messages) == 1


def test_auth_test(server: HipChatServer) -> None:
    ok = auth_test(server.url, "1234567", TOKEN)
    assert (ok.outcome, ok.status) == ("delivered", 202)
    bad = auth_test(server.url, "1234567", "not-the-token")
    assert (bad.outcome, bad.status) == ("permanent", 401)
    assert server.messages == []
    assert [a.path for a in server.attempts] == ["/v2/room/1234567/notification?auth_test=true"] * 2


def test_a_token_unfit_for_a_header_is_refused_before_sending(
    server: HipChatServer, client: Client
) -> None:
    for token in ("abc\r\nX-Evil: 1", "tökén-ünïcode", ""):
        result = client.send(target(server, token=token), message())
        assert result.outcome == "permanent"
    assert server.attempts == []


def test_threads_share_kept_alive_connections(server: HipChatServer, client: Client) -> None:
    results: list[DeliveryResult] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for _ in range(5):
            result = client.send(target(server), message(f"thread {n}"))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert all(r.ok for r in results) and len(results) == 20
    assert len(server.wait_for_messages(20)) == 20
    # At most one connection per thread at a time, each reused: never one per send.
    assert len({a.client_port for a in server.attempts}) <= 4


SCENARIOS = ["ok", "401", "500", "429", "reset", "timeout", "refused", "bad-token", "auth-test"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tokens_never_leak(
    server: HipChatServer, caplog: pytest.LogCaptureFixture, scenario: str, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    token = TOKEN
    tgt = target(server)
    if scenario == "401":
        token = "another-secret-token-abcdef"
        tgt = target(server, token=token)
    elif scenario == "500":
        server.inject(Fault.status(500, f"echoing your token {TOKEN}"))
    elif scenario == "429":
        server.inject(Fault.status(429, body=f"rate limited, token={TOKEN}"))
    elif scenario == "reset":
        server.inject(Fault.reset())
    elif scenario == "timeout":
        server.inject(Fault.slow(5.0))
    elif scenario == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            tgt = RoomTarget(f"http://127.0.0.1:{sock.getsockname()[1]}", "1", TOKEN)
    elif scenario == "bad-token":
        token = "leaky-token\nwith-a-newline"
        tgt = target(server, token=token)
    with make_client(kind, timeout=(1.0, 0.2)) as client:
        send = client.auth_test if scenario == "auth-test" else lambda t: client.send(t, message())
        result = send(tgt)
    texts = [str(result), repr(result), str(tgt), repr(tgt), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    pieces = {token, *token.split("\n")}
    for text in texts:
        for piece in pieces:
            assert piece not in text
    if scenario == "500":
        assert "***" in result.reason  # HipChat's own error message, redacted
    if scenario == "429":
        assert result.reason == "HTTP 429 Too Many Requests"  # any other body is not shown


@pytest.mark.parametrize("offset", range(-40, 10, 3))
def test_a_long_reason_is_clipped_without_leaving_part_of_a_token(
    server: HipChatServer, client: Client, offset: int
) -> None:
    server.inject(Fault.status(500, body="x" * (MAX_REASON + offset) + TOKEN + "y" * 100))
    result = client.send(target(server), message())
    assert len(result.reason) <= MAX_REASON + 3
    assert TOKEN[:4] not in result.reason


def test_backoff_is_full_jitter_and_capped() -> None:
    assert backoff(0, 1.0, 300.0, FixedRandom(0.999)) == pytest.approx(0.999)
    assert backoff(5, 1.0, 300.0, FixedRandom(0.5)) == 16.0
    assert backoff(20, 1.0, 300.0, FixedRandom(1.0)) == 300.0
    assert backoff(10_000, 0.5, 60.0, FixedRandom(1.0)) == 60.0
    rng = random.Random(7)
    waits = [backoff(3, 2.0, 300.0, rng) for _ in range(200)]
    assert all(0 <= w <= 16.0 for w in waits) and max(waits) - min(waits) > 8
    with pytest.raises(ValueError):
        backoff(-1, 1.0, 10.0, rng)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after(" 1.5 ", T0) == 1.5
    assert parse_retry_after("-3", T0) == 0.0
    assert parse_retry_after(email.utils.formatdate(T0 + 30, usegmt=True), T0) == 30.0
    assert parse_retry_after(email.utils.formatdate(T0 - 30, usegmt=True), T0) == 0.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after("nan", T0) is None


def test_pacing_follows_the_headers() -> None:
    pacing = Pacing(max_delay=120.0)
    a = RoomTarget("https://h", "1", TOKEN)
    b = RoomTarget("https://h", "2", TOKEN)
    c = RoomTarget("https://h", "3", "another-token-value")
    pacing.observe(a, {"X-FloodControl-Remaining": "0", "X-FloodControl-Reset": str(T0 + 20)}, T0)
    assert pacing.delay_before_send(a, T0) == 20.0
    assert pacing.delay_before_send(b, T0) == 0.0
    assert pacing.delay_before_send(a, T0 + 20) == 0.0

    pacing.observe(a, {"X-Ratelimit-Remaining": "1", "X-Ratelimit-Reset": str(T0 + 250)}, T0)
    assert pacing.delay_before_send(b, T0) == 0.0
    pacing.note_send(b, T0)  # spends the token's last request
    assert pacing.delay_before_send(a, T0) == 120.0  # capped
    assert pacing.delay_before_send(b, T0 + 200) == 50.0
    assert pacing.delay_before_send(c, T0) == 0.0

    pacing.observe(c, {"X-FloodControl-Remaining": "0", "X-FloodControl-Reset": "9"}, T0)
    assert pacing.delay_before_send(c, T0) == 9.0  # a small reset is relative
    pacing.block(c, T0 + 30)
    assert pacing.delay_before_send(c, T0) == 30.0
    pacing.observe(c, {"X-FloodControl-Remaining": "garbage", "X-FloodControl-Reset": "x"}, T0)
    assert pacing.delay_before_send(c, T0 + 31) == 0.0


def test_pacing_against_the_servers_flood_control(kind: str) -> None:
    clock = Clock()
    rooms = {"1234567": TOKEN}
    with (
        HipChatServer(rooms, limits=Limits(flood=3, flood_window=60.0), clock=clock) as server,
        make_client(kind, clock=clock) as client,
    ):
        tgt = target(server)
        for _ in range(3):
            assert client.delay_before_send(tgt) == 0.0
            assert client.send(tgt, message()).ok
        assert client.delay_before_send(tgt) == 60.0
        ignored = client.send(tgt, message())
        assert (ignored.outcome, ignored.status, ignored.retry_after) == ("retry", 429, 60.0)
        clock.now += 60
        assert client.delay_before_send(tgt) == 0.0
        assert client.send(tgt, message()).ok
        assert len(server.messages) == 4


def test_only_the_first_64_kib_of_an_answer_is_kept(server: HipChatServer, client: Client) -> None:
    # HipChat's error document with its message after 5 MB: read whole, it would show.
    huge = '{"pad": "' + "x" * 5_000_000 + '", "error": {"message": "kept only if read whole"}}'
    server.inject(Fault.status(500, body=huge))
    result = client.send(target(server), message())
    assert result.reason == "HTTP 500 Internal Server Error"


def test_retry_after_zero_still_waits_a_second(server: HipChatServer, client: Client) -> None:
    server.inject(Fault.rate_limited("0"))
    result = client.send(target(server), message())
    assert (result.outcome, result.retry_after) == ("retry", 1.0)


# What a server that is not HipChat may answer; each holds bytes that must never
# be repeated: not in a reason, not in a log line.
NOT_HTTP = {
    "smtp banner": b"220 mail.example.com ESMTP peer-secret-SMTP ready\r\n",
    "binary blob": bytes(range(256)) * 4 + b"peer-secret-BLOB",
    "http/0.9 body": b"peer-secret-H09 <html>hello</html>\n",
    "bad status": b"HTTP/1.1 2x0 peer-secret-STATUS\r\n\r\n",
    "bad header": b"HTTP/1.1 200 OK\r\n peer-secret-HEADER\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(NOT_HTTP))
def test_an_answer_that_is_not_http_is_its_class_and_never_its_bytes(
    server: HipChatServer, client: Client, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server.inject(Fault.answer_bytes(NOT_HTTP[name]))
    result = client.send(target(server), message())
    shown = [result.reason, caplog.text]
    for text in shown:
        assert "peer-secret" not in text and "ESMTP" not in text and "\\x" not in text
        assert all(c.isprintable() for c in text.replace("\n", "")), text
    if result.ok:
        return  # http.client reads a header it cannot parse as the end of the headers
    assert (result.outcome, result.status) == ("retry", None)
    assert result.reason.startswith("ConnectionError: ProtocolError"), result.reason


def test_a_transport_error_names_its_class_and_errno(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client.send(RoomTarget(f"http://127.0.0.1:{port}", "1", TOKEN), message())
    assert result.reason == (
        "ConnectionError: NewConnectionError (ConnectionRefusedError, errno 111 ECONNREFUSED)"
    )
