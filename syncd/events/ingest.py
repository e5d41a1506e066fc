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

from syncd.config.model import Integration
from syncd.events.routing import Judged, Routing, judge, route_event, route_flush, window_keys
from syncd.registry import Registry, Snapshot
from syncd.store.contract import Batch, Store


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
