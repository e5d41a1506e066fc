"""The event flow's decision: what one event (or one due window) causes.

Pure: given the event, the active integrations of its project, whether its
fingerprint is new, the stored throttle windows and ``now``, it returns the
notifications to queue and the windows to store. The actions are judged
first, on their own (:func:`judge`), because they need nothing stored. Ingest reads those inputs
from the store and writes the result back in one batch; nothing here touches
a database or a clock, so every Common Settings case is a plain unit test.

One integration's failure is that integration's alone: an exception while
judging or routing it (a frequency too large for a date, say) becomes a
:class:`Why` that says it was skipped, with the error kept for the log, and the
event goes on to the other integrations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.config.model import Integration
from syncd.events import rules
from syncd.store.contract import NewItem, StoredWindow, Window, WindowUpdate

DISABLED = "disabled, nothing is queued"
THROTTLED = "throttled"
NOT_NEW = "not a new error group (trigger: group)"


@dataclass(frozen=True)
class Judged:
    """What an integration's actions decided: may the event notify, with what
    mentions, and which action decided (its index; None when none matched).
    ``failed`` names the error when judging raised: the integration is skipped."""

    integration: Integration
    mentions: tuple[str, ...] = ()
    notify: bool = True
    rule: int | None = None
    failed: str | None = None


def judge(event: Mapping[str, Any], integrations: Sequence[Integration]) -> tuple[Judged, ...]:
    """Each integration's actions on the event, in the integrations' order.

    Ingest calls this before it opens a store batch, so no regex ever runs
    while the write lock is held. A disabled integration's actions are not
    looked at: it queues nothing whatever they say.
    """
    attributes = event.get("attributes") or {}
    return tuple(judge_one(integration, attributes) for integration in integrations)


def judge_one(integration: Integration, attributes: Mapping[str, str]) -> Judged:
    """One integration's actions on an event's attributes (see :func:`judge`)."""
    if integration.state == "disabled" or not integration.actions:
        return Judged(integration)
    try:
        verdict = rules.evaluate_actions(integration.actions, attributes)
    except Exception as exc:  # one integration's failure is its own
        return Judged(integration, notify=False, failed=failure_text(exc))
    return Judged(integration, verdict.mentions, verdict.notify, verdict.rule)


def failure_text(exc: BaseException) -> str:
    """An exception in a few words, for a reason and the log: its class and message."""
    text = str(exc)
    return type(exc).__name__ + (f": {text[:200]}" if text else "")


@dataclass(frozen=True)
class Why:
    """One integration's part in one event, for the sender: a reason from a short
    list (``queued for N room(s)``, ``throttled``, ``filtered by actions[i]``,
    ``not a new error group``, ``disabled``, ``skipped``) and, when throttled,
    when the digest is due. Requests of many events are answered with these
    counted per integration and reason, so the reason carries no time."""

    uid: str
    reason: str
    until: float | None = None
    failed: str | None = None  # the error, when the integration was skipped for one

    def __str__(self) -> str:
        if self.reason == THROTTLED:
            return f"{self.uid}: {THROTTLED} until {_utc(self.until)}"
        return f"{self.uid}: {self.reason}"


@dataclass(frozen=True)
class Routing:
    """What to write: notifications to queue, windows to store, windows to forget;
    and why, per integration (``unserved`` names the project when none took part)."""

    items: tuple[NewItem, ...] = ()
    windows: tuple[WindowUpdate, ...] = ()
    drop: tuple[str, ...] = ()
    whys: tuple[Why, ...] = ()
    unserved: str | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """Why, per integration, for the sender: ``uid: throttled until ...``."""
        if self.whys:
            return tuple(str(why) for why in self.whys)
        if self.unserved is not None:
            return (f"no integration for project {self.unserved}",)
        return ()


def window_keys(judged: Sequence[Judged], fingerprint: str, new_group: bool) -> list[str]:
    """The stored windows :func:`route_event` needs, to be read before calling it."""
    return [
        rules.window_key(j.integration, fingerprint)
        for j in judged
        if j.notify and j.failed is None and j.integration.state != "disabled"
        if j.integration.trigger.frequency and rules.is_candidate(j.integration.trigger, new_group)
    ]


def _items(
    integration: Integration,
    event: Mapping[str, Any],
    count: int,
    mentions: tuple[str, ...],
    since: float | None = None,
) -> tuple[NewItem, ...]:
    since = since if count > 1 else None
    return tuple(
        NewItem(integration.uid, room.id, event, count, mentions, since)
        for room in integration.rooms
    )


def _route_one(
    judged: Judged,
    event: Mapping[str, Any],
    new_group: bool,
    windows: Mapping[str, Window],
    now: float,
) -> Routing:
    integration = judged.integration
    trigger = integration.trigger
    skipped = _skipped(judged, new_group)
    if skipped is not None:
        return Routing(whys=(skipped,))
    key = rules.window_key(integration, event["fingerprint"])
    window = windows.get(key, rules.EMPTY) if trigger.frequency else rules.EMPTY
    decision = rules.on_event(trigger, window, now, candidate=True, mentions=judged.mentions)
    items = _items(integration, event, decision.count, decision.mentions, window.pending_since)
    routing_items = items if decision.kind == "send" else ()
    due = rules.due_at(trigger, decision.window)
    held = ", held while stopped" if integration.state == "stopped" else ""
    why = (
        Why(integration.uid, f"queued for {len(items)} room(s){held}")
        if routing_items
        else Why(integration.uid, THROTTLED, due)
    )
    if not trigger.frequency:
        return Routing(routing_items, whys=(why,))
    update = WindowUpdate(
        key,
        integration.uid,
        decision.window,
        due,
        event if decision.kind == "aggregate" else None,
        float(trigger.frequency),
    )
    return Routing(routing_items, (update,), whys=(why,))


def _utc(at: float | None) -> str:
    """A time as the sender reads it; one no calendar holds is said as such."""
    if at is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    except (OverflowError, ValueError, OSError):
        return f"{at:.0f} s after 1970"


def _skipped(judged: Judged, new_group: bool) -> Why | None:
    """Why an integration takes no part, if it does not."""
    uid = judged.integration.uid
    if judged.integration.state == "disabled":
        return Why(uid, DISABLED)
    if judged.failed is not None:
        return Why(uid, "skipped: its actions failed (see the log)", failed=judged.failed)
    if not judged.notify:
        return Why(uid, f"filtered by actions[{judged.rule}]")
    if not rules.is_candidate(judged.integration.trigger, new_group):
        return Why(uid, NOT_NEW)
    return None


def _contained(
    judged: Judged,
    event: Mapping[str, Any],
    new_group: bool,
    windows: Mapping[str, Window],
    now: float,
) -> Routing:
    """One integration's routing; an exception in it skips that integration only."""
    try:
        return _route_one(judged, event, new_group, windows, now)
    except Exception as exc:  # one integration's failure is its own
        reason = "skipped: routing failed (see the log)"
        return Routing(whys=(Why(judged.integration.uid, reason, failed=failure_text(exc)),))


def route_event(
    event: Mapping[str, Any],
    judged: Sequence[Judged],
    *,
    new_group: bool,
    windows: Mapping[str, Window],
    now: float,
) -> Routing:
    """Each judged integration's trigger decides; results in integration order.

    The event queued (or kept in a window) carries ``new_group`` as decided, by the
    sender or by syncd's fingerprint store: messages are rendered from the stored
    event, and the sender's field is where a renderer already looks.
    """
    decided = {**event, "new_group": new_group}
    parts = [_contained(j, decided, new_group, windows, now) for j in judged]
    return Routing(
        tuple(item for part in parts for item in part.items),
        tuple(update for part in parts for update in part.windows),
        whys=tuple(why for part in parts for why in part.whys),
        unserved=None if judged else str(event["project"]),
    )


def route_flush(due: StoredWindow, integration: Integration | None, now: float) -> Routing:
    """A window whose time has come: send what aggregated, or forget a stale window."""
    frequency = integration.trigger.frequency if integration else None
    if integration is None or not frequency:
        return Routing(drop=(due.key,))
    trigger = integration.trigger
    length = float(frequency)
    decision = rules.flush(trigger, due.window, now)
    items: tuple[NewItem, ...] = ()
    if decision.kind == "send" and due.last_event is not None:
        since = due.window.pending_since
        items = _items(integration, due.last_event, decision.count, decision.mentions, since)
    update = WindowUpdate(
        due.key,
        due.uid,
        decision.window,
        rules.due_at(trigger, decision.window),
        length=length,
    )
    return Routing(items, (update,))
