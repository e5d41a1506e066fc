"""HipChat API v2 as pure functions: what a request is, and what an answer means.

Building a notification request and classifying the answer (delivered, retry
at a time, or permanent, with the reason) need no socket and no clock: the
caller passes the answer's status, headers and body, ``now`` and a random
source for jitter. The I/O (connection pools, sending) is ``syncd.hipchat.client``'s; the
budget bookkeeping between requests is ``syncd.hipchat.pacing``'s. Both read the
rate-limit headers through :data:`LIMIT_HEADERS`, the one table of them.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from typing import Any, Literal, Protocol
from urllib.parse import quote

from syncd.config.model import Color, MessageFormat


@dataclass(frozen=True)
class Message:
    """What the client posts: the ``message`` and the fields that go with it."""

    text: str
    message_format: MessageFormat
    color: Color
    notify: bool
    sender: str | None = None
    card: Mapping[str, Any] | None = None  # shown instead of the text where clients can


SendOutcome = Literal["delivered", "retry", "permanent"]

RATE_LIMIT_TEXT = "exceeded the rate limit"
# A "reset" below this is a number of seconds, not a unix time.
_UNIX_TIME_FLOOR = 1_000_000_000


@dataclass(frozen=True)
class LimitHeaders:
    """A budget HipChat reports with each answer: what is left, and when it resets."""

    scope: Literal["token", "room"]
    remaining: str
    reset: str
    # The longest the budget's window lasts, where HipChat states it: every request
    # it counts came in within that long, so the window ends no later than that
    # long after any answer in it. A reset header in whole seconds may say up to
    # a second more.
    period: float | None = None


# HipChat allows a token about 500 requests in 5 minutes and a room about 30
# messages a minute; these headers report both budgets.
LIMIT_HEADERS = (
    LimitHeaders("token", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"),
    LimitHeaders("room", "X-FloodControl-Remaining", "X-FloodControl-Reset", period=60.0),
)


@dataclass(frozen=True)
class DeliveryResult:
    """How one request ended and what to do next.

    ``retry_after`` is set for every ``retry`` outcome: the server's own wait
    when it gave one, else a jittered backoff for the attempt.
    """

    outcome: SendOutcome
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
    ca_file: str | None = None  # None: the system's CAs (or REQUESTS_CA_BUNDLE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))

    def __str__(self) -> str:
        return f"room {self.room_id} at {self.endpoint}"

    # Worked out once per target: a send asks for the URL and both keys several
    # times (pacing before, at and after it), and a digest costs a microsecond each.
    @cached_property
    def url(self) -> str:
        return notification_url(self.endpoint, self.room_id)

    @property
    def room_key(self) -> str:
        """Identifies the room for flood control: the same room on the same server."""
        return self.url

    @cached_property
    def token_key(self) -> str:
        """Identifies the token for rate limits, without holding the token itself."""
        digest = hashlib.sha256(self.token.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.endpoint} token:{digest[:16]}"

    def key(self, scope: Literal["token", "room"]) -> str:
        return self.token_key if scope == "token" else self.room_key


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
    if message.card is not None:
        body["card"] = dict(message.card)
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


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def reset_time(value: float, now: float) -> float:
    """A reset header as a unix time: HipChat sends a unix time, some proxies seconds."""
    return value if value >= _UNIX_TIME_FLOOR else now + value


MAX_ERROR_MESSAGE = 200
MIN_SERVER_WAIT = 1.0
# What is kept of an answer's body: HipChat's error documents are small.
MAX_ANSWER_BYTES = 64 * 1024


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_message(body: str) -> str | None:
    """``error.message`` of HipChat's ``{"error": {...}}`` body: printable, 200 characters at most.

    Nothing else of an answer is ever shown: an endpoint may be any server,
    and its body (an internal service's page, say) is not ours to echo.
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return None
    printable = "".join(c if c.isprintable() else " " for c in " ".join(message.split()))
    if len(printable) > MAX_ERROR_MESSAGE:
        return printable[: MAX_ERROR_MESSAGE - 3] + "..."
    return printable


def error_text(status: int, body: str) -> str:
    """``HTTP 401 Unauthorized: Invalid OAuth session``: the status, its standard
    phrase, and HipChat's own message when the body is HipChat's error document."""
    head = f"HTTP {status} {_status_phrase(status)}".rstrip()
    message = error_message(body)
    return f"{head}: {message}" if message else head


def is_rate_limit(status: int, body: str) -> bool:
    """429, or the 403 whose body says the rate limit was exceeded (HipChat Server does that)."""
    return status == 429 or (status == 403 and RATE_LIMIT_TEXT in body[:65536].lower())


@dataclass(frozen=True)
class RetryPolicy:
    backoff_base: float
    backoff_cap: float
    # A server's own wait is honoured even past our backoff cap, up to this.
    max_server_wait: float


@dataclass(frozen=True)
class Answer:
    """What came back for one request, as plain values."""

    status: int
    headers: Mapping[str, str]
    body: str


def _limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The longest wait until an exhausted budget resets, if a header names one."""
    waits = []
    for limit in LIMIT_HEADERS:
        reset = header_number(headers, limit.reset)
        remaining = header_number(headers, limit.remaining)
        if reset is not None and (remaining is None or remaining <= 0):
            waits.append(reset_time(reset, now) - now)
    return max(waits) if waits and max(waits) > 0 else None


def server_wait(
    headers: Mapping[str, str], now: float, policy: RetryPolicy, *, rate_limited: bool
) -> float | None:
    """The wait the server asked for, between 1 s and the cap; ``None`` when it named none.

    A server that answers ``Retry-After: 0`` to every request would otherwise
    be asked again thousands of times a second.
    """
    retry_after = headers.get("Retry-After")
    wait = parse_retry_after(retry_after, now) if retry_after is not None else None
    if wait is None and rate_limited:
        wait = _limit_wait(headers, now)
    if wait is None:
        return None
    return min(max(wait, MIN_SERVER_WAIT), policy.max_server_wait)


def _accepted(status: int, auth_test: bool) -> DeliveryResult:
    if not auth_test:
        return DeliveryResult("delivered", status, "sent")
    note = "" if status == 202 else f" (answered {status}: auth_test was ignored)"
    return DeliveryResult("delivered", status, "token accepted" + note)


def classify(
    answer: Answer,
    *,
    now: float,
    attempt: int,
    policy: RetryPolicy,
    rng: RandomSource,
    auth_test: bool = False,
) -> DeliveryResult:
    """What an answer means: delivered, retry (when), or permanent (why)."""
    status = answer.status
    if 200 <= status < 300:
        return _accepted(status, auth_test)
    reason = error_text(status, answer.body)
    rate_limited = is_rate_limit(status, answer.body)
    if not rate_limited and status < 500 and status != 408:
        return DeliveryResult("permanent", status, reason)
    wait = server_wait(answer.headers, now, policy, rate_limited=rate_limited)
    if wait is None:
        wait = backoff(attempt, policy.backoff_base, policy.backoff_cap, rng)
    return DeliveryResult("retry", status, reason, retry_after=wait, rate_limited=rate_limited)


# How far into an exception's causes a description looks, and how many of
# their classes it names: enough for urllib3's wrappers around an OSError.
_MAX_CAUSES = 8
_MAX_NAMED = 3
_SSL_REASON = re.compile(r"[A-Z0-9_]{1,64}")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (arguments, ``reason``, cause, context),
    each once, breadth first, at most ``_MAX_CAUSES``."""
    seen: list[BaseException] = []
    queue = [exc]
    while queue and len(seen) < _MAX_CAUSES:
        current = queue.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        inner = [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        inner.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        queue.extend(inner)
    return seen


def _errno_text(causes: list[BaseException]) -> str | None:
    for cause in causes:
        number = getattr(cause, "errno", None)
        # An ssl.SSLError's errno is OpenSSL's error kind, not the system's.
        if isinstance(number, int) and number > 0 and not isinstance(cause, ssl.SSLError):
            name = errno.errorcode.get(number)
            return f"errno {number} {name}" if name else f"errno {number}"
    return None


def _ssl_text(causes: list[BaseException]) -> str | None:
    """OpenSSL's reason code (``CERTIFICATE_VERIFY_FAILED``) and verify code: names
    from OpenSSL's own tables, never the certificate's text."""
    for cause in causes:
        reason = getattr(cause, "reason", None)
        if isinstance(reason, str) and _SSL_REASON.fullmatch(reason):
            code = getattr(cause, "verify_code", None)
            return f"{reason}, verify code {code}" if isinstance(code, int) and code else reason
    return None


def exception_text(exc: BaseException) -> str:
    """``NewConnectionError (ConnectionRefusedError, errno 111 ECONNREFUSED)``: the
    classes of an exception and of what it wraps, and the errno, and nothing else.

    An exception's text may hold what the peer sent (http.client quotes a status
    line it cannot parse, urllib3 a header) and the peer may be any server: an
    SMTP banner with a secret in it would reach ``/status`` and the log. Class
    names and numbers are ours and the system's.
    """
    causes = _causes(exc)
    names = list(dict.fromkeys(type(c).__name__ for c in causes[1:]))[:_MAX_NAMED]
    names = [n for n in names if n != type(exc).__name__]
    details = [*names, *(t for t in (_errno_text(causes), _ssl_text(causes)) if t)]
    head = type(exc).__name__
    return f"{head} ({', '.join(details)})" if details else head
