"""Events in: validated, decided by ``routing``, and written to the store in
one batch, so an event acknowledged to its sender is never lost, and one that
was not acknowledged left no trace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.config import schema
from syncd.config.diagnostics import json_path
from syncd.config.model import Integration
from syncd.events.routing import Judged, Routing, judge, route_event, route_flush, window_keys
from syncd.registry import Registry, Snapshot
from syncd.store.contract import Batch, Store


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


@dataclass(frozen=True)
class EventResult:
    """One event's notifications, and per integration of its project, why."""

    id: str
    queued: int
    why: tuple[str, ...]


@dataclass(frozen=True)
class Accepted:
    ids: tuple[str, ...]
    notifications: int
    events: tuple[EventResult, ...] = ()


_EXAMPLE_TIME = "2026-11-26T09:14:03Z"


def validate_events(payload: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """One event or a list of events against ``event.schema.json``."""
    events = payload if isinstance(payload, list) else [payload]
    problems: list[Problem] = []
    if not events:
        problems.append(Problem("$", "expected an event or a non-empty list of events"))
    for index, event in enumerate(events):
        if schema.certainly_valid(schema.EVENT, event):
            continue
        prefix: tuple[str | int, ...] = (index,) if isinstance(payload, list) else ()
        for error in schema.validator(schema.EVENT).iter_errors(event):
            path = json_path((*prefix, *error.absolute_path))
            message = error.message
            if error.validator == "format":
                message = f"not an RFC 3339 date-time with an offset, such as {_EXAMPLE_TIME}"
            problems.append(Problem(path, message))
    return events, problems


class Ingest:
    """Validated events in, stored notifications out: read, decide, write, in one batch."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
        on_enqueued: Callable[[int], None] = lambda _count: None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.on_enqueued = on_enqueued

    def submit(self, events: Sequence[Mapping[str, Any]]) -> Accepted:
        """Store what the events cause; returns only after the commit."""
        by_project = _active_by_project(self.registry.snapshot)
        now = self.clock()
        ids = tuple(uuid.uuid4().hex for _ in events)
        judged = [judge(event, by_project.get(event["project"], ())) for event in events]
        results = []
        with self.store.batch() as batch:
            for event_id, event, verdicts in zip(ids, events, judged, strict=True):
                routing = _one(batch, {**event, "id": event_id}, verdicts, now)
                results.append(EventResult(event_id, len(routing.items), routing.notes))
        queued = sum(r.queued for r in results)
        if queued:
            self.on_enqueued(queued)
        return Accepted(ids, queued, tuple(results))

    def flush_due(self) -> int:
        """Send what aggregated in windows whose frequency has passed."""
        now = self.clock()
        notifiers = self.registry.snapshot.notifiers
        queued = 0
        for due in self.store.due_windows(now):
            notifier = notifiers.get(due.uid)
            routing = route_flush(due, notifier.integration if notifier else None, now)
            with self.store.batch() as batch:
                queued += _write(batch, routing, now)
        if queued:
            self.on_enqueued(queued)
        return queued


def _active_by_project(snapshot: Snapshot) -> dict[str, list[Integration]]:
    by_project: dict[str, list[Integration]] = {}
    for notifier in snapshot.notifiers.values():
        integration = notifier.integration
        by_project.setdefault(integration.project, []).append(integration)
    return by_project


def _one(batch: Batch, event: Mapping[str, Any], judged: Sequence[Judged], now: float) -> Routing:
    seen_first = batch.first_seen(event["project"], event["fingerprint"], now)
    flagged = event.get("new_group")
    new_group = seen_first if flagged is None else bool(flagged)
    keys = window_keys(judged, event["fingerprint"], new_group)
    windows = {key: batch.window(key) for key in keys}
    routing = route_event(event, judged, new_group=new_group, windows=windows, now=now)
    _write(batch, routing, now)
    return routing


def _write(batch: Batch, routing: Routing, now: float) -> int:
    for key in routing.drop:
        batch.drop_window(key)
    for update in routing.windows:
        batch.save_window(update)
    if routing.items:
        batch.enqueue(routing.items, now)
    return len(routing.items)
