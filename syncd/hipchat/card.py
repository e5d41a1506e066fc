"""An error as a HipChat application card, for clients that show cards.

HipChat API v2 lets a notification carry a ``card`` that card-aware clients
show instead of the message; the message stays the fallback for the others.
An application card has a title, a description, a link, and attributes as
label/value pairs; what it shows follows the integration's display settings.
The limits are the API's: title 1-500 characters, description 1-1000,
attribute labels and values 1-50.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.config.model import Display, Integration

MAX_TITLE = 500
MAX_DESCRIPTION = 1000
MAX_LABEL = 50
ELLIPSIS = "…"


def clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def render_card(event: Mapping[str, Any], integration: Integration) -> dict[str, Any]:
    """The application card for ``event``; pure, like the message beside it."""
    fingerprint = str(event.get("fingerprint", ""))
    card: dict[str, Any] = {
        "style": "application",
        "format": "medium",
        "id": str(event.get("id") or fingerprint),
        "title": clipped(_title(event, integration.display, fingerprint), MAX_TITLE),
        "description": {
            "value": clipped(
                _description(event, integration.display, fingerprint), MAX_DESCRIPTION
            ),
            "format": "text",
        },
    }
    href = event.get("href")
    if isinstance(href, str) and href.lower().startswith(("http://", "https://")):
        card["url"] = href
    shown = [*_attributes(event, integration.display), *_host(event, integration.display)]
    if shown:
        card["attributes"] = [
            {"label": clipped(name, MAX_LABEL), "value": {"label": clipped(value, MAX_LABEL)}}
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


def _attributes(event: Mapping[str, Any], display: Display) -> list[tuple[str, str]]:
    values = event.get("attributes")
    if not display.attributes or not isinstance(values, Mapping):
        return []
    names = display.attribute_list or tuple(values)
    return [(str(n), str(values[n])) for n in names if n in values and str(n) and str(values[n])]


def _host(event: Mapping[str, Any], display: Display) -> list[tuple[str, str]]:
    hostname = event.get("hostname")
    if display.include_hostname and isinstance(hostname, str) and hostname:
        return [("host", hostname)]
    return []
