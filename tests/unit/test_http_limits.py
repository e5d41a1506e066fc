"""What the HTTP front takes as a body length, a head, a Host and an Origin, how it routes,
and when it cuts a slow client or caps connections, without sockets."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from syncd.errors import UsageError
from syncd.service.http import (
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    HostPolicy,
    Pace,
    Request,
    Response,
    Run,
    _adjustments,
    _App,
    _content_length,
    _framing_problem,
    _Parser,
    authority,
    connection_cap,
)


@pytest.mark.parametrize(
    ("headers", "length"),
    [([], 0), (["12"], 12), ([" 12 "], 12), (["12", "12"], 12), (["0"], 0)],
)
def test_one_plain_number_is_the_length(headers: list[str], length: int) -> None:
    assert _content_length(headers) == length


@pytest.mark.parametrize(
    "headers",
    [["12", "13"], ["\xb2"], ["\u0663"], ["-1"], ["1e3"], [""], ["9" * 5000], ["0x10"]],
)
def test_anything_else_is_refused(headers: list[str]) -> None:
    assert _content_length(headers) is None


# --- framing: where a request's body ends ----------------------------------------


def head(*lines: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"\r\n".join([b"POST /v1/events " + version, b"Host: x", *lines]) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "lines",
    [
        (),
        (b"Content-Length: 12",),
        (b"content-length: 12", b"Content-Length: 12"),
        (b"Transfer-Encoding: chunked",),
        (b"TRANSFER-ENCODING: Chunked",),
        (b"Transfer-Encoding: \tchunked ",),
        (b"X-Thing: a: b", b"Content-Length: 0"),
    ],
)
def test_one_way_to_find_the_end_passes(lines: tuple[bytes, ...]) -> None:
    assert _framing_problem(head(*lines)) is None


@pytest.mark.parametrize(
    ("lines", "version", "problem"),
    [
        (
            (b"Content-Length: 5", b"Transfer-Encoding: chunked"),
            b"HTTP/1.1",
            "Content-Length and Transfer-Encoding may not be sent together",
        ),
        (
            (b"Transfer-Encoding: chunked", b"content-length: 5"),
            b"HTTP/1.1",
            "Content-Length and Transfer-Encoding may not be sent together",
        ),
        ((b"Transfer-Encoding: chunked",), b"HTTP/1.0", "Transfer-Encoding needs HTTP/1.1"),
        (
            (b"Transfer-Encoding: chunked, identity",),
            b"HTTP/1.1",
            "the only Transfer-Encoding accepted is chunked",
        ),
        (
            (b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
            b"HTTP/1.1",
            "the only Transfer-Encoding accepted is chunked",
        ),
        (
            (b"Transfer-Encoding: gzip",),
            b"HTTP/1.1",
            "the only Transfer-Encoding accepted is chunked",
        ),
        ((b"Transfer-Encoding:",), b"HTTP/1.1", "the only Transfer-Encoding accepted is chunked"),
        (
            (b"Content-Length: 2", b"Content-Length: 3"),
            b"HTTP/1.1",
            "Content-Length must be one whole number",
        ),
        ((b"Content-Length: \xb2",), b"HTTP/1.1", "Content-Length must be one whole number"),
        (
            (b"Content-Length: " + b"9" * 5000,),
            b"HTTP/1.1",
            "Content-Length must be one whole number",
        ),
        ((b"X-Note: a", b" b"), b"HTTP/1.1", "folded header lines are not accepted"),
        ((b"X-Note: a", b"\tb"), b"HTTP/1.1", "folded header lines are not accepted"),
    ],
)
def test_two_ways_to_find_the_end_are_refused(
    lines: tuple[bytes, ...], version: bytes, problem: str
) -> None:
    assert _framing_problem(head(*lines, version=version)) == problem


# --- the router as a WSGI application ------------------------------------------


LOOPBACK = HostPolicy.of("127.0.0.1", 8514)


def app(routes: dict[tuple[str, str], Any], max_body: int = 100) -> _App:
    return _App(routes, max_body, policy=LOOPBACK)


def environ(
    method: str = "GET", path: str = "/x", body: bytes = b"", **extra: str
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8514",
        "wsgi.input": io.BytesIO(body),
        **({"CONTENT_TYPE": "application/json"} if method == "POST" else {}),
        **extra,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def call(app: _App, env: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.append((status, headers))

    body = b"".join(app(env, start_response))
    [(status, headers)] = started
    return status, dict(headers), body


def seen(request: Request) -> Response:
    return Response.json(
        200,
        {
            "query": request.query,
            "headers": dict(request.headers),
            "body": request.body.decode(),
        },
    )


def test_a_request_reaches_its_handler_with_query_headers_and_body() -> None:
    env = environ(
        "POST",
        body=b"hello",
        QUERY_STRING="a=1&a=2",
        CONTENT_TYPE="application/json; charset=utf-8",
        HTTP_X_SYNCD_TOKEN="t",
        HTTP_AUTHORIZATION="Bearer b",
    )
    status, headers, body = call(app({("POST", "/x"): seen}), env)
    assert status == "200 OK"
    assert headers["Content-Length"] == str(len(body))
    assert json.loads(body) == {
        "query": {"a": ["1", "2"]},
        "headers": {
            "host": "127.0.0.1:8514",
            "content-type": "application/json; charset=utf-8",
            "content-length": "5",
            "x-syncd-token": "t",
            "authorization": "Bearer b",
        },
        "body": "hello",
    }


def test_an_unknown_path_is_a_404_and_another_method_a_405() -> None:
    router = app({("POST", "/x"): seen})
    status, _, body = call(router, environ("GET", "/nowhere"))
    assert (status, json.loads(body)["error"]["message"]) == ("404 Not Found", "Not Found")
    status, _, body = call(router, environ("GET", "/x"))
    assert (status, json.loads(body)["error"]["code"]) == ("405 Method Not Allowed", 405)


def test_a_body_over_the_limit_is_a_413_and_not_read() -> None:
    env = environ("POST", body=b"hello")
    status, _, body = call(app({("POST", "/x"): seen}, max_body=4), env)
    assert status == "413 Request Entity Too Large"
    assert json.loads(body)["error"]["message"] == "request body over 4 bytes"
    assert env["wsgi.input"].tell() == 0


def test_a_failing_handler_is_logged_and_answered_500_without_its_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(_: Request) -> Response:
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="syncd.service.http"):
        status, _, body = call(app({("GET", "/x"): boom}), environ())
    assert status == "500 Internal Server Error"
    assert json.loads(body) == {"error": {"code": 500, "message": "internal error"}}
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("handler for GET /x failed", True)
    ]


def test_a_head_request_gets_the_length_but_no_body() -> None:
    router = app({("HEAD", "/x"): lambda _: Response.text(200, "four")})
    status, headers, body = call(router, environ("HEAD"))
    assert (status, headers["Content-Length"], body) == ("200 OK", "4", b"")


def test_a_handler_header_goes_out() -> None:
    answer = Response(503, b"{}", headers={"Retry-After": "1"})
    _, headers, _ = call(app({("GET", "/x"): lambda _: answer}), environ())
    assert headers["Retry-After"] == "1"


# --- Host: which names this daemon answers to --------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8514", ("127.0.0.1", 8514)),
        ("LocalHost:8514", ("localhost", 8514)),
        ("syncd.example.com", ("syncd.example.com", None)),
        ("[::1]:8514", ("::1", 8514)),
        ("[0:0::1]", ("::1", None)),
        ("[::ffff:127.0.0.1]:1", ("::ffff:7f00:1", 1)),
        ("host:", ("host", None)),
        ("syncd.example.com.:1", ("syncd.example.com.", 1)),
    ],
)
def test_a_host_value_is_a_name_and_a_port(value: str, parsed: tuple[str, int | None]) -> None:
    assert authority(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        "::1",
        "[::1",
        "[127.0.0.1]:80",
        "[::1]x",
        "a:b:c",
        "host:80x",
        "host:99999",
        "host:+80",
        "host:٣",
        "a, b",
        "a b",
        "evil.example/x",
        "user@host",
        "-x",
        "x" * 10 + "é",
    ],
)
def test_anything_else_is_not_a_host_value(value: str) -> None:
    assert authority(value) is None


def answers(policy: HostPolicy, host: str) -> bool:
    parsed = authority(host)
    assert parsed is not None, host
    return policy.names_this_daemon(*parsed)


@pytest.mark.parametrize(
    ("bound", "host", "answered"),
    [
        ("127.0.0.1", "127.0.0.1:8514", True),
        ("127.0.0.1", "localhost:8514", True),
        ("127.0.0.1", "LOCALHOST:8514", True),
        ("127.0.0.1", "127.0.0.1:8515", False),
        ("127.0.0.1", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.2:8514", False),
        ("127.0.0.1", "evil.example:8514", False),
        ("127.0.0.1", "localhost.evil.example:8514", False),
        ("127.0.0.1", "[::1]:8514", False),
        ("::1", "[::1]:8514", True),
        ("::1", "[0::1]:8514", True),
        ("::1", "localhost:8514", True),
        ("::1", "127.0.0.1:8514", False),
        ("10.0.0.5", "10.0.0.5:8514", True),
        ("10.0.0.5", "localhost:8514", False),
        ("0.0.0.0", "10.1.2.3:8514", True),
        ("0.0.0.0", "localhost:8514", True),
        ("0.0.0.0", "[fe80::1]:8514", True),
        ("0.0.0.0", "10.1.2.3:80", False),
        ("0.0.0.0", "evil.example:8514", False),
        ("::", "127.0.0.1:8514", True),
        ("::", "evil.example:8514", False),
    ],
)
def test_the_listen_address_is_answered(bound: str, host: str, answered: bool) -> None:
    assert answers(HostPolicy.of(bound, 8514), host) is answered


def test_port_80_may_be_left_out() -> None:
    assert answers(HostPolicy.of("127.0.0.1", 80), "127.0.0.1")
    assert answers(HostPolicy.of("127.0.0.1", 80), "localhost")


def test_allowed_names_are_answered_on_any_port() -> None:
    policy = HostPolicy.of("127.0.0.1", 8514, ["Syncd.Example.com", "::1", "[fe80::2]", "10.0.0.9"])
    for host in ("syncd.example.com", "syncd.example.com:443", "[::1]:1", "[fe80::2]", "10.0.0.9"):
        assert answers(policy, host), host
    assert not answers(policy, "other.example.com")


def test_a_star_answers_every_name() -> None:
    assert answers(HostPolicy.of("127.0.0.1", 8514, ["*"]), "anything.example:1")


@pytest.mark.parametrize("entry", ["syncd.example.com:8514", "", "a b", "http://x", "[::1]:80"])
def test_an_allowed_name_that_is_not_one_is_a_usage_error(entry: str) -> None:
    with pytest.raises(UsageError) as raised:
        HostPolicy.of("127.0.0.1", 8514, [entry])
    assert str(raised.value) == (
        f"--allow-host {entry!r}: want a host name or address without a port, "
        "such as syncd.example.com"
    )


# --- requests a web page can make ------------------------------------------------


def ok(_: Request) -> Response:
    return Response.json(200, {"ok": True})


ROUTES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/events"): ok,
    ("GET", "/status"): ok,
    ("GET", "/healthz"): ok,
    ("GET", "/readyz"): ok,
}


def answer(env: dict[str, Any]) -> tuple[int, str]:
    status, _, body = call(app(ROUTES), env)
    payload = json.loads(body)
    return int(status.split()[0]), payload.get("error", {}).get("message", "")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/jsonx",
        "application/json-patch+json",
        "text/json",
    ],
)
def test_a_post_whose_body_is_not_labelled_json_is_a_415(content_type: str) -> None:
    env = environ("POST", "/v1/events", b"{}", CONTENT_TYPE=content_type)
    assert answer(env) == (415, "Content-Type must be application/json")


def test_a_post_with_no_content_type_is_a_415() -> None:
    env = environ("POST", "/v1/events", b"{}")
    del env["CONTENT_TYPE"]
    assert answer(env) == (415, "Content-Type must be application/json")


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON", "application/json; charset=utf-8"]
)
def test_a_post_labelled_json_is_taken(content_type: str) -> None:
    env = environ("POST", "/v1/events", b"{}", CONTENT_TYPE=content_type)
    assert answer(env) == (200, "")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:8515",
        "http://localhost:8514",
        "null",
        "http://127.0.0.1:8514, https://evil.example",
        "file://",
        "ftp://127.0.0.1:8514",
    ],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/events"), ("GET", "/status")])
def test_a_request_from_another_origin_is_a_403(origin: str, method: str, path: str) -> None:
    env = environ(method, path, b"{}" if method == "POST" else b"", HTTP_ORIGIN=origin)
    assert answer(env) == (403, "requests from web pages of other sites are refused (Origin)")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8514", "127.0.0.1:8514"),
        ("http://LOCALHOST:8514", "localhost:8514"),
        ("https://syncd.example.com", "syncd.example.com"),
        ("https://syncd.example.com", "syncd.example.com:443"),
    ],
)
def test_a_request_from_the_hosts_own_origin_is_taken(origin: str, host: str) -> None:
    policy = HostPolicy.of("127.0.0.1", 8514, ["syncd.example.com"])
    env = environ("GET", "/status", HTTP_ORIGIN=origin, HTTP_HOST=host)
    status, _, _ = call(_App(ROUTES, 100, policy=policy), env)
    assert status == "200 OK"


@pytest.mark.parametrize("host", ["evil.example:8514", "127.0.0.1:9999", "localhost.:8514"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/events"), ("GET", "/status")])
def test_a_host_that_does_not_name_the_daemon_is_a_421(host: str, method: str, path: str) -> None:
    env = environ(method, path, b"{}" if method == "POST" else b"", HTTP_HOST=host)
    status, message = answer(env)
    assert status == 421
    assert message == (
        f"Host {host} does not name this daemon (names to answer are added with --allow-host)"
    )


def test_a_host_that_is_not_one_name_is_a_400() -> None:
    env = environ("GET", "/status", HTTP_HOST="127.0.0.1:8514, evil.example")
    assert answer(env) == (400, "Host must be one host name or address, with an optional port")


def test_http_1_1_without_a_host_is_a_400_and_http_1_0_is_served() -> None:
    env = environ("GET", "/status")
    del env["HTTP_HOST"]
    assert answer(env) == (400, "a Host header is required")
    env["SERVER_PROTOCOL"] = "HTTP/1.0"
    assert answer(env) == (200, "")


def test_a_long_host_is_cut_in_the_answer() -> None:
    status, message = answer(environ("GET", "/status", HTTP_HOST="a" * 300))
    assert status == 421
    assert "a" * 100 + "... does not name" in message
    assert "a" * 101 not in message


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_whatever_the_host_and_origin(path: str) -> None:
    env = environ("GET", path, HTTP_HOST="10.244.1.7:8514", HTTP_ORIGIN="https://evil.example")
    assert answer(env) == (200, "")


def test_a_foreign_host_learns_nothing_of_the_routes() -> None:
    assert answer(environ("GET", "/nowhere", HTTP_HOST="evil.example:8514"))[0] == 421


# --- slow clients ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "received", "head_done", "verdict"),
    [
        (0.0, 0, False, None),
        (5.0, 0, False, None),
        (5.1, 0, False, "request sent slower than 1024 bytes/s"),
        (6.0, 1024, False, None),
        (6.1, 1024, False, "request sent slower than 1024 bytes/s"),
        (9.9, 60_000, False, None),
        (10.1, 60_000, False, "request line and headers not received within 10 s"),
        (30.0, 40_000, True, None),
        (45.0, 40_000, True, "request sent slower than 1024 bytes/s"),
    ],
)
def test_a_request_is_cut_at_the_deadline_or_below_the_rate(
    elapsed: float, received: int, head_done: bool, verdict: str | None
) -> None:
    assert Pace().verdict(elapsed, received, head_done) == verdict


def test_a_run_is_logged_at_its_start_and_its_end() -> None:
    run = Run(quiet=30)
    assert run.hit(0) is True
    assert [run.hit(t) for t in (1, 20, 45)] == [False, False, False]
    assert run.end(70) == 0
    assert run.end(76) == 4
    assert run.end(77) == 0
    assert run.hit(78) is True
    # A run left unended by a quiet spell: the next hit starts another.
    assert run.hit(200) is True


@pytest.mark.parametrize(
    ("limit", "open_now", "cap"),
    [
        (None, 10, 512),
        (1_048_576, 10, 512),
        (1024, 20, 512),
        (512, 20, 362),
        (256, 20, 106),
        (128, 20, 26),
        (64, 20, 10),
        (10, 20, 1),
    ],
)
def test_the_connection_cap_leaves_descriptors_to_the_rest(
    limit: int | None, open_now: int, cap: int
) -> None:
    assert connection_cap(512, limit, open_now, reserved=128) == cap


# --- the head: read in linear time, with a count of fields ---------------------------


def parser() -> Any:
    return _Parser(_adjustments(100, 10, 30))


def test_a_head_sent_a_byte_at_a_time_is_joined_once() -> None:
    request = parser()
    head = b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n"
    for n, byte in enumerate(head[:-1], 1):
        assert request.received(bytes([byte])) == 1
        assert (request.header_plus, request.header_bytes_received) == (b"", n)
    request.received(head[-1:])
    assert request.completed and request.error is None
    assert request.headers["X_A"] == "a" * 5000


@pytest.mark.parametrize("cut", range(1, 5))
def test_the_end_of_a_head_split_across_reads_is_found(cut: int) -> None:
    request = parser()
    head = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
    request.received(head[:-cut])
    assert not request.completed
    request.received(head[-cut:] + b"GET /next")
    assert request.completed and request.error is None


def test_more_header_fields_than_the_limit_are_a_431_in_kind() -> None:
    request = parser()
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADER_FIELDS + 1))
    request.received(b"GET /x HTTP/1.1\r\n" + fields + b"\r\n")
    assert request.completed
    assert (request.error.code, request.error.body) == (
        431,
        f"more than {MAX_HEADER_FIELDS} header fields",
    )
    assert request.version == "1.1"


def test_a_head_over_the_size_limit_is_a_431_in_kind() -> None:
    request = parser()
    request.received(b"GET /x HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEADER_BYTES)
    assert request.completed
    assert (request.error.code, request.version) == (431, "1.1")
