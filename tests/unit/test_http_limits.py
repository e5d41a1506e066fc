"""What the HTTP front takes as a body length, and how it routes, without sockets."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from syncd.service.http import (
    Request,
    Response,
    _App,
    _content_length,
    _framing_problem,
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


def environ(
    method: str = "GET", path: str = "/x", body: bytes = b"", **extra: str
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(body),
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
    app = _App({("POST", "/x"): seen}, max_body=100)
    env = environ(
        "POST",
        body=b"hello",
        QUERY_STRING="a=1&a=2",
        CONTENT_TYPE="text/plain",
        HTTP_X_SYNCD_TOKEN="t",
        HTTP_AUTHORIZATION="Bearer b",
    )
    status, headers, body = call(app, env)
    assert status == "200 OK"
    assert headers["Content-Length"] == str(len(body))
    assert json.loads(body) == {
        "query": {"a": ["1", "2"]},
        "headers": {
            "content-type": "text/plain",
            "content-length": "5",
            "x-syncd-token": "t",
            "authorization": "Bearer b",
        },
        "body": "hello",
    }


def test_an_unknown_path_is_a_404_and_another_method_a_405() -> None:
    app = _App({("POST", "/x"): seen}, max_body=100)
    status, _, body = call(app, environ("GET", "/nowhere"))
    assert (status, json.loads(body)["error"]["message"]) == ("404 Not Found", "Not Found")
    status, _, body = call(app, environ("GET", "/x"))
    assert (status, json.loads(body)["error"]["code"]) == ("405 Method Not Allowed", 405)


def test_a_body_over_the_limit_is_a_413_and_not_read() -> None:
    app = _App({("POST", "/x"): seen}, max_body=4)
    env = environ("POST", body=b"hello")
    status, _, body = call(app, env)
    assert status == "413 Request Entity Too Large"
    assert json.loads(body)["error"]["message"] == "request body over 4 bytes"
    assert env["wsgi.input"].tell() == 0


def test_a_failing_handler_is_logged_and_answered_500_without_its_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(_: Request) -> Response:
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="syncd.service.http"):
        status, _, body = call(_App({("GET", "/x"): boom}, max_body=100), environ())
    assert status == "500 Internal Server Error"
    assert json.loads(body) == {"error": {"code": 500, "message": "internal error"}}
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("handler for GET /x failed", True)
    ]


def test_a_head_request_gets_the_length_but_no_body() -> None:
    app = _App({("HEAD", "/x"): lambda _: Response.text(200, "four")}, max_body=100)
    status, headers, body = call(app, environ("HEAD"))
    assert (status, headers["Content-Length"], body) == ("200 OK", "4", b"")


def test_a_handler_header_goes_out() -> None:
    answer = Response(503, b"{}", headers={"Retry-After": "1"})
    _, headers, _ = call(_App({("GET", "/x"): lambda _: answer}, max_body=100), environ())
    assert headers["Retry-After"] == "1"
