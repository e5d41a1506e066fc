"""HipChat sends from one event loop: thousands in flight without a thread each.

A thread per send in flight cost more than the sends: at 1,000 rooms a third
of the daemon's CPU went to switching between the threads that waited on
HipChat, and urllib3's layers cost more than the bytes they move. The
dispatcher's sends run on one asyncio loop instead, and this module is their
I/O: HTTP/1.1 over asyncio streams, connections kept alive per server, proxy
and CA bundle. What a request holds and what an answer means stay the
:class:`~syncd.hipchat.client.HipChatClient`'s (and ``wire``'s), so a command's
send and the daemon's decide alike: the same pacing, the same
classification, the same redaction.

What the thread client's urllib3 gave is kept, and tested against both: the
address a connection reached is judged before a byte is sent on it (not
through a proxy, which resolves the name itself); the whole request has a
deadline, and each connect and read its own timeout; at most 64 KiB of an
answer is kept, and a connection whose answer was not read to its end is
closed, never reused; a peer's bytes never reach a reason (errors are named
by their classes and errno). A kept-alive connection the server closed
while idle is not used; a request is never sent twice (a server that read it
and closed without an answer may have posted it): a failure is the
dispatcher's to retry.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncd.config.reach import address_problem
from syncd.hipchat.client import MAX_CONNECTIONS_PER_HOST, HipChatClient, RefusedAddress
from syncd.hipchat.wire import (
    MAX_ANSWER_BYTES,
    Answer,
    DeliveryResult,
    Message,
    RoomTarget,
    notification_body,
)

log = logging.getLogger(__name__)

# The most an answer's status line and headers may take; more is not HipChat.
MAX_HEAD_BYTES = 64 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Parsed URLs kept, per text: a send looks its room's URL up instead of parsing it.
_MAX_KEPT_URLS = 65536


class NewConnectionError(ConnectionError):
    """No connection could be made (the cause says why)."""


class ConnectTimeoutError(TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeoutError(TimeoutError):
    """No answer within the read timeout."""


class ProtocolError(ConnectionError):
    """What came back is not an HTTP/1.x answer, or it broke off."""


class ProxyError(ConnectionError):
    """The proxy did not open a tunnel to the server."""


class _Headers(Mapping[str, str]):
    """An answer's headers, looked up whatever their case, as HTTP wants."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


@dataclass(frozen=True)
class _Route:
    """Where a URL's requests go: its server, and the proxy in between if any."""

    scheme: str
    host: str
    port: int
    target: str  # the request target: a path, or the whole URL to a plain-HTTP proxy
    host_header: str
    proxy: tuple[str, str, int] | None  # scheme, host, port
    ca_bundle: str


# A pool's key: scheme, host, port, proxy and CA bundle.
_PoolKey = tuple[str, str, int, tuple[str, str, int] | None, str]


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop


@dataclass(frozen=True)
class _Head:
    version: int  # 0 for HTTP/1.0, 1 for HTTP/1.1
    status: int
    headers: _Headers


class LoopClient:
    """Posts room notifications from one event loop; use it from that loop only.

    ``client`` holds everything that is not I/O: timeouts, pacing, retry
    policy, proxies, CA bundles and the link-local switch.
    """

    def __init__(self, client: HipChatClient) -> None:
        self.client = client
        # Idle connections per server, proxy and CA bundle.
        self._pools: dict[_PoolKey, list[_Connection]] = {}
        self._contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}
        self._routes: dict[tuple[str, str], _Route] = {}
        self._closed = False

    async def send(
        self, target: RoomTarget, message: Message, *, attempt: int = 0
    ) -> DeliveryResult:
        """Post ``message`` to the room; ``attempt`` (0 first) scales the backoff."""
        return await self._post(target, notification_body(message), attempt, auth_test=False)

    async def auth_test(self, target: RoomTarget) -> DeliveryResult:
        body = {"message": "syncd auth test", "message_format": "text"}
        return await self._post(target, body, 0, auth_test=True)

    def close(self) -> None:
        self._closed = True
        for idle in self._pools.values():
            for connection in idle:
                _close(connection)
        self._pools.clear()

    async def _post(
        self, target: RoomTarget, body: dict[str, Any], attempt: int, auth_test: bool
    ) -> DeliveryResult:
        if self._closed:
            raise RuntimeError("LoopClient is closed")
        client = self.client
        refused = client.refusal(target)
        if refused is not None:
            return client.finish(target, refused)
        client.pacing.note_send(target, client.now())
        result = await self._exchange(target, body, attempt, auth_test)
        return client.finish(target, result)

    async def _exchange(
        self, target: RoomTarget, body: dict[str, Any], attempt: int, auth_test: bool
    ) -> DeliveryResult:
        client = self.client
        url, data, headers = client.request(target, body, auth_test)
        try:
            route = self._route(url, client.ca_bundle_for(target))
        except ValueError as exc:
            return DeliveryResult("permanent", None, f"request failed: {type(exc).__name__}")
        deadline = asyncio.get_running_loop().time() + client.send_timeout
        try:
            connection, head = await self._ask(route, _request(route, data, headers), deadline)
        except _DeadlineReached:
            return client.no_answer_in_time(attempt)
        except TimeoutError as exc:
            return client.failed(exc, attempt, timeout=True)
        except RefusedAddress as exc:
            return DeliveryResult("permanent", None, exc.reason)
        except (OSError, EOFError, ssl.SSLError, ValueError) as exc:
            return client.failed(exc, attempt, timeout=False)
        text = await self._body(route, connection, head, deadline)
        return client.answered(target, Answer(head.status, head.headers, text), attempt, auth_test)

    def _route(self, url: str, ca_bundle: str) -> _Route:
        key = (url, ca_bundle)
        route = self._routes.get(key)
        if route is None:
            if len(self._routes) >= _MAX_KEPT_URLS:
                self._routes.clear()
            route = self._routes[key] = _route_of(url, self.client.proxy_for(url), ca_bundle)
        return route

    async def _ask(
        self, route: _Route, request: bytes, deadline: float
    ) -> tuple[_Connection, _Head]:
        """Send ``request`` and read the answer's head, on a kept connection if one
        is idle. Never sent twice: a server that closed a kept connection after
        reading the request may have posted it."""
        connection = self._idle(route) or await self._connect(route, deadline)
        try:
            return connection, await self._round_trip(connection, request, deadline)
        except _ClosedUnanswered:
            _close(connection)
            raise ProtocolError("no answer") from http.client.RemoteDisconnected("closed")
        except BaseException:
            _close(connection)
            raise

    def _idle(self, route: _Route) -> _Connection | None:
        idle = self._pools.get(_pool_key(route), [])
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if (
                connection.loop is not loop
                or connection.reader.at_eof()
                or connection.writer.is_closing()
            ):
                _close(connection)
                continue
            return connection
        return None

    async def _round_trip(self, connection: _Connection, request: bytes, deadline: float) -> _Head:
        connection.writer.write(request)
        read_timeout = self.client.timeout[1]
        until = asyncio.get_running_loop().time() + read_timeout
        try:
            async with asyncio.timeout_at(min(until, deadline)):
                await connection.writer.drain()
                head = await _read_head(connection.reader)
                while 100 <= head.status < 200:  # an interim answer: the real one follows
                    head = await _read_head(connection.reader)
        except TimeoutError as exc:
            raise _timed_out(until, deadline, ReadTimeoutError, "an answer") from exc
        return head

    async def _connect(self, route: _Route, deadline: float) -> _Connection:
        """A new connection, checked and (for HTTPS) encrypted, or tunnelled through
        the route's proxy."""
        connect_timeout = self.client.timeout[0]
        host, port = (route.proxy[1], route.proxy[2]) if route.proxy else (route.host, route.port)
        until = asyncio.get_running_loop().time() + connect_timeout
        try:
            async with asyncio.timeout_at(min(until, deadline)):
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
        except TimeoutError as exc:
            raise _timed_out(until, deadline, ConnectTimeoutError, "connection") from exc
        except OSError as exc:
            raise NewConnectionError("no connection") from exc
        connection = _Connection(reader, writer, asyncio.get_running_loop())
        try:
            async with asyncio.timeout_at(min(until, deadline)):
                await self._prepare(route, connection)
        except TimeoutError as exc:
            writer.close()
            raise _timed_out(until, deadline, ConnectTimeoutError, "handshake") from exc
        except BaseException:
            writer.close()
            raise
        return connection

    async def _prepare(self, route: _Route, connection: _Connection) -> None:
        """The address checked, the proxy's tunnel opened, TLS begun: what a new
        connection needs before the request."""
        writer = connection.writer
        if route.proxy is None:
            if not self.client.allow_link_local:
                _check_address(route.host, writer)
        elif route.proxy[0] == "https":
            await writer.start_tls(self._context(""), server_hostname=route.proxy[1])
        if route.proxy is not None and route.scheme == "https":
            await _open_tunnel(connection, route)
        if route.scheme == "https":
            await writer.start_tls(self._context(route.ca_bundle), server_hostname=route.host)

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        """A TLS context checking against ``ca_bundle`` (the system's for a proxy's
        own certificate), made again when the file changes, as urllib3 reads it
        at each new connection."""
        try:
            info = os.stat(ca_bundle) if ca_bundle else None
        except OSError:
            info = None
        key = (ca_bundle, info.st_mtime_ns if info else 0, info.st_size if info else 0)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cafile=ca_bundle or None)
            self._contexts = {k: v for k, v in self._contexts.items() if k[0] != ca_bundle}
            self._contexts[key] = context
        return context

    async def _body(
        self, route: _Route, connection: _Connection, head: _Head, deadline: float
    ) -> str:
        """At most ``MAX_ANSWER_BYTES`` of the body; the connection goes back to the
        pool only when the answer was read to its end. A body cut or broken off
        changes nothing about the status that came."""
        until = min(deadline, asyncio.get_running_loop().time() + self.client.timeout[1])
        try:
            if _bodiless(head):  # HipChat's 204: no read, so no timer either
                kept, whole = b"", True
            else:
                async with asyncio.timeout_at(until):
                    kept, whole = await _read_body(connection.reader, head)
        except (TimeoutError, OSError, EOFError, ValueError, asyncio.LimitOverrunError):
            kept, whole = b"", False
        except BaseException:
            _close(connection)
            raise
        if whole and _keeps_alive(head) and not self._closed:
            self._give_back(route, connection)
        else:
            _close(connection)
        return kept[:MAX_ANSWER_BYTES].decode("utf-8", "replace")

    def _give_back(self, route: _Route, connection: _Connection) -> None:
        idle = self._pools.setdefault(_pool_key(route), [])
        if len(idle) >= MAX_CONNECTIONS_PER_HOST:
            _close(connection)
            return
        idle.append(connection)


def _close(connection: _Connection) -> None:
    """Close a connection, also one of an event loop that has ended."""
    if not connection.loop.is_closed():  # else the socket is closed with its transport
        connection.writer.close()


class _ClosedUnanswered(Exception):
    """The connection ended before a byte of the answer came."""


def _pool_key(route: _Route) -> _PoolKey:
    return (route.scheme, route.host, route.port, route.proxy, route.ca_bundle)


def _route_of(url: str, proxy: str | None, ca_bundle: str) -> _Route:
    parts = urlsplit(url)
    scheme, host, port = _place(url)
    if not host:
        raise ValueError("no host in the URL")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    via = _proxy_of(proxy) if proxy else None
    target = url if via is not None and scheme == "http" else path
    return _Route(scheme, host, port, target, host_header, via, ca_bundle)


def _proxy_of(proxy: str) -> tuple[str, str, int]:
    return _place(proxy if "://" in proxy else f"http://{proxy}")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _place(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an HTTP(S) URL, the port always given."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an HTTP URL: scheme {scheme!r}")
    return scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[scheme]


def _request(route: _Route, data: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {route.target} HTTP/1.1", f"Host: {route.host_header}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append(f"Content-Length: {len(data)}")
    lines.append("Accept-Encoding: identity")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _check_address(host: str, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    address = str(peer[0]) if peer else ""
    why = address_problem(address)
    if why is not None:
        raise RefusedAddress(host, address, why)


async def _open_tunnel(connection: _Connection, route: _Route) -> None:
    authority = (
        f"[{route.host}]:{route.port}" if ":" in route.host else f"{route.host}:{route.port}"
    )
    connection.writer.write(
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("latin-1")
    )
    try:
        head = await _read_head(connection.reader)
    except _ClosedUnanswered as exc:
        raise ProxyError("the proxy closed the connection") from exc
    if head.status != 200:
        raise ProxyError("the proxy refused the tunnel") from OSError("no tunnel")


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _ClosedUnanswered() from None
        raise ProtocolError("cut head") from http.client.IncompleteRead(b"")
    except asyncio.LimitOverrunError:
        raise ProtocolError("long head") from http.client.LineTooLong("head")
    lines = raw[:-4].split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise ProtocolError("bad status") from http.client.BadStatusLine("")
    return _Head(int(status.group(1)), int(status.group(2)), _Headers(_fields(lines[1:])))


def _fields(lines: list[bytes]) -> dict[str, str]:
    """The header fields, names in lower case, repeated ones joined."""
    fields: dict[str, str] = {}
    key, skipped = "", 0
    for line in lines:
        if line[:1] in (b" ", b"\t") and key:  # a folded line, read as a space (RFC 9112)
            fields[key] += " " + line.strip(b" \t").decode("latin-1")
            continue
        name, colon, value = line.partition(b":")
        if not colon or _HEADER_NAME.fullmatch(name) is None:
            key, skipped = "", skipped + 1
            continue
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    if skipped:
        # As http.client does, the answer stands; never a byte of the lines in the log.
        log.warning("an answer held %d line(s) that are not headers; skipped", skipped)
    return fields


def _keeps_alive(head: _Head) -> bool:
    tokens = head.headers.get("connection", "").lower()
    if head.version == 0:
        return "keep-alive" in tokens
    return "close" not in tokens


def _bodiless(head: _Head) -> bool:
    """An answer that has no body by its status, or says it has none."""
    return head.status in (204, 304) or (
        head.headers.get("content-length") == "0" and "transfer-encoding" not in head.headers
    )


async def _read_body(reader: asyncio.StreamReader, head: _Head) -> tuple[bytes, bool]:
    """Up to one byte past the cap of the body, and whether it was read to its end
    (of an answer that has a body: see ``_bodiless``)."""
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = head.headers.get("content-length")
    if length is not None and length.isdigit():
        size = int(length)
        data = await reader.readexactly(min(size, MAX_ANSWER_BYTES + 1))
        return data, size <= MAX_ANSWER_BYTES
    data = b""
    while len(data) <= MAX_ANSWER_BYTES:  # to the end of the connection
        part = await reader.read(MAX_ANSWER_BYTES + 1 - len(data))
        if not part:
            break
        data += part
    return data, False


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    data = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # the trailers, to the empty line
            return data, True
        if len(data) + size > MAX_ANSWER_BYTES:
            data += await reader.readexactly(MAX_ANSWER_BYTES + 1 - len(data))
            return data, False
        data += await reader.readexactly(size + 2)
        data = data[:-2]


class _DeadlineReached(Exception):
    """The request's whole deadline passed before its answer came."""


def _timed_out(until: float, deadline: float, error: type[TimeoutError], what: str) -> Exception:
    """The step's own timeout (``until``) or the request's deadline, whichever came first."""
    if deadline <= until:
        return _DeadlineReached()
    return error(f"no {what} in time")
