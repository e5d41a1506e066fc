"""The wall clock steps back a day, or forward two: nothing waits a day, nothing expires.

On injected clocks: ``wall`` is what ``time.time`` would say, ``mono`` what
``time.monotonic`` would. A step moves ``wall`` alone.

- A throttle window or a retry time set before a step back is cut to its own
  length from now (a window of 5 minutes sends its digest 5 minutes later, not
  a day and 5 minutes later).
- ``--max-age`` counts the time the daemon ran (``mono``, kept across
  restarts): a step forward dead-letters nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from syncd.config.model import integration_from_data
from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import NewItem, Settle
from syncd.store.sqlite import Outbox
from tests.support.events import event
from tests.support.stores import claim, heads_consistent, retry

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


def test_a_window_open_when_the_clock_steps_back_a_day_sends_its_digest_on_time(
    box: Outbox, wall: Clock, mono: Clock
) -> None:
    registry = throttled_registry()
    chores = upkeep(box, wall, mono, registry)
    ingest = chores.ingest
    assert ingest.submit([event("shop", "f")]).notifications == 1
    wall.now += 10
    assert ingest.submit([event("shop", "f")]).notifications == 0  # held for 5 minutes
    wall.now -= DAY
    chores.tick()
    wall.now += 299
    chores.tick()
    assert len(box.items()) == 1, "the digest went early"
    wall.now += 2
    chores.tick()
    digest = box.items()[-1]
    assert (digest.count, len(box.items())) == (1, 2), "the digest waited for the day"


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


def test_a_retry_set_before_a_step_back_waits_its_own_length(
    box: Outbox, wall: Clock, mono: Clock
) -> None:
    put(box)
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=wall.now + 60, reason="HTTP 503")
    wall.now -= DAY
    assert box.cut_waits() == 1
    assert heads_consistent(box.path)
    wall.now += 59
    assert claim(box, limit=1, lease=30) == []
    wall.now += 1
    (again,) = claim(box, limit=1, lease=30)
    assert (again.id, again.next_attempt_at) == (item.id, wall.now)


def test_a_lease_taken_before_a_step_back_runs_out_on_time(
    box: Outbox, wall: Clock, mono: Clock
) -> None:
    put(box)
    (item,) = claim(box, limit=1, lease=120)
    wall.now -= DAY
    upkeep(box, wall, mono).tick()
    wall.now += 119
    assert claim(box, limit=1, lease=120) == []
    wall.now += 2
    (again,) = claim(box, limit=1, lease=120)
    assert again.id == item.id
    box.settle(Settle(again.id, "delivered"))
    assert heads_consistent(box.path)


def test_nothing_is_cut_when_the_clock_only_moves_on(box: Outbox, wall: Clock) -> None:
    put(box, 3)
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=wall.now + 60, reason="HTTP 503")
    wall.now += 5
    assert box.cut_waits() == 0


def test_a_step_forward_of_two_days_expires_nothing(box: Outbox, wall: Clock, mono: Clock) -> None:
    put(box, 3)
    wall.now += 2 * DAY
    mono.now += 5
    chores = upkeep(box, wall, mono)
    chores.tick()
    assert [i.state for i in box.items()] == ["pending"] * 3
    mono.now += DAY
    assert [(e.uid, e.count) for e in box.expire(DAY)] == [("a", 3)]


def test_max_age_counts_the_time_the_daemon_ran_across_restarts(
    tmp_path: Path, wall: Clock
) -> None:
    path = tmp_path / "outbox.db"
    first_mono = Clock(1000.0)
    first = Outbox(path, clock=wall, monotonic=first_mono)
    put(first)
    first_mono.now += 0.6 * DAY
    first.close()
    wall.now += 30 * DAY  # stopped a month: not counted
    again_mono = Clock(7.0)  # a new process, a new monotonic origin
    again = Outbox(path, clock=wall, monotonic=again_mono)
    assert again.expire(DAY) == []
    again_mono.now += 0.5 * DAY
    (expired,) = again.expire(DAY)
    assert expired.count == 1
