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

from syncd.config.diagnostics import printable
from syncd.config.model import Integration
from syncd.config.mutes import Mute
from syncd.events import rules
from syncd.events.muting import NO_MUTES, Mutes
from syncd.store.contract import NewItem, StoredWindow, Window, WindowUpdate

DISABLED = "disabled, nothing is queued"
THROTTLED = "throttled"
NOT_NEW = "not a new error group (trigger: group)"
MUTED = "muted by "


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
    ``muted by FILE mutes[i]``, ``not a new error group``, ``disabled``,
    ``skipped``) and, when throttled, when the digest is due; when muted, the
    mute, whose end and reason the line adds. Requests of many events are
    answered with these counted per integration and reason, so the reason
    carries no time."""

    uid: str
    reason: str
    until: float | None = None
    failed: str | None = None  # the error, when the integration was skipped for one
    mute: Mute | None = None  # the mute that held back some or all of its rooms

    def __str__(self) -> str:
        if self.reason == THROTTLED:
            return f"{self.uid}: {THROTTLED} until {_utc(self.until)}"
        if self.mute is not None:
            mute = self.mute
            return printable(f"{self.uid}: {self.reason} until {mute.until_text} ({mute.reason})")
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
    # The notifications a mute held back, one per room: counted, never queued.
    muted: tuple[NewItem, ...] = ()

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
    uid = integration.uid
    return tuple(
        [NewItem(uid, room.id, event, count, mentions, since) for room in integration.rooms]
    )


def _route_one(
    judged: Judged,
    event: Mapping[str, Any],
    new_group: bool,
    windows: Mapping[str, Window],
    now: float,
    mutes: Mutes = NO_MUTES,
) -> Routing:
    integration = judged.integration
    trigger = integration.trigger
    skipped = _skipped(judged, new_group)
    if skipped is not None:
        return Routing(whys=(skipped,))
    key = rules.window_key(integration, event["fingerprint"]) if trigger.frequency else ""
    window = windows.get(key, rules.EMPTY) if trigger.frequency else rules.EMPTY
    decision = rules.on_event(trigger, window, now, candidate=True, mentions=judged.mentions)
    items = _items(integration, event, decision.count, decision.mentions, window.pending_since)
    due = rules.due_at(trigger, decision.window)
    if decision.kind == "send":
        attributes = event.get("attributes") or {}
        split = _unmuted(mutes, integration, items, attributes, now)
        why = _sent_why(integration, split)
        queued, muted = split[0], split[1]
    else:
        why, queued, muted = Why(integration.uid, THROTTLED, due), (), ()
    if not trigger.frequency:
        return Routing(queued, whys=(why,), muted=muted)
    update = WindowUpdate(
        key,
        integration.uid,
        decision.window,
        due,
        event if decision.kind == "aggregate" else None,
        float(trigger.frequency),
    )
    return Routing(queued, (update,), whys=(why,), muted=muted)


_Split = tuple[tuple[NewItem, ...], tuple[NewItem, ...], Mute | None]


def _unmuted(
    mutes: Mutes,
    integration: Integration,
    items: tuple[NewItem, ...],
    attributes: Mapping[str, str] | None,
    now: float,
) -> _Split:
    """The items to queue, those an active mute holds back, and the first such mute.
    ``attributes`` None: a digest's, which only a mute without ``match`` holds back."""
    if not (mutes.by_uid or mutes.by_project) or not mutes.of_integration(integration, now):
        return items, (), None
    queued: list[NewItem] = []
    muted: list[NewItem] = []
    first: Mute | None = None
    for item in items:
        mute = mutes.covering(integration, item.room_id, attributes, now)
        if mute is None:
            queued.append(item)
        else:
            muted.append(item)
            first = first or mute
    return tuple(queued), tuple(muted), first


def _sent_why(integration: Integration, split: _Split) -> Why:
    queued, muted, mute = split
    held = ", held while stopped" if integration.state == "stopped" else ""
    if mute is None:
        return Why(integration.uid, f"queued for {len(queued)} room(s){held}")
    if not queued:
        return Why(integration.uid, MUTED + mute.name, mute=mute)
    reason = f"queued for {len(queued)} room(s){held}, {len(muted)} {MUTED}{mute.name}"
    return Why(integration.uid, reason, mute=mute)


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
    mutes: Mutes,
) -> Routing:
    """One integration's routing; an exception in it skips that integration only."""
    try:
        return _route_one(judged, event, new_group, windows, now, mutes)
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
    mutes: Mutes = NO_MUTES,
) -> Routing:
    """Each judged integration's trigger decides; results in integration order.

    The event queued (or kept in a window) carries ``new_group`` as decided, by the
    sender or by syncd's fingerprint store: messages are rendered from the stored
    event, and the sender's field is where a renderer already looks. A room an
    active mute covers gets nothing; the rest (windows, digests) is as without it.
    """
    decided = {**event, "new_group": new_group}
    parts = [_contained(j, decided, new_group, windows, now, mutes) for j in judged]
    if len(parts) == 1:
        return parts[0]  # one integration: its part is the whole
    return _joined(parts, None if judged else str(event["project"]))


def _joined(parts: Sequence[Routing], unserved: str | None) -> Routing:
    """The integrations' parts of one event's routing, in their order."""
    return Routing(
        tuple(item for part in parts for item in part.items),
        tuple(update for part in parts for update in part.windows),
        whys=tuple(why for part in parts for why in part.whys),
        unserved=unserved,
        muted=tuple(item for part in parts for item in part.muted),
    )


def route_flush(
    due: StoredWindow, integration: Integration | None, now: float, mutes: Mutes = NO_MUTES
) -> Routing:
    """A window whose time has come: send what aggregated, or forget a stale window.
    A room held back by a mute without ``match`` gets no digest; the window is
    settled all the same."""
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
    items, muted, _ = _unmuted(mutes, integration, items, None, now)
    update = WindowUpdate(
        due.key,
        due.uid,
        decision.window,
        rules.due_at(trigger, decision.window),
        length=length,
    )
    return Routing(items, (update,), muted=muted)
