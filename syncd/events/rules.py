"""Common Settings as pure functions: which events notify, and when.

Nothing here reads a clock or a database: the caller passes ``now`` and the
stored :class:`~syncd.store.contract.Window`, and stores the window it gets back. That
keeps the throttling exact under test and lets the store keep it across
restarts. ``routing`` combines these per integration for one event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from syncd.config.model import ANY_ATTRIBUTE, Action, Integration, Trigger
from syncd.config.patterns import compile_pattern
from syncd.store.contract import Window


@dataclass(frozen=True)
class Verdict:
    """What the actions say about one event."""

    notify: bool
    mentions: tuple[str, ...] = ()
    rule: int | None = None  # index of the deciding submit/filter; None when none matched

    @property
    def mention(self) -> str | None:
        """The mentions as one line, as a notification carries them."""
        return " ".join(self.mentions) or None


def _matches(action: Action, attributes: Mapping[str, str]) -> bool:
    regex = compile_pattern(action.regex)
    if action.attribute == ANY_ATTRIBUTE:
        if not attributes:
            return regex.search("") is not None
        return any(regex.search(value) for value in attributes.values())
    value = attributes.get(action.attribute)
    return value is not None and regex.search(value) is not None


def evaluate_actions(actions: Sequence[Action], attributes: Mapping[str, str]) -> Verdict:
    """Backtrace's Common Settings: among submit and filter actions the last match,
    top down, decides, and with none matching the event may notify. Every matching
    mention adds its target (in order, each once) to a notification that is sent;
    a mention never decides whether one is."""
    notify, rule = True, None
    mentions: list[str] = []
    for index, action in enumerate(actions):
        if not _matches(action, attributes):
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


def is_candidate(trigger: Trigger, new_group: bool) -> bool:
    """``group`` counts only the first event of a fingerprint; ``trace`` counts all."""
    return new_group or trigger.event == "trace"


def window_key(integration: Integration, fingerprint: str) -> str:
    """Trace throttles per fingerprint; group throttles the integration's new groups."""
    if integration.trigger.event == "trace":
        return f"{integration.uid}\0{fingerprint}"
    return f"{integration.uid}\0"


def on_event(trigger: Trigger, window: Window, now: float, *, candidate: bool) -> Decision:
    """One event against its window: send now, aggregate, or ignore.

    Inside the ``frequency`` window after the last message, events aggregate;
    reaching ``threshold`` aggregated events sends at once, whatever the window.
    """
    if not candidate:
        return Decision("ignore", window=window)
    frequency = trigger.frequency or 0
    inside = frequency > 0 and window.last_sent is not None and now - window.last_sent < frequency
    if not inside:
        sent = Window(last_sent=now)
        return Decision("send", count=window.pending + 1, window=sent)
    pending = window.pending + 1
    if trigger.threshold is not None and pending >= trigger.threshold:
        return Decision("send", count=pending, window=Window(last_sent=now))
    since = window.pending_since if window.pending_since is not None else now
    return Decision("aggregate", window=replace(window, pending=pending, pending_since=since))


def due_at(trigger: Trigger, window: Window) -> float | None:
    """When the aggregated events of ``window`` are to be sent, if any are waiting."""
    if window.pending == 0 or window.last_sent is None or not trigger.frequency:
        return None
    return window.last_sent + trigger.frequency


def flush(trigger: Trigger, window: Window, now: float) -> Decision:
    """Send what aggregated once the window has passed."""
    at = due_at(trigger, window)
    if at is None or now < at:
        return Decision("ignore", window=window)
    return Decision("send", count=window.pending, window=Window(last_sent=now))
