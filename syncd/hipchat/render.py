"""Render one error event into the HipChat message one integration sends for it.

Pure: no I/O, no clock; its one effect is a debug log line when the limit cut
a message, since an operator who finds the callstack short should be able to
learn why. The result always fits HipChat's 10,000 character limit; it is built
from parts that are shortened or dropped whole, so HTML output never ends inside
an entity or a tag. Lengths are counted in UTF-16 code units, which is never
less than the code point count a server may use.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from syncd.config.model import Display, Integration, MessageFormat
from syncd.hipchat.card import defuse_mentions, render_card, safe_href, shown_attributes
from syncd.hipchat.wire import Message

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 10_000
MAX_FRAMES = 10
ELLIPSIS = "…"

# Per-part ceilings, so one hostile value cannot crowd out everything else.
_MAX_TITLE_PIECE = 200
_MAX_MENTIONS = 500
_MAX_HREF = 2_100
_MAX_SINCE = 100
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


# What escaping or defusing changes; most event text holds none of it, and a
# message escapes a dozen values or more.
_HTML_SPECIAL = re.compile("[&<>\"'@\uff20\ufe6b]")


def _html_event_text(text: str) -> str:
    """Event text in an HTML message: escaped, and no mention either, should a
    client ever read mentions in HTML as it does in text."""
    if _HTML_SPECIAL.search(text) is None:
        return text
    return defuse_mentions(_html_escape(text))


def _plain(text: str) -> str:
    return text


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


_HTML = _Style(_html_event_text, "<br>", "<b>", "</b>", "<pre>", "</pre>", "\n")
_TEXT = _Style(defuse_mentions, "\n", "", "", "", "", "\n")


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


def _joined(section: _Section, style: _Style, parts: Sequence[str]) -> str:
    """The section with these of its items, the others counted in a closing marker."""
    head, sep, closer = _frame(section, style)
    dropped = len(section.items) - len(parts) + section.omitted
    body = sep.join(parts) + (sep + _marker(dropped) if dropped else "")
    return f"{head}{body}{closer}"


def _whole(section: _Section, style: _Style) -> str:
    """The section as it shows when the budget allows: each item within its own ceiling."""
    return _joined(
        section, style, [i.prefix + fit(i.raw, i.cap, style.escape) for i in section.items]
    )


def _fit_items(items: Sequence[_Item], sep: str, room: int, style: _Style) -> list[str]:
    """Whole items while they fit; the first that does not is shortened if a useful part fits."""
    parts: list[str] = []
    used = 0
    for item in items:
        gap = length(sep) if parts else 0
        available = room - used - gap - length(item.prefix)
        value = fit(item.raw, item.cap, style.escape)
        if length(value) > available:
            if available >= _MIN_SHORTENED:
                parts.append(item.prefix + fit(item.raw, available, style.escape))
            break
        used += gap + length(item.prefix) + length(value)
        parts.append(item.prefix + value)
    return parts


def _shortened(section: _Section, style: _Style, budget: int) -> str | None:
    """The section cut to ``budget``, or None when not one useful item fits.

    Whole items come first; the first that does not fit is shortened if a useful
    part of it fits, and the rest are counted in a closing marker.
    """
    head, sep, closer = _frame(section, style)
    worst_marker = length(sep) + length(_marker(len(section.items) + section.omitted))
    room = budget - length(head) - length(closer) - worst_marker
    parts = _fit_items(section.items, sep, room, style)
    return _joined(section, style, parts) if parts else None


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


def _link(event: Mapping[str, Any], style: _Style) -> str | None:
    href = safe_href(event.get("href"))
    if href is None:
        return None
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
    event: Mapping[str, Any], display: Display, style: _Style
) -> _Section | None:
    attributes = shown_attributes(event, display)
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
        "classifiers": display.classifiers and _classifiers_section(event, style),
        "callstack": display.callstack and _callstack_section(event, style),
        "attributes": _attributes_section(event, display, style),
    }
    return {name: section for name, section in wanted.items() if section}


@dataclass(frozen=True)
class _Shared:
    rendered: dict[str, str]
    cut: tuple[str, ...]  # sections the budget shortened or left out, in order
    whole: int  # what the sections would have taken uncut, with their line breaks


def _shares(needs: Mapping[str, int], budget: int) -> dict[str, int]:
    """An equal share each, smallest need first: a section that needs less than its
    share takes only its need, and what it leaves is shared by the others."""
    shares: dict[str, int] = {}
    left = budget
    order = sorted(needs, key=lambda name: needs[name])
    for index, name in enumerate(order):
        shares[name] = min(needs[name], left // (len(order) - index))
        left -= shares[name]
    return shares


def _share_budget(sections: Mapping[str, _Section], style: _Style, budget: int) -> _Shared:
    """Sections share what the head and tail leave, so that however long one is
    (a hundred classifiers, a huge attribute), every shown section keeps a part."""
    gap = length(style.line_break)
    wholes = {name: _whole(section, style) for name, section in sections.items()}
    needs = {name: gap + length(text) for name, text in wholes.items()}
    whole = sum(needs.values())
    if whole <= budget:  # the usual message: every section whole
        return _Shared(wholes, (), whole)
    shares = _shares(needs, budget)
    rendered: dict[str, str] = {}
    cut: list[str] = []
    for name, section in sections.items():
        if needs[name] <= shares[name]:
            rendered[name] = wholes[name]
            continue
        cut.append(name)
        shortened = _shortened(section, style, shares[name] - gap)
        if shortened is not None:
            rendered[name] = shortened
    return _Shared(rendered, tuple(cut), whole)


def _log_cut(uid: str, shared: _Shared, whole: int, sent: int) -> None:
    """How much the limit took, in numbers only: the text is the event's, and an
    event may carry anything."""
    log.debug(
        "%s: message cut by %d characters to %d (sections shortened: %s)",
        uid,
        whole - sent,
        sent,
        ", ".join(shared.cut),
    )


_SHOWN_ORDER = ("classifiers", "callstack", "attributes")


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
    shared = _share_budget(sections, style, budget)
    lines = head + [shared.rendered[n] for n in _SHOWN_ORDER if n in shared.rendered] + tail
    if shared.cut:
        lines.append(ELLIPSIS)
    text = sep.join(lines)
    assert length(text) <= limit, "message parts exceeded their budget"
    if shared.cut:
        whole = length(sep.join(head + tail)) + shared.whole
        _log_cut(integration.uid, shared, whole, length(text))
    card = render_card(event, integration) if hc.card else None
    return Message(
        text=text,
        message_format=fmt,
        color=hc.color,
        notify=hc.notify,
        sender=hc.sender,
        card=card,
    )
