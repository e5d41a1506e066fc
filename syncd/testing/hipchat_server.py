"""A HipChat API v2 look-alike for tests and ``syncd demo``: room notifications only.

It answers like the real service where the client depends on it (status codes,
``{"error": {...}}`` bodies, rate-limit headers, ``auth_test``), keeps what it
received for assertions, and misbehaves on request: faults are queued per room
or for every room and consumed one request at a time.

It is stricter than HipChat in one way: a token in the ``auth_token`` query
parameter is refused unless ``allow_query_token`` is set, so that a client that
leaks tokens into URLs fails its tests.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from syncd.testing.hipchat_contract import (
    AUTH_TEST_ANSWER,
    FLOOD_HEADERS,
    MAX_BODY,
    NOTIFY,
    RATE_HEADERS,
    Attempt,
    Fault,
    FaultKind,
    Headers,
    Limits,
    RateLimitMode,
    Received,
    ServerRoom,
    Spent,
    error_body,
    limit_headers,
    limits_for,
    parse_notification,
    refusal,
)
from syncd.testing.hipchat_state import ServerState

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's 5 has the kernel reset connections a client opens by the
    # hundred at once (sends in flight to one server), which the client takes
    # for a server that is down; HipChat does not reset them.
    request_queue_size = 4096
    state: ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("test server: connection from %s ended with an error", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hipchat-test"
    timeout = 30
    # Headers and body go out in two writes; with Nagle's algorithm the body would
    # wait for the client's delayed ACK, 40 ms per response on keep-alive.
    disable_nagle_algorithm = True

    @property
    def state(self) -> ServerState:
        return cast(_Server, self.server).state

    def setup(self) -> None:
        super().setup()
        with self.state.lock:
            self.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.state.lock:
            self.state.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("test server: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        try:
            self._dispatch(method)
        except OSError:
            self.close_connection = True
        except Exception:
            log.exception("test server: handler failed")
            self.close_connection = True

    def _attempt(
        self, method: str, room: str | None, code: int | None, fault: FaultKind | None
    ) -> Attempt:
        return Attempt(
            method, self.path, room, code, self.state.clock(), fault, self.client_address[1]
        )

    def _answer(
        self,
        method: str,
        room: str | None,
        code: int,
        body: str = "",
        headers: Iterable[tuple[str, str]] = (),
        fault: FaultKind | None = None,
        received: Received | None = None,
    ) -> None:
        self.state.record(self._attempt(method, room, code, fault), received)
        payload = body.encode()
        self.send_response(code)
        # A later header replaces an earlier one: injected headers win over computed ones.
        merged = {name.lower(): (name, value) for name, value in headers}
        for name, value in merged.values():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        if code != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _error(
        self,
        method: str,
        room: str | None,
        code: int,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._answer(method, room, code, error_body(code, message), headers)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            size = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if size < 0 or size > MAX_BODY:
            return None
        return self.rfile.read(size) if size else b""

    def _dispatch(self, method: str) -> None:
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._error(method, None, 413, "Request body too large or without a length")
            return
        parts = urlsplit(self.path)
        room_key = _notification_room(parts.path)
        if room_key is None:
            self._error(method, None, 404, "Resource not found")
            return
        room = self.state.find_room(room_key)
        fault = self.state.take_fault(room)
        played = [*self.state.standing_faults(), *([fault] if fault else [])]
        if any(self._fault_answered(method, room, f) for f in played):
            return
        query = parse_qs(parts.query)
        token = self._authorized(method, room, query)
        if room is None or token is None:
            return
        extra = fault.response_headers if fault is not None else ()
        self._accept(method, room, token, query, raw, fault, extra)

    def _fault_answered(self, method: str, room: ServerRoom | None, fault: Fault) -> bool:
        """Play a fault that replaces the answer; True when it did."""
        room_id = room.id if room else None
        if fault.kind == "reset":
            self.state.record(self._attempt(method, room_id, None, "reset"))
            self._drop()
            return True
        if fault.kind == "status":
            self._answer(method, room_id, fault.code, fault.body, fault.response_headers, "status")
            return True
        if fault.kind == "raw":
            self.state.record(self._attempt(method, room_id, None, "raw"))
            self.close_connection = True
            self.wfile.write(fault.raw)
            return True
        if fault.kind == "trickle":
            self.state.record(self._attempt(method, room_id, None, "trickle"))
            self._trickle(fault.seconds)
            return True
        if fault.kind == "slow" and self.state.stopping.wait(fault.seconds):
            self.close_connection = True
            return True
        return False

    def _authorized(
        self, method: str, room: ServerRoom | None, query: Mapping[str, list[str]]
    ) -> str | None:
        """The caller's token when it may post to the room; else answer the refusal."""
        if method != "POST":
            self._error(
                method, room.id if room else None, 405, f"Method {method} is not allowed here"
            )
            return None
        if room is None:
            self._error(method, None, 404, "Room not found")
            return None
        if "auth_token" in query and not self.state.allow_query_token:
            self._error(method, room.id, 401, "auth_token in the URL is refused by this server")
            return None
        token = self._token(query)
        if token is None or token != room.token:
            message = "Invalid OAuth session" if token else "Authenticated requests only."
            self._error(method, room.id, 401, message)
            return None
        return token

    def _accept(
        self,
        method: str,
        room: ServerRoom,
        token: str,
        query: Mapping[str, list[str]],
        raw: bytes,
        fault: Fault | None,
        extra: Headers,
    ) -> None:
        """Count the request against the token, then a notification against the room;
        every answer from here on carries both budgets as they stand."""
        now = self.state.clock()
        rate = self._budget("token", token, now)
        if rate is not None and not rate.allowed:
            self._refuse(method, room, rate, now, self._headers(rate, room, now))
            return
        if query.get("auth_test") == ["true"]:
            headers = self._headers(rate, room, now)
            self._answer(method, room.id, 202, AUTH_TEST_ANSWER, headers + extra)
            return
        data, problem = parse_notification(raw, self.headers.get("Content-Type", ""))
        if problem is not None:
            self._error(method, room.id, 400, problem, self._headers(rate, room, now))
            return
        flood = self._budget("room", room.id, now)
        headers = self._headers(rate, room, now, flood)
        if flood is not None and not flood.allowed:
            self._refuse(method, room, flood, now, headers)
            return
        received = Received(
            room=room.id, body=data, headers=dict(self.headers.items()), time=now, path=self.path
        )
        self._answer(
            method,
            room.id,
            204,
            headers=headers + extra,
            fault=fault.kind if fault else None,
            received=received,
        )

    def _budget(
        self, scope: Literal["token", "room"], key: str, now: float, *, count: bool = True
    ) -> Spent | None:
        """The request judged against the token's or the room's budget; None without limits."""
        limits = self.state.limits
        if limits is None:
            return None
        if scope == "token":
            return self.state.spend(scope, key, limits.rate, limits.rate_window, now, count=count)
        return self.state.spend(scope, key, limits.flood, limits.flood_window, now, count=count)

    def _headers(
        self, rate: Spent | None, room: ServerRoom, now: float, flood: Spent | None = None
    ) -> Headers:
        """Both budgets' headers; the room's as it stands when this request spent none of it."""
        if rate is None:
            return ()
        if flood is None:
            flood = self._budget("room", room.id, now, count=False)
        assert flood is not None, "limits hold both budgets"
        return limit_headers(RATE_HEADERS, rate) + limit_headers(FLOOD_HEADERS, flood)

    def _refuse(
        self, method: str, room: ServerRoom, spent: Spent, now: float, headers: Headers
    ) -> None:
        limits = self.state.limits
        assert limits is not None, "only a budget refuses"
        code, body, extra = refusal(limits, spent, now)
        self._answer(method, room.id, code, body, headers + extra)

    def _token(self, query: Mapping[str, list[str]]) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if query.get("auth_token"):
            return query["auth_token"][0]
        return None

    def _trickle(self, seconds: float) -> None:
        self.close_connection = True
        answer = b"HTTP/1.1 202 Accepted\r\nX-Padding: " + b"." * 4096 + b"\r\n\r\n"
        for at in range(len(answer)):
            if self.state.stopping.wait(seconds):
                return
            try:
                self.wfile.write(answer[at : at + 1])
                self.wfile.flush()
            except OSError:
                return

    def _drop(self) -> None:
        """Close with a TCP reset, so the client sees the connection fail mid-request."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _notification_room(path: str) -> str | None:
    """The room of ``/v2/room/{room}/notification``; None for any other path."""
    segments = path.split("/")
    if len(segments) != 5 or segments[:3] != ["", "v2", "room"] or segments[4] != NOTIFY:
        return None
    return unquote(segments[3])


class HipChatServer:
    """A HipChat look-alike on 127.0.0.1 (port chosen by the OS); use it as a context manager.

    ``rooms`` maps a room ID (digits) or name to its token, or lists
    :class:`ServerRoom` values. ``limits`` sets the budgets, their headers and
    the refusal past them: a mode, ``"hipchat"`` (the default: 500 requests per
    5 minutes per token and 30 messages a minute per room, 429 with
    ``Retry-After`` past either), ``"server"`` (HipChat Server: 100 per 5
    minutes per token, 403 past a budget) or ``"none"`` (or ``None``), or
    :class:`Limits` of a test's own. The windows count on ``clock``, so a test
    moves time instead of waiting. ``tls`` serves HTTPS with that server context.
    """

    def __init__(
        self,
        rooms: Mapping[str, str] | Iterable[ServerRoom],
        *,
        limits: Limits | RateLimitMode | None = "hipchat",
        allow_query_token: bool = False,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(rooms, Mapping):
            listed = tuple(
                ServerRoom(key, token, None if key.isdigit() else key)
                for key, token in ((str(k), str(v)) for k, v in rooms.items())
            )
        else:
            listed = tuple(rooms)
        budgets = limits_for(limits) if isinstance(limits, str) else limits
        self._state = ServerState(listed, budgets, allow_query_token, clock)
        self._host = host
        self._port = port
        self._tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def limits(self) -> Limits | None:
        """The budgets this server enforces; None when it enforces none."""
        return self._state.limits

    @property
    def url(self) -> str:
        """The endpoint to configure, e.g. ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        host, port = self._server.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host!s}:{port}"

    def start(self) -> HipChatServer:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        server.state = self._state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.name = f"hipchat-test-server-{server.server_address[1]}"
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        with self._state.lock:
            connections = list(self._state.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HipChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def inject(self, fault: Fault, *, times: int = 1, room: str | None = None) -> None:
        """Queue ``fault`` for the next ``times`` requests to ``room`` (ID or name) or any room.

        A room's own faults are used before the faults for any room.
        """
        if times < 1:
            raise ValueError("times must be 1 or more")
        self._state.queue_fault(self._fault_key(room), fault, times)

    def faults_left(self, room: str | None = None) -> int:
        """Requests the faults queued for ``room`` (ID or name; None: for any room)
        are still for: 0 once the last of them has arrived, answered or not (a
        slow answer is still being held)."""
        return self._state.faults_left(self._fault_key(room))

    def _fault_key(self, room: str | None) -> str | None:
        """The key a room's faults are queued under: its ID (None: any room)."""
        if room is None:
            return None
        found = self._state.find_room(room)
        if found is None:
            raise KeyError(f"unknown room {room!r}")
        return found.id

    def misbehave(
        self, *, latency: float = 0.0, fail_rate: float = 0.0, seed: int | None = None
    ) -> None:
        """Delay every answer by ``latency`` seconds; answer 503 to ``fail_rate`` of requests."""
        with self._state.lock:
            self._state.latency = latency
            self._state.fail_rate = fail_rate
            self._state.rng = random.Random(seed)

    def on_request(self, listener: Callable[[Attempt, Received | None], None]) -> None:
        """Call ``listener`` with each request and, if one was accepted, the notification."""
        with self._state.lock:
            self._state.listeners.append(listener)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    @property
    def messages(self) -> list[Received]:
        with self._state.lock:
            return list(self._state.received)

    @property
    def attempts(self) -> list[Attempt]:
        with self._state.lock:
            return list(self._state.attempts)

    def messages_for(self, room: str) -> list[Received]:
        found = self._state.find_room(room)
        key = found.id if found else room
        return [m for m in self.messages if m.room == key]

    def wait_for_messages(
        self, count: int, *, room: str | None = None, timeout: float = 5.0
    ) -> list[Received]:
        """Block until ``count`` messages (to ``room``, if given) arrived; ``TimeoutError`` else."""

        found = self._state.find_room(room) if room is not None else None
        key = found.id if found else room

        def arrived() -> int:
            received = self._state.received
            if key is None:
                return len(received)
            return sum(1 for m in received if m.room == key)

        with self._state.lock:
            if not self._state.lock.wait_for(lambda: arrived() >= count, timeout):
                raise TimeoutError(f"{arrived()} of {count} messages arrived within {timeout}s")
            return [m for m in self._state.received if key is None or m.room == key]

    def reset_records(self) -> None:
        """Forget received messages, attempts and rate-limit windows (faults stay queued)."""
        with self._state.lock:
            self._state.received.clear()
            self._state.attempts.clear()
            self._state.windows.clear()
