"""The HipChat API v2 client: room notifications, outcome classification, pacing.

The client never raises for a delivery problem: every outcome, a refused token
as much as a dropped connection, becomes a :class:`DeliveryResult` that the
dispatcher can act on. Tokens travel only in the ``Authorization`` header, and
every text this module produces (results, log lines) is redacted first, because
``requests`` and ``http.client`` put URLs and header values into their errors.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol
from urllib.parse import quote

import requests

from syncd import __version__
from syncd.message import Message
from syncd.secrets import redact

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "permanent"]
Clock = Callable[[], float]

DEFAULT_TIMEOUT = (3.05, 10.0)
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 300.0
# A server's own wait is honoured even past our backoff cap, up to this.
DEFAULT_MAX_SERVER_WAIT = 3600.0
MAX_REASON = 500
RATE_LIMIT_TEXT = "exceeded the rate limit"
USER_AGENT = f"syncd/{__version__}"

# What may stand in an HTTP header value; anything else would make requests or
# http.client raise an error that quotes the header, token included.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
# A "reset" below this is a number of seconds, not a unix time.
_UNIX_TIME_FLOOR = 1_000_000_000


@dataclass(frozen=True)
class DeliveryResult:
    """How one request ended and what to do next.

    ``retry_after`` is set for every ``retry`` outcome: the server's own wait
    when it gave one, else a jittered backoff for the attempt.
    """

    outcome: Outcome
    status: int | None
    reason: str
    retry_after: float | None = None
    rate_limited: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


@dataclass(frozen=True)
class RoomTarget:
    """A room on one HipChat server and the token that may post to it."""

    endpoint: str
    room_id: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))

    def __str__(self) -> str:
        return f"room {self.room_id} at {self.endpoint}"

    @property
    def url(self) -> str:
        return notification_url(self.endpoint, self.room_id)

    @property
    def room_key(self) -> str:
        """Identifies the room for flood control: the same room on the same server."""
        return self.url

    @property
    def token_key(self) -> str:
        """Identifies the token for rate limits, without holding the token itself."""
        digest = hashlib.sha256(self.token.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.endpoint} token:{digest[:16]}"


def notification_url(endpoint: str, room_id: str) -> str:
    """``{endpoint}/v2/room/{id}/notification``; a room name may hold ``/``, ``?`` or ``#``."""
    return f"{endpoint.rstrip('/')}/v2/room/{quote(room_id, safe='')}/notification"


def notification_body(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": message.text,
        "message_format": message.message_format,
        "color": message.color,
        "notify": message.notify,
    }
    if message.sender is not None:
        body["from"] = message.sender
    return body


class RandomSource(Protocol):
    def random(self) -> float: ...


def backoff(attempt: int, base: float, cap: float, rng: RandomSource) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(cap, base * 2**attempt)]``.

    Jitter spreads the retries of many workers that failed together.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, not {attempt}")
    if base <= 0 or cap < 0:
        raise ValueError("base must be positive and cap not negative")
    ceiling = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return rng.random() * ceiling


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _reset_time(value: float, now: float) -> float:
    return value if value >= _UNIX_TIME_FLOOR else now + value


@dataclass
class _Window:
    remaining: float
    reset_at: float


class Pacing:
    """What the last responses said about the budget left, per token and per room.

    HipChat allows a token about 500 requests in 5 minutes and a room about 30
    messages a minute; a dispatcher that asks :meth:`delay_before_send` waits
    instead of spending a request on a certain 429. Thread-safe; times are unix
    seconds given by the caller.
    """

    def __init__(self, max_delay: float = DEFAULT_BACKOFF_CAP) -> None:
        self._max_delay = max_delay
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._blocked: dict[str, float] = {}

    def observe(self, target: RoomTarget, headers: Mapping[str, str], now: float) -> None:
        """Take in the ``X-Ratelimit-*`` and ``X-FloodControl-*`` headers of a response."""
        pairs = (
            (target.token_key, "X-Ratelimit-Remaining", "X-Ratelimit-Reset"),
            (target.room_key, "X-FloodControl-Remaining", "X-FloodControl-Reset"),
        )
        with self._lock:
            for key, remaining_name, reset_name in pairs:
                remaining = _header_number(headers, remaining_name)
                reset = _header_number(headers, reset_name)
                if remaining is None or reset is None:
                    continue
                self._windows[key] = _Window(remaining, _reset_time(reset, now))

    def note_send(self, target: RoomTarget, now: float) -> None:
        """Count a request about to go out, so that concurrent senders share the budget."""
        with self._lock:
            for key in (target.token_key, target.room_key):
                window = self._windows.get(key)
                if window is not None and window.reset_at > now:
                    window.remaining -= 1

    def block(self, target: RoomTarget, until: float) -> None:
        """Hold every send to this room until ``until`` (after a rate-limit answer)."""
        with self._lock:
            key = target.room_key
            self._blocked[key] = max(until, self._blocked.get(key, until))

    def delay_before_send(self, target: RoomTarget, now: float) -> float:
        """Seconds to wait before the next request to ``target``; 0 means send now."""
        delay = 0.0
        with self._lock:
            for key in (target.token_key, target.room_key):
                window = self._windows.get(key)
                if window is not None:
                    if window.reset_at <= now:
                        del self._windows[key]
                    elif window.remaining <= 0:
                        delay = max(delay, window.reset_at - now)
            until = self._blocked.get(target.room_key)
            if until is not None:
                if until <= now:
                    del self._blocked[target.room_key]
                else:
                    delay = max(delay, until - now)
        return min(delay, self._max_delay)


def _error_text(response: requests.Response) -> str:
    """The ``{"error": {"code", "type", "message"}}`` body as one line, else the raw start."""
    raw = response.text
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        kind = err.get("type") or response.reason or ""
        message = err.get("message") or ""
        return f"{kind}: {message}".strip(": ")
    return f"{response.reason or ''} {' '.join(raw.split())}".strip()


def _is_rate_limit(status: int, detail: str) -> bool:
    return status == 429 or (status == 403 and RATE_LIMIT_TEXT in detail.lower())


class HipChatClient:
    """Posts room notifications; one ``requests.Session`` per calling thread.

    Sessions keep connections alive but are not safe to share between threads,
    hence one per worker. :meth:`close` closes them all.
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_server_wait: float = DEFAULT_MAX_SERVER_WAIT,
        rng: RandomSource | None = None,
        clock: Clock = time.time,
        pacing: Pacing | None = None,
    ) -> None:
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_server_wait = max_server_wait
        self.pacing = pacing if pacing is not None else Pacing(max_delay=max_server_wait)
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._clock = clock
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._verify: str | bool = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._closed = False
        self._proxy_cache: dict[str, dict[str, str]] = {}

    def __enter__(self) -> HipChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._sessions_lock:
            self._closed = True
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _session(self) -> requests.Session:
        """This thread's session.

        It does not read the environment (``trust_env``): requests would look up
        proxies, CA bundle and .netrc again on every request, a tenth of a send's
        CPU, and a .netrc entry would replace the room's bearer token. Proxies
        and the CA bundle are read from the environment once instead. Requests
        are prepared by :meth:`_post` and handed to ``Session.send``: merging
        session settings into each request cost another tenth, and a HipChat
        server has no cookies for us to keep.
        """
        if self._closed:
            raise RuntimeError("HipChatClient is closed")
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self._verify
            session.headers["User-Agent"] = USER_AGENT
            with self._sessions_lock:
                self._sessions.append(session)
            self._local.session = session
        return session

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies for ``url``'s host, read once per host."""
        base = url.split("/", 3)[2] if "://" in url else url
        proxies = self._proxy_cache.get(base)
        if proxies is None:
            proxies = requests.utils.get_environ_proxies(url)
            self._proxy_cache[base] = proxies
        return proxies

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
        secrets = (target.token,)
        if not _TOKEN_CHARS.fullmatch(target.token):
            return self._finish(
                target,
                DeliveryResult(
                    "permanent",
                    None,
                    "the token holds characters that cannot be sent in an HTTP header",
                ),
                secrets,
            )
        now = self._clock()
        self.pacing.note_send(target, now)
        try:
            session = self._session()
            request = requests.PreparedRequest()
            request.prepare(
                method="POST",
                url=target.url,
                params={"auth_test": "true"} if auth_test else None,
                json=body,
                headers={**session.headers, "Authorization": f"Bearer {target.token}"},
            )
            response = session.send(
                request,
                timeout=self.timeout,
                allow_redirects=False,
                proxies=self._proxies(target.url),
                verify=self._verify,
                stream=False,
                cert=None,
            )
        except requests.RequestException as exc:
            result = self._from_exception(exc, attempt)
        except (ValueError, OSError) as exc:
            result = DeliveryResult("permanent", None, f"request failed: {type(exc).__name__}")
        else:
            with response:
                result = self._from_response(target, response, attempt, auth_test)
        return self._finish(target, result, secrets)

    def _finish(
        self, target: RoomTarget, result: DeliveryResult, secrets: tuple[str, ...]
    ) -> DeliveryResult:
        reason = _clip(_scrub(result.reason, secrets))
        if reason != result.reason:
            result = replace(result, reason=reason)
        level = logging.WARNING if result.outcome == "permanent" else logging.DEBUG
        log.log(
            level,
            "%s: %s (%s)",
            _scrub(str(target), secrets),
            result.outcome,
            result.reason,
        )
        return result

    def _from_exception(self, exc: requests.RequestException, attempt: int) -> DeliveryResult:
        name = type(exc).__name__
        retryable = isinstance(
            exc,
            requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError,
        )
        if isinstance(exc, requests.exceptions.InvalidHeader):
            return DeliveryResult("permanent", None, f"request failed: {name}")
        detail = f"{name}: {exc}"
        if retryable:
            wait = backoff(attempt, self.backoff_base, self.backoff_cap, self._rng)
            return DeliveryResult("retry", None, detail, retry_after=wait)
        return DeliveryResult("permanent", None, detail)

    def _from_response(
        self, target: RoomTarget, response: requests.Response, attempt: int, auth_test: bool
    ) -> DeliveryResult:
        now = self._clock()
        status = response.status_code
        headers = response.headers
        self.pacing.observe(target, headers, now)
        if 200 <= status < 300:
            if not auth_test:
                return DeliveryResult("delivered", status, "sent")
            note = "" if status == 202 else f" (answered {status}: auth_test was ignored)"
            return DeliveryResult("delivered", status, "token accepted" + note)
        detail = _error_text(response)
        reason = f"HTTP {status} {detail}".strip()
        if _is_rate_limit(status, detail):
            wait = self._server_wait(headers, now, rate_limited=True)
            if wait is None:
                wait = backoff(attempt, self.backoff_base, self.backoff_cap, self._rng)
            self.pacing.block(target, now + wait)
            return DeliveryResult("retry", status, reason, retry_after=wait, rate_limited=True)
        if status >= 500 or status == 408:
            wait = self._server_wait(headers, now, rate_limited=False)
            if wait is None:
                wait = backoff(attempt, self.backoff_base, self.backoff_cap, self._rng)
            return DeliveryResult("retry", status, reason, retry_after=wait)
        return DeliveryResult("permanent", status, reason)

    def _server_wait(
        self, headers: Mapping[str, str], now: float, *, rate_limited: bool
    ) -> float | None:
        """The wait the server asked for, capped; ``None`` when it named none."""
        retry_after = headers.get("Retry-After")
        if retry_after is not None:
            wait = parse_retry_after(retry_after, now)
            if wait is not None:
                return min(wait, self.max_server_wait)
        if not rate_limited:
            return None
        waits: list[float] = []
        for remaining_name, reset_name in (
            ("X-Ratelimit-Remaining", "X-Ratelimit-Reset"),
            ("X-FloodControl-Remaining", "X-FloodControl-Reset"),
        ):
            reset = _header_number(headers, reset_name)
            remaining = _header_number(headers, remaining_name)
            if reset is not None and (remaining is None or remaining <= 0):
                waits.append(_reset_time(reset, now) - now)
        if not waits or max(waits) <= 0:
            return None
        return min(max(waits), self.max_server_wait)


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


__all__ = [
    "DEFAULT_TIMEOUT",
    "DeliveryResult",
    "HipChatClient",
    "Pacing",
    "RoomTarget",
    "auth_test",
    "backoff",
    "notification_body",
    "notification_url",
    "parse_retry_after",
]
