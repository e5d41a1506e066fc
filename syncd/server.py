"""The daemon's HTTP front: a small router over the standard library's server.

Handlers are plain functions from :class:`Request` to :class:`Response`, so the
daemon wires what it serves and tests can call handlers without sockets.
"""

from __future__ import annotations

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
            declared = (self.headers.get("Content-Length") or "0").strip()
            if not declared.isdigit():
                self.close_connection = True
                self._send(Response.error(400, "Content-Length must be a whole number"))
                return
            length = int(declared)
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


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class HTTPServer:
    """A threaded server in a background thread; ``port`` 0 picks a free one."""

    def __init__(
        self, host: str, port: int, routes: Routes, *, max_body: int = MAX_BODY_BYTES
    ) -> None:
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, port), _handler_class(routes, max_body))
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise UsageError(
                f"cannot listen on {where} (--listen): {exc.strerror or exc}"
            ) from None
        self._server.daemon_threads = True
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
