"""Render one error event into the HipChat message one integration sends for it.

Pure: no I/O, no clock. The result always fits HipChat's 10,000 character limit;
it is built from parts that are shortened or dropped whole, so HTML output never
ends inside an entity or a tag. Lengths are counted in UTF-16 code units, which
is never less than the code point count a server may use.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from syncd.config.model import Display, Integration, MessageFormat
from syncd.hipchat.card import render_card
from syncd.hipchat.wire import Message

MAX_MESSAGE_CHARS = 10_000
MAX_FRAMES = 10
ELLIPSIS = "…"

# Per-part ceilings, so one hostile value cannot crowd out everything else.
_MAX_TITLE_PIECE = 200
_MAX_MENTIONS = 500
_MAX_HREF = 2_100
_MAX_SINCE = 100
_MAX_HOSTNAME = 300
_MAX_CLASSIFIER = 200
_MAX_FRAME = 500
_MAX_ATTRIBUTE_NAME = 100
_MAX_ATTRIBUTE_VALUE = 1_000
# Smallest room left for a value worth shortening rather than dropping.
_MIN_SHORTENED = 16
# Enough for the parts never dropped: mentions, title, count line and link.
_MIN_LIMIT = 4_000


def length(text: str) -> int:
    """Size of ``text`` in UTF-16 code units (a character outside the BMP counts 2)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


Escape = Callable[[str], str]


def _html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def _plain(text: str) -> str:
    return text


def _defuse_mentions(text: str) -> str:
    """Event text in a text message: a zero-width space keeps ``@all`` from pinging a room."""
    return text.replace("@", "@\u200b")


def fit(raw: str, budget: int, escape: Escape) -> str:
    """``escape(raw)`` if it fits ``budget``, else the longest escaped prefix plus an ellipsis.

    The cut is made in ``raw`` before escaping, so no entity is ever split.
    """
    whole = escape(raw)
    if length(whole) <= budget:
        return whole
    room = budget - length(ELLIPSIS)
    if room <= 0:
        return ""
    lo, hi = 0, len(raw)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if length(escape(raw[:mid])) <= room:
            lo = mid
        else:
            hi = mid - 1
    return escape(raw[:lo]) + ELLIPSIS


@dataclass(frozen=True)
class _Style:
    escape: Escape
    line_break: str
    bold_open: str
    bold_close: str
    block_open: str
    block_close: str
    block_break: str

    def bold(self, escaped: str) -> str:
        return f"{self.bold_open}{escaped}{self.bold_close}"


_HTML = _Style(_html_escape, "<br>", "<b>", "</b>", "<pre>", "</pre>", "\n")
_TEXT = _Style(_defuse_mentions, "\n", "", "", "", "", "\n")


@dataclass(frozen=True)
class _Item:
    """One line of a section: fixed (already escaped) markup, then a raw value."""

    prefix: str
    raw: str
    cap: int


@dataclass(frozen=True)
class _Section:
    title: str
    items: tuple[_Item, ...]
    layout: Literal["lines", "inline", "block"] = "lines"
    omitted: int = 0


def _frame(section: _Section, style: _Style) -> tuple[str, str, str]:
    """Head, separator and closer of a section's layout."""
    if section.layout == "block":
        return (
            f"{section.title}{style.line_break}{style.block_open}",
            style.block_break,
            style.block_close,
        )
    if section.layout == "inline":
        return f"{section.title} ", ", ", ""
    return f"{section.title}{style.line_break}", style.line_break, ""


def _marker(dropped: int) -> str:
    return f"{ELLIPSIS} {dropped} more"


def _fit_items(
    items: Sequence[_Item], sep: str, room: int, style: _Style
) -> tuple[list[str], bool]:
    """Whole items while they fit; the first that does not is shortened if a useful part fits."""
    parts: list[str] = []
    used = 0
    for item in items:
        gap = length(sep) if parts else 0
        available = room - used - gap - length(item.prefix)
        value = fit(item.raw, item.cap, style.escape)
        if length(value) <= available:
            used += gap + length(item.prefix) + length(value)
            parts.append(item.prefix + value)
            continue
        if available >= _MIN_SHORTENED:
            parts.append(item.prefix + fit(item.raw, available, style.escape))
        return parts, True
    return parts, False


def _render_section(section: _Section, style: _Style, budget: int) -> tuple[str, bool] | None:
    """The section within ``budget`` and whether the budget cut it.

    Whole items come first; the first that does not fit is shortened if a useful
    part of it fits, and the rest are counted in a closing marker.
    """
    head, sep, closer = _frame(section, style)
    worst_marker = length(sep) + length(_marker(len(section.items) + section.omitted))
    room = budget - length(head) - length(closer) - worst_marker
    parts, cut = _fit_items(section.items, sep, room, style)
    if not parts:
        return None
    dropped = len(section.items) - len(parts) + section.omitted
    body = sep.join(parts) + (sep + _marker(dropped) if dropped else "")
    return f"{head}{body}{closer}", cut


def _title(event: Mapping[str, Any], show_classifier: bool, style: _Style) -> str:
    project = fit(str(event.get("project", "")), _MAX_TITLE_PIECE, style.escape)
    new = bool(event.get("new_group"))
    lead = "New error" if new else "Error"
    classifiers = _strings(event.get("classifiers"))
    subject = classifiers[0] if show_classifier and classifiers else str(event.get("fingerprint"))
    subject_text = fit(subject, _MAX_TITLE_PIECE, style.escape)
    when = fit(str(event.get("timestamp", "")), _MAX_SINCE, style.escape)
    return style.bold(f"{lead} in {project}: {subject_text}") + f" at {when}"


def _strings(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return []
    return [str(v) for v in value]


def _attributes(event: Mapping[str, Any], wanted: Sequence[str]) -> list[tuple[str, str]]:
    attributes = event.get("attributes")
    if not isinstance(attributes, Mapping):
        return []
    if not wanted:
        return [(str(k), str(v)) for k, v in attributes.items()]
    return [(name, str(attributes[name])) for name in wanted if name in attributes]


def _link(event: Mapping[str, Any], style: _Style) -> str | None:
    href = event.get("href")
    if not isinstance(href, str) or not href.lower().startswith(("http://", "https://")):
        return None
    # A URL is never a mention, and a zero-width space would break it.
    escaped = _html_escape(href) if style is _HTML else href
    if length(escaped) > _MAX_HREF:
        return None
    if style is _HTML:
        return f'<a href="{escaped}">Open in the error tracker</a>'
    return escaped


def _count_line(count: int, since: str | None, per_group: bool, style: _Style) -> str | None:
    """What a digest stands for: other new groups (``event: group``), or more
    occurrences of the same error (``event: trace``, per fingerprint)."""
    more = count - 1
    if more <= 0:
        return None
    if per_group:
        noun = "new error group" if more == 1 else "new error groups"
    else:
        noun = "occurrence of this error" if more == 1 else "occurrences of this error"
    line = f"and {more} more {noun}"
    if since:
        line += " since " + fit(since, _MAX_SINCE, style.escape)
    return line


def _mentions_line(mentions: Sequence[str]) -> str | None:
    names = [m.strip() for m in mentions if m.strip()]
    if not names:
        return None
    return fit(" ".join(dict.fromkeys(names)), _MAX_MENTIONS, _plain)


def _hostname_section(event: Mapping[str, Any], style: _Style) -> _Section | None:
    hostname = event.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        return None
    return _Section(style.bold("Host:"), (_Item("", hostname, _MAX_HOSTNAME),), "inline")


def _classifiers_section(event: Mapping[str, Any], style: _Style) -> _Section | None:
    classifiers = _strings(event.get("classifiers"))
    if not classifiers:
        return None
    items = tuple(_Item("", c, _MAX_CLASSIFIER) for c in classifiers)
    return _Section(style.bold("Classifiers:"), items, "inline")


def _callstack_section(event: Mapping[str, Any], style: _Style) -> _Section | None:
    frames = _strings(event.get("callstack"))
    if not frames:
        return None
    items = tuple(_Item("", f, _MAX_FRAME) for f in frames[:MAX_FRAMES])
    return _Section(style.bold("Callstack:"), items, "block", omitted=len(frames) - len(items))


def _attributes_section(
    event: Mapping[str, Any], wanted: Sequence[str], style: _Style
) -> _Section | None:
    attributes = _attributes(event, wanted)
    if not attributes:
        return None
    items = tuple(
        _Item(
            style.bold(fit(name, _MAX_ATTRIBUTE_NAME, style.escape)) + ": ",
            value,
            _MAX_ATTRIBUTE_VALUE,
        )
        for name, value in attributes
    )
    return _Section(style.bold("Attributes:"), items)


def _sections(event: Mapping[str, Any], display: Display, style: _Style) -> dict[str, _Section]:
    """The sections the display settings show, in the order they get the budget."""
    wanted = {
        "hostname": display.include_hostname and _hostname_section(event, style),
        "classifiers": display.classifiers and _classifiers_section(event, style),
        "callstack": display.callstack and _callstack_section(event, style),
        "attributes": display.attributes
        and _attributes_section(event, display.attribute_list, style),
    }
    return {name: section for name, section in wanted.items() if section}


def _share_budget(
    sections: Mapping[str, _Section], style: _Style, budget: int
) -> tuple[dict[str, str], bool]:
    """Sections share what the head and tail leave, in priority order."""
    sep = style.line_break
    rendered: dict[str, str] = {}
    truncated = False
    for name, section in sections.items():
        result = _render_section(section, style, budget - length(sep))
        if result is None:
            truncated = True
            continue
        rendered[name], cut = result
        truncated = truncated or cut
        budget -= length(sep) + length(rendered[name])
    return rendered, truncated


_SHOWN_ORDER = ("classifiers", "callstack", "attributes", "hostname")


def _check_arguments(count: int, limit: int) -> None:
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}, not {limit}")


def _present(*lines: str | None) -> list[str]:
    return [line for line in lines if line]


def message_time(at: float) -> str:
    """A time as messages show it: ``2026-11-26T12:00:00Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_message(
    event: Mapping[str, Any],
    integration: Integration,
    mentions: Sequence[str] = (),
    *,
    count: int = 1,
    since: float | None = None,
    limit: int = MAX_MESSAGE_CHARS,
) -> Message:
    """The message ``integration`` sends for ``event``.

    ``count`` is how many events this one notification stands for (it is more
    than 1 when a frequency aggregated them) and ``since`` when the first of
    them came (a Unix time). Mentions only work in text messages, so any mention forces
    the text format.
    """
    _check_arguments(count, limit)
    hc = integration.hipchat
    mention_line = _mentions_line(mentions)
    fmt: MessageFormat = "text" if mention_line else hc.message_format
    style = _HTML if fmt == "html" else _TEXT
    head = _present(mention_line, _title(event, integration.display.classifiers, style))
    per_group = integration.trigger.event == "group"
    when = message_time(since) if since is not None else None
    tail = _present(_count_line(count, when, per_group, style), _link(event, style))
    sep = style.line_break
    budget = limit - length(sep.join(head + tail)) - length(sep + ELLIPSIS)
    sections = _sections(event, integration.display, style)
    rendered, truncated = _share_budget(sections, style, budget)
    lines = head + [rendered[n] for n in _SHOWN_ORDER if n in rendered] + tail
    if truncated:
        lines.append(ELLIPSIS)
    text = sep.join(lines)
    assert length(text) <= limit, "message parts exceeded their budget"
    card = render_card(event, integration) if hc.card else None
    return Message(
        text=text,
        message_format=fmt,
        color=hc.color,
        notify=hc.notify,
        sender=hc.sender,
        card=card,
    )
