"""The daemon's HTTP front: a small router served by waitress.

Handlers are plain functions from :class:`Request` to :class:`Response`, so the
daemon wires what it serves and tests can call handlers without sockets.
Waitress parses HTTP; on top of it, a request whose body length two parsers
could read differently is refused, since the difference is how a request is
smuggled past a proxy, and waitress's own refusals keep the API's JSON shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from waitress import adjustments, channel, parser, server, task, wasyncore  # type: ignore[import-untyped]

from syncd.errors import UsageError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# Request line and headers together; enough for any client of the API, and
# what a connection can make the server hold before its body starts.
MAX_HEADER_BYTES = 64 << 10
REQUEST_TIMEOUT = 30.0
LISTEN_BACKLOG = 128
MAX_CONNECTIONS = 512
# Handlers block: ``POST /-/reload`` waits for a reconcile, an ingest for its
# write transaction. Eight leave the probes and ingest served while a few of
# those wait; more would only queue up on the store's single writer.
THREADS = 8
# How long ``stop()`` lets handlers in flight finish their answers.
STOP_GRACE = 1.0
# Waitress counts its listening socket and its wake-up pipe as connections.
_WAITRESS_OWN_SOCKETS = 2
_MAX_LENGTH_DIGITS = 18


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, (json.dumps(payload, indent=2) + "\n").encode())

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), f"{content_type}; charset=utf-8")

    @classmethod
    def error(cls, status: int, message: str, **extra: Any) -> Response:
        return cls.json(status, {"error": {"code": status, "message": message, **extra}})


Handler = Callable[[Request], Response]
Routes = Mapping[tuple[str, str], Handler]
StartResponse = Callable[[str, list[tuple[str, str]]], object]


class _App:
    """The router behind a WSGI face, so waitress only speaks HTTP and handlers stay plain."""

    def __init__(self, routes: Routes, max_body: int) -> None:
        self._routes = routes
        self._max_body = max_body

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        response = self.respond(environ)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers.items(),
        ]
        start_response(_status_line(response.status), headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [response.body]

    def respond(self, environ: Mapping[str, Any]) -> Response:
        """The handler's answer, or a bare 500 when it raises.

        A traceback would show the caller the daemon's insides; it goes to the log.
        """
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        handler = self._routes.get((method, path))
        if handler is None:
            known = any(route_path == path for _, route_path in self._routes)
            status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
            return Response.error(status, status.phrase)
        body = self._body(environ)
        if isinstance(body, Response):
            return body
        request = Request(
            method, path, parse_qs(environ.get("QUERY_STRING", "")), _headers(environ), body
        )
        try:
            return handler(request)
        except Exception:
            log.exception("handler for %s %s failed", method, path)
            return Response.error(500, "internal error")

    def _body(self, environ: Mapping[str, Any]) -> bytes | Response:
        """The body, or the refusal; an oversized one is not read at all.

        Waitress refuses bodies over the limit before they reach here; this
        keeps the limit for any other server the application is put behind.
        """
        declared = environ.get("CONTENT_LENGTH")
        length = _content_length([declared] if declared else [])
        if length is None:
            return Response.error(400, "Content-Length must be one whole number")
        if length > self._max_body:
            return Response.error(413, f"request body over {self._max_body} bytes")
        return bytes(environ["wsgi.input"].read(length)) if length else b""


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """Headers by the names clients write, lower-cased, as handlers look them up.

    WSGI renames them (``HTTP_X_TOKEN``) and keeps two without the prefix.
    """
    headers = {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if name in environ:
            headers[name.replace("_", "-").lower()] = str(environ[name])
    return headers


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def _content_length(values: list[str]) -> int | None:
    """The body length the headers declare; None when they are not one plain number.

    Two different Content-Length headers are how request smuggling starts, and
    ``int()`` takes digits ("²", "٣") that no client means, so only ASCII
    digits count, and a number too long to mean anything is refused.
    """
    distinct = {v.strip() for v in values}
    if len(distinct) > 1:
        return None
    declared = distinct.pop() if distinct else "0"
    if not (declared.isascii() and declared.isdigit()) or len(declared) > _MAX_LENGTH_DIGITS:
        return None
    return int(declared)


def _framing_problem(head: bytes) -> str | None:
    """Why a request's head lets its body end in two places; None when it does not.

    A proxy in front that found the end elsewhere would pass what follows as
    a request it never saw. RFC 9112 lets a server refuse each of these;
    waitress alone would take some: a length beside ``chunked``, which it
    ignores, a folded line, which it joins, ``chunked`` in HTTP/1.0, where it
    reads by length, and a length of thousands of digits, which ``int()``
    rejects with an error waitress does not answer.
    """
    request_line, *lines = head.split(b"\r\n")
    if any(line[:1] in (b" ", b"\t") for line in lines):
        return "folded header lines are not accepted"
    values: dict[bytes, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        values.setdefault(name.lower(), []).append(value.strip(b" \t").decode("latin-1"))
    lengths = values.get(b"content-length", [])
    codings = values.get(b"transfer-encoding")
    if codings is not None:
        return _coding_problem(codings, bool(lengths), request_line)
    if _content_length(lengths) is None:
        return "Content-Length must be one whole number"
    return None


def _coding_problem(codings: list[str], has_length: bool, request_line: bytes) -> str | None:
    if has_length:
        return "Content-Length and Transfer-Encoding may not be sent together"
    if not request_line.rstrip().endswith(b" HTTP/1.1"):
        return "Transfer-Encoding needs HTTP/1.1"
    if [coding.lower() for coding in codings] != ["chunked"]:
        return "the only Transfer-Encoding accepted is chunked"
    return None


class _Parser(parser.HTTPRequestParser):  # type: ignore[misc]
    def parse_header(self, header_plus: bytes) -> None:
        problem = _framing_problem(header_plus)
        if problem is not None:
            # Refused before waitress reads the version, which the answer repeats.
            if header_plus.split(b"\r\n", 1)[0].rstrip().endswith(b" HTTP/1.1"):
                self.version = "1.1"
            raise parser.ParsingError(problem)
        super().parse_header(header_plus)


class _ErrorTask(task.ErrorTask):  # type: ignore[misc]
    """Waitress's refusals (400, 413, 431) in the JSON the API's clients read errors from."""

    def execute(self) -> None:
        error = self.request.error
        message: str = error.body
        if error.code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            message = f"request body over {self.channel.server.max_body} bytes"
        response = Response.error(error.code, message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", response.content_type))
        self.set_close_on_finish()
        self.content_length = len(response.body)
        self.write(response.body)


class _Channel(channel.HTTPChannel):  # type: ignore[misc]
    parser_class = _Parser
    error_task_class = _ErrorTask


class _Server(server.TcpWSGIServer):  # type: ignore[misc]
    """At most ``max_connections`` served at once; beyond that, a 503 and close.

    Each connection holds a descriptor; idle ones left open by many clients
    would otherwise use up the descriptor limit and stop all ingest. Waitress
    alone stops accepting at its limit, leaving a client beyond it waiting in
    the backlog with no answer; a 503 with Retry-After tells it to come back.
    """

    channel_class = _Channel

    def __init__(
        self,
        app: _App,
        listener: socket.socket,
        adj: Any,
        dispatcher: Any,
        sockets: dict[int, Any],
        *,
        max_body: int,
        max_connections: int,
    ) -> None:
        self.max_body = max_body
        self.max_connections = max_connections
        self.draining = False
        sockinfo = (listener.family, listener.type, listener.proto, listener.getsockname())
        super().__init__(
            app,
            map=sockets,
            _sock=listener,
            dispatcher=dispatcher,
            adj=adj,
            bind_socket=False,
            sockinfo=sockinfo,
        )

    def readable(self) -> bool:
        # Waitress sweeps idle connections here; ``draining`` stops accepting.
        accepting = bool(super().readable())
        return accepting and not self.draining

    def handle_accept(self) -> None:
        if len(self.active_channels) < self.max_connections:
            super().handle_accept()
            return
        with contextlib.suppress(OSError):
            accepted = self.accept()
            if accepted is not None:
                _refuse_busy(accepted[0])

    def set_socket_options(self, conn: socket.socket) -> None:
        # Headers and body may go out in two writes; without this, Nagle holds
        # the body of a kept-alive connection's answer for the client's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _refuse_busy(connection: socket.socket) -> None:
    body = Response.error(503, "too many connections; retry later").body
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    with connection, contextlib.suppress(OSError):
        connection.setblocking(False)
        connection.send(head.encode() + body)
        # Closing with the request unread would reset the connection, and a
        # reset can overtake the answer; read what has arrived so far.
        connection.recv(MAX_HEADER_BYTES)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a failure reads as the system's own words."""
    try:
        return _bound(host, port)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise UsageError(f"cannot listen on {where} (--listen): {exc.strerror or exc}") from None


def _bound(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except BaseException:
        listener.close()
        raise
    return listener


class HTTPServer:
    """Waitress in a background thread; ``port`` 0 picks a free one.

    ``request_timeout`` cuts a client that stalls mid-request or sits idle
    between requests; waitress counts it in whole seconds, at least one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Routes,
        *,
        max_body: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        listener = _listen(host, port)
        bound_host, bound_port = listener.getsockname()[:2]
        self._address = (str(bound_host), int(bound_port))
        # Every socket the server polls, so ``stop()`` can close them all.
        self._sockets: dict[int, Any] = {}
        try:
            self._dispatcher = task.ThreadedTaskDispatcher()
            self._server = _Server(
                _App(routes, max_body),
                listener,
                _adjustments(max_body, max_connections, request_timeout),
                self._dispatcher,
                self._sockets,
                max_body=max_body,
                max_connections=max_connections,
            )
        except BaseException:
            wasyncore.close_all(self._sockets)
            listener.close()
            raise
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="syncd-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._dispatcher.set_thread_count(THREADS)
        self._thread.start()

    def _serve(self) -> None:
        """Waitress's event loop, with a way out that leaves its sockets open.

        Closing them from inside the loop would race ``stop()`` waking it: the
        wake-up pipe could be closed, its number reused by another file, and
        the wake-up byte written there.
        """
        while not self._stopping.is_set():
            # poll(), as select() fails on descriptors past 1024, which a busy daemon can reach.
            wasyncore.loop(timeout=1, use_poll=True, map=self._sockets, count=1)

    def stop(self) -> None:
        """Stop accepting, give handlers in flight ``STOP_GRACE`` to answer, close the rest.

        Called at daemon shutdown, so it does not wait longer for a handler
        that itself waits (``POST /-/reload`` on a reconcile).
        """
        self._server.draining = True
        self._dispatcher.shutdown(timeout=STOP_GRACE)
        self._stopping.set()
        if self._thread.is_alive():
            self._server.pull_trigger()
            self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("the HTTP server's loop did not stop; its sockets stay open")
            return
        wasyncore.close_all(self._sockets)


def _adjustments(max_body: int, max_connections: int, request_timeout: float) -> Any:
    return adjustments.Adjustments(
        ident="syncd",
        backlog=LISTEN_BACKLOG,
        # One above the cap, so the connection beyond it is accepted and answered 503.
        connection_limit=max_connections + _WAITRESS_OWN_SOCKETS + 1,
        channel_timeout=max(1, math.ceil(request_timeout)),
        # Waitress looks for timed-out connections this often (seconds); a sweep
        # over at most ``max_connections`` is cheap next to the timeout it serves.
        cleanup_interval=1,
        max_request_header_size=MAX_HEADER_BYTES,
        # Waitress refuses a body of exactly its limit; ``max_body`` is the largest taken.
        max_request_body_size=max_body + 1,
        # Handlers read the whole body into memory anyway; spilling it to a file
        # first would only add a descriptor and a disk write per large request.
        inbuf_overflow=max_body + 1,
        # A client that disconnects mid-answer is not the daemon's problem.
        log_socket_errors=False,
    )
