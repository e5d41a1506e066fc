"""Events in: validated, run through each matching integration's rules, and
stored in the outbox in one transaction, so an event acknowledged to its
sender is never lost, and one that was not acknowledged left no trace.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd import rules, schema
from syncd.diagnostics import json_path
from syncd.model import Integration
from syncd.outbox import NewItem, Outbox
from syncd.registry import Registry


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


@dataclass(frozen=True)
class Accepted:
    ids: tuple[str, ...]
    notifications: int


_EXAMPLE_TIME = "2026-11-26T09:14:03Z"


def validate_events(payload: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """One event or a list of events against ``event.schema.json``."""
    events = payload if isinstance(payload, list) else [payload]
    problems: list[Problem] = []
    if not events:
        problems.append(Problem("$", "expected an event or a non-empty list of events"))
    check = schema.validator(schema.EVENT)
    for index, event in enumerate(events):
        prefix: tuple[str | int, ...] = (index,) if isinstance(payload, list) else ()
        for error in check.iter_errors(event):
            path = json_path((*prefix, *error.absolute_path))
            message = error.message
            if error.validator == "format":
                message = f"not an RFC 3339 date-time with an offset, such as {_EXAMPLE_TIME}"
            problems.append(Problem(path, message))
    return events, problems


class Ingest:
    def __init__(
        self,
        outbox: Outbox,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
        on_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.registry = registry
        self.clock = clock
        self.on_enqueued = on_enqueued

    def submit(self, events: Sequence[Mapping[str, Any]]) -> Accepted:
        """Store what the events cause; returns only after the commit."""
        snapshot = self.registry.snapshot
        by_project: dict[str, list[Integration]] = {}
        for notifier in snapshot.notifiers.values():
            integration = notifier.integration
            if integration.state != "stopped":
                by_project.setdefault(integration.project, []).append(integration)
        now = self.clock()
        ids = tuple(uuid.uuid4().hex for _ in events)
        queued = 0
        with self.outbox.transaction() as db:
            for event_id, event in zip(ids, events, strict=True):
                stored = {**event, "id": event_id}
                queued += self._one(db, stored, by_project.get(event["project"], ()), now)
        if queued:
            self.on_enqueued()
        return Accepted(ids, queued)

    def _one(
        self,
        db: sqlite3.Connection,
        event: Mapping[str, Any],
        integrations: Sequence[Integration],
        now: float,
    ) -> int:
        seen_first = Outbox.first_seen(db, event["project"], event["fingerprint"], now)
        flagged = event.get("new_group")
        new_group = seen_first if flagged is None else bool(flagged)
        attributes = event.get("attributes") or {}
        queued = 0
        for integration in integrations:
            verdict = rules.evaluate_actions(integration.actions, attributes)
            if not verdict.notify:
                continue
            trigger = integration.trigger
            candidate = rules.is_candidate(trigger, new_group)
            if not candidate:
                continue
            key = rules.window_key(integration, event["fingerprint"])
            window = Outbox.load_window(db, key) if trigger.frequency else rules.EMPTY
            decision = rules.on_event(trigger, window, now, candidate=True)
            if decision.kind == "send":
                queued += self._enqueue(db, integration, event, decision.count, verdict, now)
            if trigger.frequency:
                Outbox.save_window(
                    db,
                    key,
                    integration.uid,
                    decision.window,
                    rules.due_at(trigger, decision.window),
                    event if decision.kind == "aggregate" else None,
                    verdict.mention,
                )
        return queued

    @staticmethod
    def _enqueue(
        db: sqlite3.Connection,
        integration: Integration,
        event: Mapping[str, Any],
        count: int,
        verdict: rules.Verdict,
        now: float,
    ) -> int:
        items = [
            NewItem(integration.uid, room.id, event, count, verdict.mention)
            for room in integration.rooms
        ]
        Outbox.enqueue(db, items, now)
        return len(items)

    def flush_due(self) -> int:
        """Send what aggregated in windows whose frequency has passed."""
        now = self.clock()
        notifiers = self.registry.snapshot.notifiers
        queued = 0
        for due in self.outbox.due_windows(now):
            notifier = notifiers.get(due.uid)
            with self.outbox.transaction() as db:
                if notifier is None or not notifier.integration.trigger.frequency:
                    db.execute("DELETE FROM windows WHERE key = ?", (due.key,))
                    continue
                integration = notifier.integration
                decision = rules.flush(integration.trigger, due.window, now)
                if decision.kind == "send" and due.last_event is not None:
                    verdict = rules.Verdict(notify=True, mention=due.mention)
                    queued += self._enqueue(
                        db, integration, due.last_event, decision.count, verdict, now
                    )
                Outbox.save_window(
                    db,
                    due.key,
                    due.uid,
                    decision.window,
                    rules.due_at(integration.trigger, decision.window),
                    None,
                    None,
                )
        if queued:
            self.on_enqueued()
        return queued
