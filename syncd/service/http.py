"""The daemon's HTTP front: a small router served by waitress.

Handlers are plain functions from :class:`Request` to :class:`Response`, so the
daemon wires what it serves and tests can call handlers without sockets.
Waitress parses HTTP; on top of it, a request whose body length two parsers
could read differently is refused, since the difference is how a request is
smuggled past a proxy, and waitress's own refusals keep the API's JSON shape.

A caller is anyone who can open a connection, and a web page in a browser on
the host is one: with no ingest token, nothing but the checks here tells its
requests from the CLI's. So a request must name this daemon in ``Host`` (a
DNS-rebinding page names its own domain), carry no foreign ``Origin`` (a
cross-site form or fetch), and post JSON as JSON (a ``text/plain`` body is
what a page may send without asking first). And since every connection holds
a descriptor and a slot, one that sends slowly or not at all gives its slot
up to a newcomer, and the slots are as many as the descriptor limit allows.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import math
import os
import re
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from waitress import (  # type: ignore[import-untyped]
    adjustments,
    channel,
    parser,
    server,
    task,
    utilities,
    wasyncore,
)

from syncd.errors import UsageError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# Request line and headers together; enough for any client of the API, and
# what a connection can make the server hold before its body starts.
MAX_HEADER_BYTES = 64 << 10
# Header fields of one request; the CLI sends five or six.
MAX_HEADER_FIELDS = 100
REQUEST_TIMEOUT = 30.0
# A request's line and headers must have come whole this long after the
# connection opened (or, on a kept-alive one, after their first byte), and
# past half of it, its bytes at MIN_RATE on average: a client trickling a byte
# at a time is cut however often it sends.
HEADER_TIMEOUT = 10.0
MIN_RATE = 1024.0
LISTEN_BACKLOG = 128
MAX_CONNECTIONS = 512
# Descriptors left to the rest of the daemon when the descriptor limit sets the
# connection cap: one socket per delivery worker at the default ``--workers``
# (64), and 64 for the outbox's files, the watcher, git's pipes, log files and
# answers large enough to spill to a temporary file.
RESERVED_DESCRIPTORS = 128
# How long accepting pauses when accept() fails for want of descriptors and no
# connection can give one up; without a pause the pending connection keeps the
# listener readable and the loop spins.
ACCEPT_PAUSE = 0.5
# A run of accept() failures or of connections beyond the cap is over once this
# long passes without another; each run is logged when it starts and ends.
RUN_QUIET = 30.0
# Probes answer whatever the Host and Origin: a failed probe restarts or
# unroutes the daemon, a probe's Host is whatever the orchestrator or load
# balancer puts there, and all a probe tells a page is that the daemon runs.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# Handlers block: ``POST /-/reload`` waits for a reconcile, an ingest for its
# write transaction. Eight leave the probes and ingest served while a few of
# those wait; more would only queue up on the store's single writer.
THREADS = 8
# How long ``stop()`` lets handlers in flight finish their answers.
STOP_GRACE = 1.0
# Waitress counts its listening socket and its wake-up pipe as connections.
_WAITRESS_OWN_SOCKETS = 2
# The wake-up pipe's two ends, opened after the descriptors are counted.
_PIPE_DESCRIPTORS = 2
_MAX_LENGTH_DIGITS = 18
# accept() errors that mean no descriptor or buffer was free, not a bad peer.
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# A DNS name (a final dot allowed) or an IPv4 address, lower-cased.
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]*[a-z0-9])?\.?", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    def json(cls, status: int, payload: Any, *, compact: bool = False) -> Response:
        """Indented for a person with curl, unless ``compact``."""
        text = (
            json.dumps(payload, separators=(",", ":")) if compact else json.dumps(payload, indent=2)
        )
        return cls(status, (text + "\n").encode())

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), f"{content_type}; charset=utf-8")

    @classmethod
    def error(cls, status: int, message: str, **extra: Any) -> Response:
        return cls.json(status, {"error": {"code": status, "message": message, **extra}})


Handler = Callable[[Request], Response]
Routes = Mapping[tuple[str, str], Handler]
StartResponse = Callable[[str, list[tuple[str, str]]], object]


def _address(text: str) -> str | None:
    """An IP address written the one way ``ipaddress`` writes it; None for a name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _split_authority(value: str) -> tuple[str, str] | None:
    """The name (lower-cased, an address normalised) and the port text of ``host[:port]``."""
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        name = _address(inside) if bracket else None
        if name is None or ":" not in name or rest[:1] not in ("", ":"):
            return None
        return name, rest[1:]
    name, _, port = value.lower().partition(":")
    if not _HOST_NAME.fullmatch(name):
        return None
    return _address(name) or name, port


def authority(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` value (or what follows an Origin's scheme) as name and port; None when
    it is not one host name or address with an optional port.

    ``[0:0::1]:80`` and ``[::1]:80`` come out the same, so each is checked once.
    """
    split = _split_authority(value)
    if split is None:
        return None
    name, port = split
    if not port:
        return name, None
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > 0xFFFF:
        return None
    return name, int(port)


def _allowed_name(entry: str) -> str:
    if entry == "*":
        return entry
    parsed = authority(f"[{entry}]" if _address(entry) and ":" in entry else entry)
    if parsed is None or parsed[1] is not None:
        raise UsageError(
            f"--allow-host {entry!r}: want a host name or address without a port, "
            "such as syncd.example.com"
        )
    return parsed[0]


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` values name this daemon: its listen address, or a name the operator adds.

    A DNS-rebinding page reaches the daemon under a name it owns, so only
    names the daemon knows are answered: the address it is bound to (with its
    port), ``localhost`` when that address is loopback, and when it is bound
    to every address (``0.0.0.0``, ``::``) any address written as one, since a
    page cannot rebind an address. ``*`` among the allowed names turns the
    check off, for a proxy in front that checks Host itself.
    """

    address: str
    port: int
    allowed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, address: str, port: int, allowed: Iterable[str] = ()) -> HostPolicy:
        """Raises :class:`UsageError` for an allowed name that is not one."""
        return cls(_address(address) or address, port, frozenset(map(_allowed_name, allowed)))

    def names_this_daemon(self, name: str, port: int | None) -> bool:
        if "*" in self.allowed or name in self.allowed:
            return True
        return (80 if port is None else port) == self.port and self._is_listen_address(name)

    def _is_listen_address(self, name: str) -> bool:
        bound = ipaddress.ip_address(self.address)
        if name == "localhost":
            return bound.is_loopback or bound.is_unspecified
        if bound.is_unspecified:
            return _address(name) is not None
        return name == self.address


def _host_refusal(policy: HostPolicy, environ: Mapping[str, Any]) -> Response | None:
    host = environ.get("HTTP_HOST")
    if host is None:
        # A browser always sends Host; HTTP/1.0 tools may not, and need not.
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
            return None
        return Response.error(400, "a Host header is required")
    parsed = authority(host)
    if parsed is None:
        return Response.error(400, "Host must be one host name or address, with an optional port")
    if policy.names_this_daemon(*parsed):
        return None
    shown = host if len(host) <= 100 else host[:100] + "..."
    return Response.error(
        421, f"Host {shown} does not name this daemon (names to answer are added with --allow-host)"
    )


def _origin_refusal(environ: Mapping[str, Any]) -> Response | None:
    """A request from a web page of another site: the only Origin taken is the Host's own.

    The daemon serves no pages, so nothing it trusts sends an Origin at all;
    browsers send one with every POST, form or fetch alike.
    """
    origin = environ.get("HTTP_ORIGIN")
    if origin is None or _same_origin(origin, environ.get("HTTP_HOST")):
        return None
    return Response.error(403, "requests from web pages of other sites are refused (Origin)")


def _same_origin(origin: str, host: str | None) -> bool:
    scheme, sep, rest = origin.partition("://")
    default_port = _DEFAULT_PORTS.get(scheme.lower())
    theirs = authority(rest) if sep and default_port else None
    ours = authority(host) if host else None
    if theirs is None or ours is None or default_port is None:
        return False
    (their_name, their_port), (our_name, our_port) = theirs, ours
    their_port = default_port if their_port is None else their_port
    return their_name == our_name and our_port in (None, their_port)


def _media_refusal(method: str, environ: Mapping[str, Any]) -> Response | None:
    """Any body but JSON labelled as JSON: what a page may post without a CORS preflight
    (text/plain, a form, or a body with no type at all) is refused before it is read."""
    if method in ("GET", "HEAD"):
        return None
    media = str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip(" \t").lower()
    if media == "application/json":
        return None
    return Response.error(415, "Content-Type must be application/json")


class _App:
    """The router behind a WSGI face, so waitress only speaks HTTP and handlers stay plain."""

    def __init__(
        self,
        routes: Routes,
        max_body: int,
        *,
        policy: HostPolicy,
        probes: Iterable[str] = PROBE_PATHS,
    ) -> None:
        self._routes = routes
        self._max_body = max_body
        self._policy = policy
        self._probes = frozenset(probes)

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
        refusal = self._refusal(environ, method, path)
        if refusal is not None:
            return refusal
        handler = self._routes[(method, path)]
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

    def _refusal(self, environ: Mapping[str, Any], method: str, path: str) -> Response | None:
        """Why no handler sees the request: it is not for this daemon (400, 421), it comes
        from another site's page (403), there is no such route (404, 405) or its body is
        not JSON (415). Checked in that order, so a page learns nothing of the routes."""
        if path not in self._probes:
            refusal = _host_refusal(self._policy, environ) or _origin_refusal(environ)
            if refusal is not None:
                return refusal
        if (method, path) not in self._routes:
            known = any(route_path == path for _, route_path in self._routes)
            status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
            return Response.error(status, status.phrase)
        return _media_refusal(method, environ)

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


def _version_of(head: bytes) -> str:
    """The HTTP version a request's first line names, for an answer in kind."""
    request_line = head.lstrip(b"\r\n").split(b"\r\n", 1)[0].rstrip()
    return "1.1" if request_line.endswith(b" HTTP/1.1") else "1.0"


class _Parser(parser.HTTPRequestParser):  # type: ignore[misc]
    """Waitress's parser, refusing more and reading a head in time linear in its size."""

    header_bytes_received: int

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        # The head so far, in the pieces it came in: waitress joins them on every
        # read and searches the whole for its end, which a client sending a byte
        # per packet turns into time in the square of the head's size.
        self._pieces: list[bytes] = []
        self._tail = b""

    def received(self, data: bytes) -> int:
        if self.completed or self.headers_finished:
            return int(super().received(data))
        window = self._tail + data
        size = self.header_bytes_received + len(data)
        if b"\r\n\r\n" not in window and size < self.adj.max_request_header_size:
            self._pieces.append(data)
            self._tail = window[-3:]
            self.header_bytes_received = size
            return len(data)
        self.header_plus = b"".join(self._pieces)
        self._pieces = []
        head = self.header_plus + data[:8192]
        consumed = int(super().received(data))
        if self.error is not None:
            # Refused before waitress read the version, which the answer repeats.
            self.version = _version_of(head)
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        # The request line and the blank line end with the others.
        if header_plus.count(b"\r\n") - 2 > MAX_HEADER_FIELDS:
            super().parse_header(b"GET / HTTP/1.0\r\n")
            self.error = utilities.RequestHeaderFieldsTooLarge(
                f"more than {MAX_HEADER_FIELDS} header fields"
            )
            return
        problem = _framing_problem(header_plus)
        if problem is not None:
            raise parser.ParsingError(problem)
        super().parse_header(header_plus)


class _ErrorTask(task.ErrorTask):  # type: ignore[misc]
    """Waitress's refusals (400, 413, 431) in the JSON the API's clients read errors from."""

    def execute(self) -> None:
        error = self.request.error
        message: str = error.body
        if error.code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            message = f"request body over {self.channel.server.max_body} bytes"
        elif message.startswith("exceeds max_header"):
            message = f"request line and headers over {MAX_HEADER_BYTES} bytes"
        response = Response.error(error.code, message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", response.content_type))
        self.set_close_on_finish()
        self.content_length = len(response.body)
        self.write(response.body)


@dataclass(frozen=True)
class Pace:
    """How slowly a request may come: its line and headers within ``header_timeout``, and
    past half of that, all its bytes at ``min_rate`` a second on average.

    Waitress alone cuts only a client that sends nothing for its timeout; one
    byte now and then kept a slot forever.
    """

    header_timeout: float = HEADER_TIMEOUT
    min_rate: float = MIN_RATE

    def __post_init__(self) -> None:
        if not (self.header_timeout > 0 and self.min_rate > 0):
            raise ValueError(f"header_timeout and min_rate must be positive: {self}")

    def verdict(self, elapsed: float, received: int, head_done: bool) -> str | None:
        """Why a request ``elapsed`` seconds along with ``received`` bytes is cut; None if not."""
        if not head_done and elapsed > self.header_timeout:
            return f"request line and headers not received within {self.header_timeout:g} s"
        if elapsed > self.header_timeout / 2 + received / self.min_rate:
            return f"request sent slower than {self.min_rate:g} bytes/s"
        return None


class Run:
    """Like events (accept() failing, connections beyond the cap) counted in runs, so an
    attack that keeps them coming is logged when it starts and once it is over, not once
    per event: a run ends when ``quiet`` seconds pass without one.
    """

    def __init__(self, quiet: float = RUN_QUIET) -> None:
        self.quiet = quiet
        self.count = 0
        self.last = -math.inf

    def hit(self, now: float) -> bool:
        """Count one at ``now``; True when it starts a run."""
        starts = self.count == 0 or now - self.last > self.quiet
        self.count = 1 if starts else self.count + 1
        self.last = now
        return starts

    def end(self, now: float) -> int:
        """How many the run had, if it is over by ``now``; 0 when none has just ended."""
        if not self.count or now - self.last <= self.quiet:
            return 0
        count, self.count = self.count, 0
        return count


class _Channel(channel.HTTPChannel):  # type: ignore[misc]
    """A connection that knows how long its current request has been coming.

    ``began`` is when the connection opened, or when the first byte of a
    later request came; None between requests, which waitress's idle timeout
    bounds. Touched by the server's loop thread only.
    """

    parser_class = _Parser
    error_task_class = _ErrorTask

    def __init__(self, owner: _Server, sock: socket.socket, addr: Any, adj: Any, **kw: Any) -> None:
        self.began: float | None = owner.clock()
        self.last_seen: float = self.began
        super().__init__(owner, sock, addr, adj, **kw)

    def received(self, data: bytes) -> bool:
        now = self.server.clock()
        self.last_seen = now
        if self.began is None:
            self.began = now
        before = self.request
        result = bool(super().received(data))
        if self.request is None:
            self.began = None
        elif before is not None and self.request is not before:
            # A pipelined request began in the same read as the last one ended.
            self.began = now
        return result

    def waiting(self) -> bool:
        """Waiting on its client, with no request in hand and no answer left to send:
        the server may close it."""
        busy = self.requests or self.total_outbufs_len
        return not (busy or self.will_close or self.close_when_flushed)

    def waiting_since(self) -> float:
        return self.last_seen if self.began is None else self.began

    def too_slow(self, pace: Pace, now: float) -> str | None:
        if self.began is None or not self.waiting():
            return None
        request = self.request
        if request is None:
            return pace.verdict(now - self.began, 0, head_done=False)
        received = int(request.header_bytes_received) + int(request.body_bytes_received)
        return pace.verdict(now - self.began, received, bool(request.headers_finished))

    def cut(self, reason: str) -> None:
        """Close; a client that sent part of a request is told why with a 408 first."""
        if self.request is None:
            self.will_close = True
            return
        answer = _raw_answer(408, reason)
        with self.outbuf_lock:
            self.outbufs[-1].append(answer)
            self.total_outbufs_len += len(answer)
        self.close_when_flushed = True


class _Server(server.TcpWSGIServer):  # type: ignore[misc]
    """At most ``max_connections`` at once; a newcomer beyond them takes the slot of the
    connection that has waited longest without a whole request, or gets a 503.

    Each connection holds a descriptor; idle or trickling ones left open by
    many clients would otherwise hold every slot, and a client beyond them
    would be refused however briefly it needed one. Waitress alone stops
    accepting at its limit, leaving a client beyond it waiting in the backlog
    with no answer; a 503 with Retry-After tells it to come back.
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
        pace: Pace,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_body = max_body
        self.max_connections = max_connections
        self.pace = pace
        self.clock = clock
        self.draining = False
        self.crowded = Run()
        self.accept_failures = Run()
        self.accept_paused_until = -math.inf
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
        paused = self.clock() < self.accept_paused_until
        return accepting and not self.draining and not paused

    def maintenance(self, now: float) -> None:
        """Waitress's idle timeout, then the requests coming too slowly."""
        super().maintenance(now)
        moment = self.clock()
        for conn in list(self.active_channels.values()):
            reason = conn.too_slow(self.pace, moment)
            if reason is not None:
                conn.cut(reason)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError as exc:
            self._accept_failed(exc)
            return
        if accepted is None:
            return
        failures = self.accept_failures.end(self.clock())
        if failures:
            log.info("accepting connections again after %d failed accept() calls", failures)
        conn, addr = accepted
        if not self._room_for_one():
            _refuse_busy(conn)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            # The client left before it was served.
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def _room_for_one(self) -> bool:
        now = self.clock()
        if len(self.active_channels) < self.max_connections:
            beyond = self.crowded.end(now)
            if beyond:
                log.info("connection slots free again after %d connections beyond them", beyond)
            return True
        if self.crowded.hit(now):
            log.warning(
                "all %d connection slots in use: a new connection takes the slot of the "
                "one waiting longest without a whole request, or is answered 503",
                self.max_connections,
            )
        return self._close_longest_waiting()

    def _close_longest_waiting(self) -> bool:
        """Close the connection waiting longest on its client; False when all are busy.

        Called after the newcomer is accepted, so the descriptor freed here is
        not reused while the loop may still hold events for it.
        """
        waiting = [conn for conn in self.active_channels.values() if conn.waiting()]
        if not waiting:
            return False
        min(waiting, key=_Channel.waiting_since).handle_close()
        return True

    def _accept_failed(self, exc: OSError) -> None:
        """accept() failing for want of descriptors: free one, or pause accepting.

        Left alone, the connection waiting in the backlog keeps the listener
        readable and the loop spins on a core, while nothing is logged.
        """
        if exc.errno not in _SHORTAGES:
            return
        if self.accept_failures.hit(self.clock()):
            log.warning(
                "cannot accept connections: %s (%d open, descriptor limit %s); closing "
                "the connection waiting longest, or pausing %g s",
                exc.strerror or exc,
                len(self.active_channels),
                _descriptor_limit() or "unlimited",
                ACCEPT_PAUSE,
            )
        if not self._close_longest_waiting():
            self.accept_paused_until = self.clock() + ACCEPT_PAUSE

    def set_socket_options(self, conn: socket.socket) -> None:
        # Headers and body may go out in two writes; without this, Nagle holds
        # the body of a kept-alive connection's answer for the client's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _raw_answer(status: int, message: str, *headers: str) -> bytes:
    """A whole answer for a connection no request task serves, the connection closed after."""
    body = Response.error(status, message).body
    head = [
        f"HTTP/1.1 {_status_line(status)}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
        "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _refuse_busy(connection: socket.socket) -> None:
    answer = _raw_answer(503, "too many connections; retry later", "Retry-After: 1")
    with connection, contextlib.suppress(OSError):
        connection.setblocking(False)
        connection.send(answer)
        # Closing with the request unread would reset the connection, and a
        # reset can overtake the answer; read what has arrived so far.
        connection.recv(MAX_HEADER_BYTES)


def connection_cap(most: int, limit: int | None, open_now: int, reserved: int) -> int:
    """How many connections the server holds at once: ``most``, or fewer if the
    descriptor limit would run out first.

    Of the descriptors still free (``limit`` less those open now and the
    server's wake-up pipe), ``reserved`` stay for the rest of the daemon; when
    the limit is so low that little would be left, a quarter of the free ones.
    """
    if limit is None:
        return most
    free = max(0, limit - open_now - _PIPE_DESCRIPTORS)
    return max(1, min(most, max(free - reserved, free // 4)))


def _descriptor_limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/dev/fd"))
    except OSError:
        return 0


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
    ``header_timeout`` and ``min_rate`` (see :class:`Pace`) cut one that sends
    its request too slowly however often it sends. ``max_connections`` is
    lowered to what the descriptor limit allows once ``reserved_descriptors``
    are kept for the rest of the process (:func:`connection_cap`).
    ``allowed_hosts`` are names, besides the listen address, that ``Host``
    may give (:class:`HostPolicy`); ``probe_paths`` answer whatever the Host.
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
        header_timeout: float = HEADER_TIMEOUT,
        min_rate: float = MIN_RATE,
        reserved_descriptors: int = RESERVED_DESCRIPTORS,
        allowed_hosts: Iterable[str] = (),
        probe_paths: Iterable[str] = PROBE_PATHS,
    ) -> None:
        # A name that is not one is refused before anything is bound.
        allowed = [_allowed_name(name) for name in allowed_hosts]
        listener = _listen(host, port)
        bound_host, bound_port = listener.getsockname()[:2]
        self._address = (str(bound_host), int(bound_port))
        self.connection_cap = _cap_for_this_process(max_connections, reserved_descriptors)
        app = _App(
            routes,
            max_body,
            policy=HostPolicy.of(*self._address, allowed),
            probes=probe_paths,
        )
        # Every socket the server polls, so ``stop()`` can close them all.
        self._sockets: dict[int, Any] = {}
        try:
            self._dispatcher = task.ThreadedTaskDispatcher()
            self._server = _Server(
                app,
                listener,
                _adjustments(max_body, self.connection_cap, request_timeout),
                self._dispatcher,
                self._sockets,
                max_body=max_body,
                max_connections=self.connection_cap,
                pace=Pace(header_timeout, min_rate),
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


def _cap_for_this_process(most: int, reserved: int) -> int:
    limit = _descriptor_limit()
    open_now = _open_descriptors()
    cap = connection_cap(most, limit, open_now, reserved)
    if cap < most:
        log.info(
            "at most %d connections at once: the descriptor limit is %s, %d are open and "
            "%d kept for the rest of the daemon (raise LimitNOFILE= for more)",
            cap,
            limit,
            open_now,
            reserved,
        )
    return cap


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
