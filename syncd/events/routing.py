"""The event flow's decision: what one event (or one due window) causes.

Pure: given the event, the active integrations of its project, whether its
fingerprint is new, the stored throttle windows and ``now``, it returns the
notifications to queue and the windows to store. The actions are judged
first, on their own (:func:`judge`), because they need nothing stored. Ingest reads those inputs
from the store and writes the result back in one batch; nothing here touches
a database or a clock, so every Common Settings case is a plain unit test.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.config.model import Integration
from syncd.events import rules
from syncd.store.contract import NewItem, StoredWindow, Window, WindowUpdate


@dataclass(frozen=True)
class Judged:
    """What an integration's actions decided: may the event notify, with what
    mentions, and which action decided (its index; None when none matched)."""

    integration: Integration
    mentions: tuple[str, ...] = ()
    notify: bool = True
    rule: int | None = None


def judge(event: Mapping[str, Any], integrations: Sequence[Integration]) -> tuple[Judged, ...]:
    """Each integration's actions on the event, in the integrations' order.

    Ingest calls this before it opens a store batch, so no regex ever runs
    while the write lock is held.
    """
    attributes = event.get("attributes") or {}
    judged = []
    for integration in integrations:
        verdict = rules.evaluate_actions(integration.actions, attributes)
        judged.append(Judged(integration, verdict.mentions, verdict.notify, verdict.rule))
    return tuple(judged)


@dataclass(frozen=True)
class Routing:
    """What to write: notifications to queue, windows to store, windows to forget."""

    items: tuple[NewItem, ...] = ()
    windows: tuple[WindowUpdate, ...] = ()
    drop: tuple[str, ...] = ()
    # Why, per integration, for the sender: "uid: throttled until ...".
    notes: tuple[str, ...] = ()


def window_keys(judged: Sequence[Judged], fingerprint: str, new_group: bool) -> list[str]:
    """The stored windows :func:`route_event` needs, to be read before calling it."""
    return [
        rules.window_key(j.integration, fingerprint)
        for j in judged
        if j.notify
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
        return Routing(notes=(f"{integration.uid}: {skipped}",))
    key = rules.window_key(integration, event["fingerprint"])
    window = windows.get(key, rules.EMPTY) if trigger.frequency else rules.EMPTY
    decision = rules.on_event(trigger, window, now, candidate=True, mentions=judged.mentions)
    items = _items(integration, event, decision.count, decision.mentions, window.pending_since)
    routing_items = items if decision.kind == "send" else ()
    due = rules.due_at(trigger, decision.window)
    held = ", held while stopped" if integration.state == "stopped" else ""
    note = f"{integration.uid}: " + (
        f"queued for {len(items)} room(s){held}"
        if routing_items
        else f"throttled until {_utc(due)}"
    )
    if not trigger.frequency:
        return Routing(routing_items, notes=(note,))
    update = WindowUpdate(
        key,
        integration.uid,
        decision.window,
        due,
        event if decision.kind == "aggregate" else None,
    )
    return Routing(routing_items, (update,), notes=(note,))


def _utc(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _skipped(judged: Judged, new_group: bool) -> str | None:
    """Why an integration takes no part, if it does not."""
    if judged.integration.state == "disabled":
        return "disabled, nothing is queued"
    if not judged.notify:
        return f"filtered by actions[{judged.rule}]"
    if not rules.is_candidate(judged.integration.trigger, new_group):
        return "not a new error group (trigger: group)"
    return None


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
    parts = [_route_one(j, decided, new_group, windows, now) for j in judged]
    return Routing(
        tuple(item for part in parts for item in part.items),
        tuple(update for part in parts for update in part.windows),
        notes=tuple(note for part in parts for note in part.notes)
        or (f"no integration for project {event['project']}",),
    )


def route_flush(due: StoredWindow, integration: Integration | None, now: float) -> Routing:
    """A window whose time has come: send what aggregated, or forget a stale window."""
    if integration is None or not integration.trigger.frequency:
        return Routing(drop=(due.key,))
    trigger = integration.trigger
    decision = rules.flush(trigger, due.window, now)
    items: tuple[NewItem, ...] = ()
    if decision.kind == "send" and due.last_event is not None:
        since = due.window.pending_since
        items = _items(integration, due.last_event, decision.count, decision.mentions, since)
    update = WindowUpdate(due.key, due.uid, decision.window, rules.due_at(trigger, decision.window))
    return Routing(items, (update,))
