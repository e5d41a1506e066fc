"""The wall clock steps back a day, or forward two: nothing waits a day, nothing expires.

On injected clocks: ``wall`` is what ``time.time`` would say, ``mono`` what
``time.monotonic`` would. A step moves ``wall`` alone.

- A throttle window or a retry time set before a step back is cut to its own
  length from now (a window of 5 minutes sends its digest 5 minutes later, not
  a day and 5 minutes later).
- ``--max-age`` counts the time the daemon ran (``mono``, kept across
  restarts): a step forward dead-letters nothing.

The store's side of these promises runs on both stores in
``test_store_interface``; what is left here is ingest's.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from syncd.config.model import integration_from_data
from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import NewItem
from syncd.store.sqlite import Outbox
from tests.support.events import event

DAY = 86_400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Clock:
    return Clock(1_764_158_400.0)


@pytest.fixture
def mono() -> Clock:
    return Clock(50.0)


@pytest.fixture
def box(tmp_path: Path, wall: Clock, mono: Clock) -> Outbox:
    return Outbox(tmp_path / "outbox.db", clock=wall, monotonic=mono)


def throttled_registry() -> Registry:
    integration = integration_from_data(
        {
            "uid": "slow",
            "project": "shop",
            "name": "slow",
            "trigger": {"event": "trace", "frequency": "5m"},
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": "1", "token": {"env": "HIPCHAT_T"}}],
            },
        }
    )
    registry = Registry()
    notifier = Notifier(integration, MappingProxyType({"1": "token"}))
    registry.snapshot = Snapshot(MappingProxyType({"slow": notifier}), "test")
    return registry


def upkeep(box: Outbox, wall: Clock, mono: Clock, registry: Registry | None = None) -> Housekeeping:
    ingest = Ingest(box, registry or Registry(), clock=wall)
    return Housekeeping(box, ingest, max_age=DAY, clock=wall, monotonic=mono)


def put(box: Outbox, n: int = 1) -> None:
    with box.batch() as batch:
        batch.enqueue([NewItem("a", "1", {"n": k}) for k in range(n)], box.clock())


def test_an_event_after_the_step_back_starts_its_window_again(
    box: Outbox, wall: Clock, mono: Clock
) -> None:
    registry = throttled_registry()
    chores = upkeep(box, wall, mono, registry)
    ingest = chores.ingest
    assert ingest.submit([event("shop", "f")]).notifications == 1
    wall.now -= DAY
    held = ingest.submit([event("shop", "f")])
    assert held.events[0].why == ("slow: throttled until 2025-11-25T12:05:00Z",)
    wall.now += 301
    chores.tick()
    assert [i.count for i in box.items()] == [1, 1]
