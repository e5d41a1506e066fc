"""An error as a HipChat application card, for clients that show cards.

HipChat API v2 lets a notification carry a ``card`` that card-aware clients
show instead of the message; the message stays the fallback for the others.
An application card has a title, a description, a link, and attributes as
label/value pairs; what it shows follows the integration's display settings.
The limits are the API's: title 1-500 characters, description 1-1000,
attribute labels and values 1-50.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from syncd.config.model import Display, Integration

MAX_TITLE = 500
MAX_DESCRIPTION = 1000
MAX_LABEL = 50
ELLIPSIS = "…"


# "@" and the characters a client may read as one (fullwidth, small).
_AT_SIGNS = ("@", "\uff20", "\ufe6b")
ZERO_WIDTH_SPACE = "\u200b"


def defuse_mentions(text: str) -> str:
    """Event text as it may stand in a room: a zero-width space after each ``@``
    keeps ``@all`` from pinging anyone. Only the integration's own mention
    targets may mention; an event comes from a crashing program, or from
    whoever can make one crash with a message of their choosing."""
    for sign in _AT_SIGNS:
        if sign in text:
            text = text.replace(sign, sign + ZERO_WIDTH_SPACE)
    return text


# Printable ASCII but "@": no character of it is one ``_unsafe_in_link`` names.
_PLAIN_LINK = re.compile(r"[\x21-\x3f\x41-\x7e]*")


def _unsafe_in_link(char: str) -> bool:
    """What would end a link where a chat client reads one (spaces, controls,
    format characters such as bidi overrides) or start a mention inside it."""
    return char in _AT_SIGNS or char.isspace() or unicodedata.category(char) in ("Cc", "Cf")


def safe_href(href: object) -> str | None:
    """The event's link as the message and the card show it, or None when it is
    not http(s).

    A zero-width space would break the link, so the characters that could end
    it or mention someone are percent-encoded instead: the link stays one word,
    and ``https://x/ @all`` cannot turn into a mention after it.
    """
    if not isinstance(href, str) or not href.lower().startswith(("http://", "https://")):
        return None
    if _PLAIN_LINK.fullmatch(href):
        return href  # the common link, printable ASCII without "@": nothing to encode
    return "".join(quote(c, safe="") if _unsafe_in_link(c) else c for c in href)


def clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _shown(text: str, limit: int) -> str:
    return clipped(defuse_mentions(text), limit)


def render_card(event: Mapping[str, Any], integration: Integration) -> dict[str, Any]:
    """The application card for ``event``; pure, like the message beside it."""
    fingerprint = str(event.get("fingerprint", ""))
    card: dict[str, Any] = {
        "style": "application",
        "format": "medium",
        "id": str(event.get("id") or fingerprint),
        "title": _shown(_title(event, integration.display, fingerprint), MAX_TITLE),
        "description": {
            "value": _shown(_description(event, integration.display, fingerprint), MAX_DESCRIPTION),
            "format": "text",
        },
    }
    href = safe_href(event.get("href"))
    if href is not None:
        card["url"] = href
    shown = [
        (name, value)
        for name, value in shown_attributes(event, integration.display)
        if name and value
    ]
    if shown:
        card["attributes"] = [
            {"label": _shown(name, MAX_LABEL), "value": {"label": _shown(value, MAX_LABEL)}}
            for name, value in shown
        ]
    return card


def _strings(value: object) -> list[str]:
    return [str(v) for v in value if str(v)] if isinstance(value, list) else []


def _title(event: Mapping[str, Any], display: Display, fingerprint: str) -> str:
    classifiers = _strings(event.get("classifiers"))
    lead = classifiers[0] if display.classifiers and classifiers else "Error"
    return f"{lead} in {event.get('project', '')}: {fingerprint}"


def _description(event: Mapping[str, Any], display: Display, fingerprint: str) -> str:
    frames = _strings(event.get("callstack"))
    return frames[0] if display.callstack and frames else f"fingerprint {fingerprint}"


HOSTNAME = "hostname"


def shown_attributes(event: Mapping[str, Any], display: Display) -> list[tuple[str, str]]:
    """The attributes the display settings show, the host among them, for the card
    and the message alike (the message's module imports this one).

    Backtrace's setting reads "include hostname in attributes": the host is one
    more attribute, named ``hostname``, shown where attributes are shown and the
    list admits it, once. An attribute the event itself names ``hostname`` is the
    host; the event's ``hostname`` field stands in when that is missing or empty,
    after the other attributes unless ``attribute_list`` places it.
    """
    if not display.attributes:
        return []
    values = _with_host(event, display.include_hostname)
    names = display.attribute_list or tuple(values)
    return [(name, values[name]) for name in names if name in values]


def _with_host(event: Mapping[str, Any], include_hostname: bool) -> dict[str, str]:
    raw = event.get("attributes")
    values = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    hostname = event.get("hostname")
    if not include_hostname:
        values.pop(HOSTNAME, None)
    elif not values.get(HOSTNAME) and isinstance(hostname, str) and hostname:
        values[HOSTNAME] = hostname
    return values
