"""Common Settings as pure functions: which events notify, and when.

Nothing here reads a clock or a database: the caller passes ``now`` and the
stored :class:`~syncd.store.contract.Window`, and stores the window it gets back. That
keeps the throttling exact under test and lets the store keep it across
restarts. ``routing`` combines these per integration for one event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from syncd.config.model import ANY_ATTRIBUTE, Action, Integration, Trigger
from syncd.config.patterns import compile_pattern
from syncd.store.contract import Window


@dataclass(frozen=True)
class Verdict:
    """What the actions say about one event."""

    notify: bool
    mentions: tuple[str, ...] = ()
    rule: int | None = None  # index of the deciding submit/filter; None when none matched


@dataclass(frozen=True)
class Match:
    """Where an action's regex was found: the attribute (None when ``"*"`` met an
    event without attributes, searched as one empty value), its value, and the
    span found in it, so a review can see that ``nyc`` found a part of ``nyc2``."""

    attribute: str | None
    value: str
    start: int
    end: int


class Searched(Protocol):
    """What is matched against an event: an action, or one entry of a mute's ``match``."""

    @property
    def attribute(self) -> str: ...

    @property
    def regex(self) -> str: ...


def find_match(action: Searched, attributes: Mapping[str, str]) -> Match | None:
    """The first place, in the event's attribute order, where the action's regex is
    found (searched, not anchored); the judgement, its explanation and a mute's
    match all use it, so what ``syncd rules test`` shows is what decided."""
    regex = compile_pattern(action.regex)
    searched: Iterable[tuple[str | None, str]]
    if action.attribute == ANY_ATTRIBUTE:
        searched = attributes.items() if attributes else [(None, "")]
    else:
        value = attributes.get(action.attribute)
        searched = [] if value is None else [(action.attribute, value)]
    for name, text in searched:
        found = regex.search(text)
        if found is not None:
            return Match(name, text, found.start(), found.end())
    return None


def evaluate_actions(actions: Sequence[Action], attributes: Mapping[str, str]) -> Verdict:
    """Backtrace's Common Settings: among submit and filter actions the last match,
    top down, decides, and with none matching the event may notify. Every matching
    mention adds its target (in order, each once) to a notification that is sent;
    a mention never decides whether one is."""
    notify, rule = True, None
    mentions: list[str] = []
    for index, action in enumerate(actions):
        if find_match(action, attributes) is None:
            continue
        if action.action == "mention":
            if action.target and action.target not in mentions:
                mentions.append(action.target)
        else:
            notify, rule = action.action == "submit", index
    return Verdict(notify, tuple(mentions) if notify else (), rule)


EMPTY = Window()


@dataclass(frozen=True)
class Decision:
    kind: Literal["send", "aggregate", "ignore"]
    count: int = 0  # events the message stands for, when kind is "send"
    window: Window = EMPTY
    mentions: tuple[str, ...] = ()  # what the events it stands for earned, when "send"


def merged(earlier: Sequence[str], later: Sequence[str]) -> tuple[str, ...]:
    """Each mention once, in the order first earned: a target earned again by a
    later event keeps its first place."""
    return tuple(dict.fromkeys((*earlier, *later)))


def is_candidate(trigger: Trigger, new_group: bool) -> bool:
    """``group`` counts only the first event of a fingerprint; ``trace`` counts all."""
    return new_group or trigger.event == "trace"


def window_key(integration: Integration, fingerprint: str) -> str:
    """Trace throttles per fingerprint; group throttles the integration's new groups."""
    if integration.trigger.event == "trace":
        return f"{integration.uid}\0{fingerprint}"
    return f"{integration.uid}\0"


def on_event(
    trigger: Trigger,
    window: Window,
    now: float,
    *,
    candidate: bool,
    mentions: Sequence[str] = (),
) -> Decision:
    """One event, with the ``mentions`` it earned, against its window: send now,
    aggregate, or ignore.

    Inside the ``frequency`` window after the last message, events aggregate;
    reaching ``threshold`` aggregated events sends at once, whatever the window.
    A send carries what the window's waiting events earned, then this event's.
    """
    if not candidate:
        return Decision("ignore", window=window)
    window = within_clock(window, now)
    earned = merged(window.mentions, mentions)
    frequency = trigger.frequency or 0
    inside = frequency > 0 and window.last_sent is not None and now - window.last_sent < frequency
    if not inside:
        sent = Window(last_sent=now)
        return Decision("send", count=window.pending + 1, window=sent, mentions=earned)
    pending = window.pending + 1
    if trigger.threshold is not None and pending >= trigger.threshold:
        return Decision("send", count=pending, window=Window(last_sent=now), mentions=earned)
    since = window.pending_since if window.pending_since is not None else now
    waiting = replace(window, pending=pending, pending_since=since, mentions=earned)
    return Decision("aggregate", window=waiting)


def within_clock(window: Window, now: float) -> Window:
    """A window last sent after ``now`` was sent before the wall clock stepped back:
    it starts again now, so it lasts its frequency, not the step and its frequency."""
    if window.last_sent is None or window.last_sent <= now:
        return window
    since = None if window.pending_since is None else min(window.pending_since, now)
    return replace(window, last_sent=now, pending_since=since)


def due_at(trigger: Trigger, window: Window) -> float | None:
    """When the aggregated events of ``window`` are to be sent, if any are waiting."""
    if window.pending == 0 or window.last_sent is None or not trigger.frequency:
        return None
    return window.last_sent + trigger.frequency


def flush(trigger: Trigger, window: Window, now: float) -> Decision:
    """Send what aggregated once the window has passed."""
    window = within_clock(window, now)
    at = due_at(trigger, window)
    if at is None or now < at:
        return Decision("ignore", window=window)
    sent = Window(last_sent=now)
    return Decision("send", count=window.pending, window=sent, mentions=window.mentions)
