"""What HipChat API v2 accepts and answers, as the bundled test server plays it.

The records a test reads back (what was received, each attempt), the faults
and limits a test can ask for, and the checks a notification body must pass,
with the error bodies HipChat answers when one fails. No sockets here: the
server in ``hipchat_server`` serves these rules.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

COLORS = frozenset({"yellow", "green", "red", "purple", "gray", "random"})
FORMATS = frozenset({"html", "text"})
MAX_MESSAGE = 10_000
MAX_FROM = 64
MAX_BODY = 1 << 20
NOTIFY = "notification"
RATE_LIMIT_MESSAGE = "You have exceeded the rate limit. Please wait before trying again."
# HipChat Server's answer past a budget: the 403 of HipChat's first API, with this message.
SERVER_RATE_LIMIT_MESSAGE = (
    "You have exceeded the rate limit. See https://www.hipchat.com/docs/api/rate_limiting"
)

FaultKind = Literal["status", "slow", "reset", "headers", "trickle", "raw"]
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Fault:
    """One way to misbehave for one request; build it with the class methods."""

    kind: FaultKind
    code: int = 0
    body: str = ""
    response_headers: Headers = ()
    seconds: float = 0.0
    raw: bytes = b""

    @classmethod
    def status(
        cls,
        code: int,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> Fault:
        """Answer ``code`` with a HipChat error body (or ``body`` verbatim) and ``headers``."""
        if body is None:
            body = error_body(code, message or phrase(code))
        return cls("status", code=code, body=body, response_headers=header_pairs(headers))

    @classmethod
    def server_error(cls, code: int = 500) -> Fault:
        return cls.status(code)

    @classmethod
    def rate_limited(
        cls, retry_after: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Fault:
        """A 429, with ``Retry-After`` when given."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        return cls.status(429, RATE_LIMIT_MESSAGE, headers=extra)

    @classmethod
    def flood_control(cls, *, headers: Mapping[str, str] | None = None) -> Fault:
        """The 403 HipChat Server answers past a budget (see ``SERVER_LIMITS``)."""
        return cls.status(403, SERVER_RATE_LIMIT_MESSAGE, headers=headers)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before handling the request normally."""
        return cls("slow", seconds=seconds)

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        """Answer 202 one byte every ``seconds``: each read gets data, the answer never ends."""
        return cls("trickle", seconds=seconds)

    @classmethod
    def answer_bytes(cls, raw: bytes) -> Fault:
        """Read the request, then answer ``raw`` instead of HTTP and close: what an
        endpoint that is not a HipChat server (a mail server, say) sends back."""
        return cls("raw", raw=raw)

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then drop the connection without an answer."""
        return cls("reset")

    @classmethod
    def with_headers(cls, headers: Mapping[str, str]) -> Fault:
        """Handle the request normally and add ``headers`` to the answer."""
        return cls("headers", response_headers=header_pairs(headers))


def header_pairs(headers: Mapping[str, str] | None) -> Headers:
    return tuple((str(k), str(v)) for k, v in (headers or {}).items())


def phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def error_body(code: int, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, "type": phrase(code)}})


RateLimitMode = Literal["hipchat", "server", "none"]
RATE_LIMIT_MODES: tuple[RateLimitMode, ...] = ("hipchat", "server", "none")


@dataclass(frozen=True)
class Limits:
    """HipChat's budgets (per token, per room) and how it refuses a request past one.

    Each budget is a fixed window, opened by the first request after the last
    one closed: HipChat reports one reset time per budget ("the next time the
    limit will be updated"), when the whole budget comes back, which a sliding
    window, freeing one request at a time, would not have.
    """

    rate: int = 500
    rate_window: float = 300.0
    flood: int = 30
    flood_window: float = 60.0
    refusal: int = 429
    message: str = RATE_LIMIT_MESSAGE
    retry_after: bool = True

    def steady_rate(self, rooms_per_token: Iterable[int]) -> float:
        """Requests a second these budgets allow for long, one count of rooms per token:
        each token's own budget or its rooms' flood budgets, whichever is less."""
        token = self.rate / self.rate_window
        room = self.flood / self.flood_window
        return sum(min(token, rooms * room) for rooms in rooms_per_token)


# HipChat (the cloud service): 500 API requests per 5 minutes per token and 30
# messages a minute per room, each answered 429 past its budget.
HIPCHAT_LIMITS = Limits()
# HipChat Server: 100 requests per 5 minutes per token by default, refused with a 403.
SERVER_LIMITS = Limits(rate=100, refusal=403, message=SERVER_RATE_LIMIT_MESSAGE, retry_after=False)


def limits_for(mode: str) -> Limits | None:
    """The budgets of a ``--rate-limits`` mode: ``hipchat``, ``server`` or ``none``."""
    modes: dict[str, Limits | None] = {
        "hipchat": HIPCHAT_LIMITS,
        "server": SERVER_LIMITS,
        "none": None,
    }
    if mode not in modes:
        raise ValueError(f"rate limits are one of {', '.join(modes)}, not {mode!r}")
    return modes[mode]


@dataclass(frozen=True)
class Window:
    """One budget's fixed window: the requests counted in it, and when it closes (unix time)."""

    used: int
    ends: float


@dataclass(frozen=True)
class Spent:
    """One request judged against one budget: the window after it, and whether it may pass."""

    window: Window
    limit: int
    allowed: bool

    @property
    def remaining(self) -> int:
        return max(self.limit - self.window.used, 0)

    @property
    def reset(self) -> int:
        """The unix second the window closes, as the reset headers give it."""
        return math.ceil(self.window.ends)

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window closes: never 0, or a client asks again at once."""
        return max(1, math.ceil(self.window.ends - now))


def spend(
    window: Window | None, now: float, budget: int, length: float, *, count: bool = True
) -> Spent:
    """Judge one request against a budget of ``budget`` per ``length`` seconds.

    A window that has closed (or none yet) is replaced by one opened ``now``. A
    request within the budget is counted; one past it is not, so that refused
    requests never push the reset further. ``count=False`` only looks: the
    current counts, for an answer that spent nothing of this budget.
    """
    if window is None or window.ends <= now:
        window = Window(0, now + length)
    allowed = window.used < budget
    if allowed and count:
        window = Window(window.used + 1, window.ends)
    return Spent(window, budget, allowed)


RATE_HEADERS = "X-Ratelimit"
FLOOD_HEADERS = "X-FloodControl"


def limit_headers(prefix: str, spent: Spent) -> Headers:
    """``{prefix}-Limit``, ``-Remaining`` and ``-Reset``, as every answer past the token
    check carries them: a client paces on them instead of learning the limit by a refusal."""
    return (
        (f"{prefix}-Limit", str(spent.limit)),
        (f"{prefix}-Remaining", str(spent.remaining)),
        (f"{prefix}-Reset", str(spent.reset)),
    )


def refusal(limits: Limits, spent: Spent, now: float) -> tuple[int, str, Headers]:
    """The status, body and extra headers of a request past ``spent``'s budget.

    HipChat answers 429 and, here, a ``Retry-After`` until the budget's window
    closes; HipChat Server answers 403 with its own message and no wait but the
    reset headers.
    """
    extra: Headers = (("Retry-After", str(spent.retry_after(now))),) if limits.retry_after else ()
    return limits.refusal, error_body(limits.refusal, limits.message), extra


@dataclass(frozen=True)
class ServerRoom:
    """A room the server knows: addressed by ``id`` or, if given, by ``name``."""

    id: str
    token: str = field(repr=False)
    name: str | None = None


@dataclass(frozen=True)
class Received:
    """A notification the server accepted."""

    room: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    time: float
    path: str

    @property
    def mentions(self) -> tuple[str, ...]:
        """Who this notification would ping (see :func:`mentions`)."""
        return mentions(self.body)


@dataclass(frozen=True)
class Attempt:
    """Any request the server saw and how it answered (``None``: connection dropped)."""

    method: str
    path: str
    room: str | None
    status: int | None
    time: float
    fault: FaultKind | None = None
    client_port: int = 0
    """The client's TCP port: requests over one kept-alive connection share it."""


AUTH_TEST_ANSWER = json.dumps(
    {
        "success": {
            "code": 202,
            "type": "Accepted",
            "message": "This auth_token has access to use this method.",
        }
    }
)


def parse_notification(raw: bytes, content_type: str) -> tuple[dict[str, Any], str | None]:
    """The request body and the first problem HipChat would answer 400 for, if any."""
    if "json" not in content_type.lower():
        return {}, "Content-Type must be application/json"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}, "The request body cannot be parsed as JSON"
    if not isinstance(data, dict):
        return {}, "The request body must be a JSON object"
    return data, _message_problem(data) or _option_problem(data) or _card_problem(data)


def _message_problem(data: Mapping[str, Any]) -> str | None:
    message = data.get("message")
    if not isinstance(message, str):
        return "Missing required field 'message'"
    if not 1 <= len(message) <= MAX_MESSAGE:
        return f"Message must be between 1 and {MAX_MESSAGE} characters (got {len(message)})"
    return None


def _option_problem(data: Mapping[str, Any]) -> str | None:
    if data.get("message_format", "html") not in FORMATS:
        return "message_format must be one of: html, text"
    if data.get("color", "yellow") not in COLORS:
        return "color must be one of: " + ", ".join(sorted(COLORS))
    if not isinstance(data.get("notify", False), bool):
        return "notify must be a boolean"
    sender = data.get("from", "")
    if not isinstance(sender, str) or len(sender) > MAX_FROM:
        return f"from must be a string of at most {MAX_FROM} characters"
    return None


CARD_STYLES = frozenset({"file", "image", "application", "link", "media"})
MAX_CARD_TITLE = 500
MAX_CARD_DESCRIPTION = 1000
MAX_CARD_LABEL = 50


def _card_problem(data: Mapping[str, Any]) -> str | None:
    """The card's required fields and limits, as the send-notification reference gives them."""
    card = data.get("card")
    if card is None:
        return None
    if not isinstance(card, dict):
        return "card must be an object"
    if card.get("style") not in CARD_STYLES:
        return "card.style must be one of: " + ", ".join(sorted(CARD_STYLES))
    if not isinstance(card.get("id"), str) or not card["id"]:
        return "Missing required field 'card.id'"
    title = card.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_CARD_TITLE:
        return f"card.title must be 1 to {MAX_CARD_TITLE} characters"
    return _card_description_problem(card.get("description")) or _card_attributes_problem(
        card.get("attributes", [])
    )


def _card_description_problem(description: object) -> str | None:
    if description is None or isinstance(description, str):
        return None
    if not isinstance(description, dict) or description.get("format") not in FORMATS:
        return "card.description must be a string or {value, format: html|text}"
    value = description.get("value")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CARD_DESCRIPTION:
        return f"card.description.value must be 1 to {MAX_CARD_DESCRIPTION} characters"
    return None


def _card_attributes_problem(attributes: object) -> str | None:
    if not isinstance(attributes, list):
        return "card.attributes must be a list"
    for attribute in attributes:
        value = attribute.get("value") if isinstance(attribute, dict) else None
        label = value.get("label") if isinstance(value, dict) else None
        if not isinstance(label, str) or not 1 <= len(label) <= MAX_CARD_LABEL:
            return f"card.attributes[].value.label must be 1 to {MAX_CARD_LABEL} characters"
        name = attribute.get("label", "x")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_CARD_LABEL:
            return f"card.attributes[].label must be 1 to {MAX_CARD_LABEL} characters"
    return None


# "@" then a name (or all, here), where a word does not go on before it: how a
# chat client finds mentions. A zero-width space after "@" is not a name.
_MENTION = re.compile(r"(?<!\w)@(\w+)")
_TAG = re.compile(r"<[^>]*>")
_CARD_KEYS_NOT_SHOWN = frozenset({"id", "style", "format"})


def mentions(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The names a notification mentions, in order, ``all`` and ``here`` among them.

    Stricter than HipChat, which finds mentions in text messages only: the
    text of an HTML message (tags left out, entities read) and every shown
    text of the card are read too, so a test fails on a mention that a
    client could one day start to honour.
    """
    message = body.get("message")
    texts = [message] if isinstance(message, str) else []
    if body.get("message_format", "html") == "html":
        texts = [html.unescape(_TAG.sub(" ", t)) for t in texts]
    texts.extend(_card_texts(body.get("card")))
    return tuple(m.group(1) for text in texts for m in _MENTION.finditer(text))


def _card_texts(value: object, key: str = "") -> Iterator[str]:
    if isinstance(value, str) and key not in _CARD_KEYS_NOT_SHOWN:
        yield html.unescape(_TAG.sub(" ", value))
    elif isinstance(value, Mapping):
        for inner_key, inner in value.items():
            yield from _card_texts(inner, str(inner_key))
    elif isinstance(value, list):
        for inner in value:
            yield from _card_texts(inner, key)
