"""The HipChat API v2 client: connection pools and sending.

What a request is and what an answer means are pure functions in
``hipchat_api``; the budget between requests is ``pacing``'s. This module
owns only the I/O: urllib3 connection pools that every worker shares (one
per server, proxy and CA bundle), and turning every failure into a
:class:`DeliveryResult` that the dispatcher can act on, never an exception.
urllib3 is used directly: requests' session layer (hooks, cookies, adapters,
a response object per answer) cost four tenths of a send's CPU and does
nothing a room notification needs. Tokens travel only in the
``Authorization`` header, and every text this module produces (results, log
lines) is redacted first, because urllib3 and http.client put URLs and header
values into their errors.

A config's endpoint is judged as written when the set is loaded; here, the
address a connection actually reached is judged too, before a byte is sent:
a name that resolves to a link-local or cloud metadata address (see
``syncd.config.reach``), at the first look-up or after a DNS answer changed,
is a permanent failure unless the operator allowed such endpoints. Through a
proxy, the proxy resolves the name and only the endpoint as written is
judged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import certifi
import requests
import urllib3

from syncd import __version__
from syncd.config.reach import address_problem
from syncd.config.secrets import redact
from syncd.hipchat.deadlines import Deadlines
from syncd.hipchat.pacing import Pacing
from syncd.hipchat.wire import (
    MAX_ANSWER_BYTES,
    Answer,
    DeliveryResult,
    Message,
    RandomSource,
    RetryPolicy,
    RoomTarget,
    backoff,
    classify,
    exception_text,
    notification_body,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]

DEFAULT_TIMEOUT = (3.05, 10.0)
DEFAULT_SEND_TIMEOUT = 30.0
# Connections kept per server: the most sends --max-in-flight lets one server have.
MAX_CONNECTIONS_PER_HOST = 1024
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 300.0
DEFAULT_MAX_SERVER_WAIT = 3600.0
MAX_REASON = 500
USER_AGENT = f"syncd/{__version__}"

# What may stand in an HTTP header value; anything else would make requests or
# http.client raise an error that quotes the header, token included.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


# The urllib3 loggers that may pass an exception holding the peer's bytes (a
# header it could not parse, a status line) as an argument.
_URLLIB3_LOGGERS = (
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
)


class _PeerTextFilter(logging.Filter):
    """Exceptions in urllib3's records become their classes and errno, and their
    tracebacks are dropped: urllib3 warns "Failed to parse headers" with the
    header the server sent, and a command without logging set up prints that
    warning to the terminal as it came."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_described(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _described(arg) for key, arg in record.args.items()}
        record.msg = _described(record.msg)
        if record.exc_info is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({exception_text(exc)})" if exc is not None else record.msg
            record.exc_info = None
        record.exc_text = None
        return True


def _described(value: object) -> object:
    return exception_text(value) if isinstance(value, BaseException) else value


_PEER_TEXT = _PeerTextFilter()


def _guard_urllib3_logs() -> None:
    """Put the filter on urllib3's loggers, once: a logger's filters see only the
    records made on that logger, so each is named."""
    for name in _URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _PEER_TEXT not in logger.filters:
            logger.addFilter(_PEER_TEXT)


class RefusedAddress(Exception):
    """A connection reached an address tokens never go to; nothing was sent on it.

    Not an ``OSError``: urllib3 would wrap it as a connection error to retry."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(host, address)
        self.reason = (
            f"refused: {host} resolves to {address}, {why}; nothing was sent "
            "(the daemon's --allow-link-local-endpoint allows it)"
        )


def _peer_address(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return ""


class _AddressCheck(urllib3.connection.HTTPConnection):
    """Checks the address each new socket is connected to, before the request goes out."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        address = _peer_address(sock)
        why = address_problem(address)
        if why is not None:
            sock.close()
            raise RefusedAddress(self.host, address, why)
        return sock


def _checked_pools(
    pools: Mapping[str, type[urllib3.HTTPConnectionPool]],
) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """``pools`` whose connections run :class:`_AddressCheck` first (names kept: they
    show in connection errors)."""
    checked: dict[str, type[urllib3.HTTPConnectionPool]] = {}
    for scheme, pool in pools.items():
        base = pool.ConnectionCls
        connection = type(base.__name__, (_AddressCheck, base), {})
        checked[scheme] = type(pool.__name__, (pool,), {"ConnectionCls": connection})
    return checked


class HipChatClient:
    """Posts room notifications; thread-safe, connections kept alive and shared.

    The environment is read once: proxies (``HTTPS_PROXY``, ``NO_PROXY``...) per
    host, the CA bundle (``REQUESTS_CA_BUNDLE``, else certifi's, as requests does) at creation;
    ``.netrc`` never, so nothing can replace a room's bearer token.

    ``allow_link_local``: send to link-local and metadata addresses too
    (``--allow-link-local-endpoint``).
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_server_wait: float = DEFAULT_MAX_SERVER_WAIT,
        rng: RandomSource | None = None,
        clock: Clock = time.time,
        pacing: Pacing | None = None,
        allow_link_local: bool = False,
    ) -> None:
        self.timeout = timeout
        self.allow_link_local = allow_link_local
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self.send_timeout = send_timeout
        self._deadlines = Deadlines()
        self.policy = RetryPolicy(backoff_base, backoff_cap, max_server_wait)
        self.pacing = pacing if pacing is not None else Pacing(max_delay=max_server_wait)
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._clock = clock
        self._ca_bundle = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or certifi.where()
        )
        self._managers: dict[tuple[str | None, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._proxy_cache: dict[str, str | None] = {}
        _guard_urllib3_logs()

    def __enter__(self) -> HipChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.clear()
        self._deadlines.close()

    def _manager(self, proxy: str | None, ca_bundle: str) -> urllib3.PoolManager:
        """The pools for one proxy (or none) and CA bundle; the deadline sees their sockets."""
        key = (proxy, ca_bundle)
        with self._lock:
            if self._closed:
                raise RuntimeError("HipChatClient is closed")
            manager = self._managers.get(key)
            if manager is None:
                options: dict[str, Any] = {
                    "maxsize": MAX_CONNECTIONS_PER_HOST,
                    "cert_reqs": "CERT_REQUIRED",
                    "ca_certs": ca_bundle,
                }
                manager = (
                    urllib3.ProxyManager(proxy, **options)
                    if proxy
                    else urllib3.PoolManager(**options)
                )
                self._deadlines.watch(manager)
                if not proxy and not self.allow_link_local:
                    manager.pool_classes_by_scheme = _checked_pools(manager.pool_classes_by_scheme)
                self._managers[key] = manager
            return manager

    def proxy_for(self, url: str) -> str | None:
        """The environment's proxy for ``url``'s host, looked up once per host."""
        base = url.split("/", 3)[2] if "://" in url else url
        if base not in self._proxy_cache:
            proxies = requests.utils.get_environ_proxies(url)
            scheme = url.split(":", 1)[0].lower()
            self._proxy_cache[base] = proxies.get(scheme) or proxies.get("all")
        return self._proxy_cache[base]

    def now(self) -> float:
        """The client's clock, which pacing and answers are read on."""
        return self._clock()

    def delay_before_send(self, target: RoomTarget, now: float | None = None) -> float:
        """Seconds a dispatcher should wait before sending to ``target``."""
        return self.pacing.delay_before_send(target, self._clock() if now is None else now)

    def send(self, target: RoomTarget, message: Message, *, attempt: int = 0) -> DeliveryResult:
        """Post ``message`` to the room; ``attempt`` (0 first) scales the backoff."""
        return self._post(target, notification_body(message), attempt=attempt, auth_test=False)

    def auth_test(self, target: RoomTarget) -> DeliveryResult:
        """Ask the server whether the token may notify the room, without posting anything.

        A valid token answers 202 (``delivered``); no message reaches the room.
        """
        body = {"message": "syncd auth test", "message_format": "text"}
        return self._post(target, body, attempt=0, auth_test=True)

    def _post(
        self, target: RoomTarget, body: dict[str, Any], *, attempt: int, auth_test: bool
    ) -> DeliveryResult:
        refused = self.refusal(target)
        if refused is not None:
            return self.finish(target, refused)
        now = self._clock()
        self.pacing.note_send(target, now)
        with self._deadlines.bounded(self.send_timeout) as watch:
            result = self._exchange(target, body, attempt, auth_test)
            if watch.expired and result.status is None:
                result = self.no_answer_in_time(attempt)
        return self.finish(target, result)

    def refusal(self, target: RoomTarget) -> DeliveryResult | None:
        """Why nothing may be sent to ``target`` at all, before a connection is made."""
        if not _TOKEN_CHARS.fullmatch(target.token):
            reason = "the token holds characters that cannot be sent in an HTTP header"
            return DeliveryResult("permanent", None, reason)
        ca_problem = _ca_file_problem(target.ca_file)
        if ca_problem is not None:
            return DeliveryResult("permanent", None, ca_problem)
        return None

    def request(
        self, target: RoomTarget, body: dict[str, Any], auth_test: bool
    ) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and headers of one request; the token only in a header."""
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Authorization": f"Bearer {target.token}",
            "Content-Type": "application/json",
        }
        return target.url + ("?auth_test=true" if auth_test else ""), data, headers

    def no_answer_in_time(self, attempt: int) -> DeliveryResult:
        reason = f"no complete answer within {self.send_timeout:g} s"
        return DeliveryResult("retry", None, reason, retry_after=self._backoff(attempt))

    def failed(self, exc: BaseException, attempt: int, *, timeout: bool) -> DeliveryResult:
        """No answer: a timeout or a connection that failed, retried."""
        detail = f"{'Timeout' if timeout else 'ConnectionError'}: {exception_text(exc)}"
        return DeliveryResult("retry", None, detail, retry_after=self._backoff(attempt))

    def ca_bundle_for(self, target: RoomTarget) -> str:
        return target.ca_file or self._ca_bundle

    def _exchange(
        self, target: RoomTarget, body: dict[str, Any], attempt: int, auth_test: bool
    ) -> DeliveryResult:
        url, data, headers = self.request(target, body, auth_test)
        try:
            manager = self._manager(self.proxy_for(target.url), self.ca_bundle_for(target))
            response = manager.urlopen(
                "POST",
                url,
                body=data,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            return self._from_exception(exc, attempt)
        except RefusedAddress as exc:
            return DeliveryResult("permanent", None, exc.reason)
        except (ValueError, OSError) as exc:
            return DeliveryResult("permanent", None, f"request failed: {type(exc).__name__}")
        try:
            return self._from_response(target, response, attempt, auth_test)
        finally:
            response.release_conn()

    def finish(self, target: RoomTarget, result: DeliveryResult) -> DeliveryResult:
        """``result`` with its reason redacted and clipped: what leaves the client."""
        secrets = (target.token,)
        reason = _clip(_scrub(result.reason, secrets))
        if reason != result.reason:
            result = replace(result, reason=reason)
        # The caller reports what matters (the dispatcher logs dead letters); a
        # command that runs without logging set up must not get a stray stderr line.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s (%s)", _scrub(str(target), secrets), result.outcome, result.reason)
        return result

    def _from_exception(self, exc: urllib3.exceptions.HTTPError, attempt: int) -> DeliveryResult:
        """No answer: a timeout or a connection that failed is retried, anything else not."""
        if isinstance(exc, urllib3.exceptions.LocationParseError):
            return DeliveryResult("permanent", None, f"request failed: {type(exc).__name__}")
        timeout = isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
            exc, urllib3.exceptions.NewConnectionError
        )
        return self.failed(exc, attempt, timeout=timeout)

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.policy.backoff_base, self.policy.backoff_cap, self._rng)

    def _from_response(
        self,
        target: RoomTarget,
        response: urllib3.BaseHTTPResponse,
        attempt: int,
        auth_test: bool,
    ) -> DeliveryResult:
        answer = Answer(response.status, response.headers, _read_capped(response))
        return self.answered(target, answer, attempt, auth_test)

    def answered(
        self, target: RoomTarget, answer: Answer, attempt: int, auth_test: bool
    ) -> DeliveryResult:
        """What an answer means, its rate-limit headers taken in by the pacing."""
        now = self._clock()
        self.pacing.observe(target, answer.headers, now)
        result = classify(
            answer, now=now, attempt=attempt, policy=self.policy, rng=self._rng, auth_test=auth_test
        )
        if result.rate_limited and result.retry_after is not None:
            self.pacing.block(target, now + result.retry_after)
        return result


def _ca_file_problem(ca_file: str | None) -> str | None:
    """The CA file checked when its set was loaded must still be a regular file:
    the TLS library opens it blocking, and a FIFO put in its place would hold the
    worker for ever."""
    if ca_file is None:
        return None
    try:
        regular = stat.S_ISREG(os.stat(ca_file).st_mode)
    except OSError as exc:
        return f"cannot read CA file {ca_file}: {exc.strerror or exc}"
    return None if regular else f"CA file {ca_file} is no longer a regular file"


def _read_capped(response: urllib3.BaseHTTPResponse) -> str:
    """At most ``MAX_ANSWER_BYTES`` of the body, read as a stream: a server may send
    gigabytes, and only HipChat's small error document is ever used. A body left
    unread closes its connection instead of returning it to the pool."""
    try:
        kept = response.read(MAX_ANSWER_BYTES + 1)
    except (urllib3.exceptions.HTTPError, OSError):
        kept = b""  # the status has arrived; a cut or broken body changes nothing about it
    if len(kept) > MAX_ANSWER_BYTES or not response.closed:
        response.close()
    return kept[:MAX_ANSWER_BYTES].decode("utf-8", "replace")


def _clip(text: str) -> str:
    """At most ``MAX_REASON`` characters; cut only after redaction, or half a token would show."""
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Redact the tokens, also as ``repr`` would quote them inside an error message."""
    variants = set(secrets)
    for secret in secrets:
        variants.add(repr(secret)[1:-1])
        variants.add(quote(secret, safe=""))
    return redact(text, variants)


@contextmanager
def _client(timeout: tuple[float, float]) -> Iterator[HipChatClient]:
    client = HipChatClient(timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def auth_test(
    endpoint: str, room_id: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> DeliveryResult:
    """Check one room's token against its server (``syncd test``); 202 means valid."""
    with _client(timeout) as client:
        return client.auth_test(RoomTarget(endpoint, room_id, token))
