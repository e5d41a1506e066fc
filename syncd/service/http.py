"""The daemon's HTTP front: a small router over the standard library's server.

Handlers are plain functions from :class:`Request` to :class:`Response`, so the
daemon wires what it serves and tests can call handlers without sockets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncd.errors import UsageError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
REQUEST_TIMEOUT = 30.0


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


def _handler_class(routes: Routes, max_body: int) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "syncd"
        # Headers and body go out in two writes; without this, Nagle holds the
        # body of a kept-alive connection's answer for the client's delayed ACK.
        disable_nagle_algorithm = True
        # A client that stalls mid-request frees its thread after this long.
        timeout = REQUEST_TIMEOUT

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            handler = routes.get((self.command, url.path))
            if handler is None:
                known = any(path == url.path for _, path in routes)
                status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
                self._send(Response.error(status, status.phrase))
                return
            length = _content_length(self.headers.get_all("Content-Length") or [])
            if length is None:
                self.close_connection = True
                self._send(Response.error(400, "Content-Length must be one whole number"))
                return
            if length > max_body:
                self.close_connection = True
                self._send(Response.error(413, f"request body over {max_body} bytes"))
                return
            body = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                url.path,
                parse_qs(url.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            try:
                response = handler(request)
            except Exception:
                log.exception("handler for %s %s failed", self.command, url.path)
                response = Response.error(500, "internal error")
            self._send(response)

        do_GET = do_POST = do_PUT = do_DELETE = _dispatch

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return _Handler


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


_MAX_LENGTH_DIGITS = 18
LISTEN_BACKLOG = 128
MAX_CONNECTIONS = 512


class _Server(ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` served at once; beyond that, a 503 and close.

    Each connection holds a thread and a file descriptor; idle ones left open
    by many clients would otherwise use up the descriptor limit and stop all
    ingest. The backlog absorbs bursts of new connections without resets.
    """

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        self._active = 0
        self._active_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1


def _refuse_busy(connection: socket.socket) -> None:
    body = b'{"error": {"code": 503, "message": "too many connections; retry later"}}\n'
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        connection.settimeout(1.0)
        connection.sendall(head.encode() + body)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class HTTPServer:
    """A threaded server in a background thread; ``port`` 0 picks a free one."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: Routes,
        *,
        max_body: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        server_class: type[_Server] = _IPv6Server if ":" in host else _Server
        try:
            self._server = server_class((host, port), _handler_class(routes, max_body))
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise UsageError(
                f"cannot listen on {where} (--listen): {exc.strerror or exc}"
            ) from None
        self._server.max_connections = max_connections
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="syncd-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
