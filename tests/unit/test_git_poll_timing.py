"""When the git poller fetches: the interval with its jitter, the backoff after
failures, and triggers collapsed into one fetch; on clock values, no clock."""

from __future__ import annotations

import pytest

from syncd.reconcile.gitpoller import PollSchedule, PollTiming


def test_after_a_success_the_next_fetch_comes_within_the_interval_and_its_jitter() -> None:
    timing = PollTiming(interval=60, jitter=0.1)
    assert timing.delay(0, 0.0) == 60
    assert timing.delay(0, 0.999) == pytest.approx(65.994)


def test_failures_back_off_doubling_to_the_cap() -> None:
    timing = PollTiming(interval=60, jitter=0, backoff_base=5, backoff_cap=300)
    assert [timing.delay(n, 0.0) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_a_short_interval_starts_the_backoff_at_the_interval_and_a_long_one_caps_it() -> None:
    assert PollTiming(interval=2, jitter=0).delay(1, 0.0) == 2
    assert PollTiming(interval=900, jitter=0).delay(20, 0.0) == 900


def test_the_first_fetch_is_at_once_then_on_the_interval() -> None:
    schedule = PollSchedule(PollTiming(interval=60, jitter=0))
    assert schedule.wait(now=100.0) == 0
    schedule.begin()
    assert schedule.done(now=101.0, ok=True, draw=0.0) == 60
    assert schedule.wait(now=131.0) == 30
    assert schedule.wait(now=161.0) == 0


def test_triggers_during_a_fetch_make_one_fetch_after_it() -> None:
    schedule = PollSchedule(PollTiming(interval=60, jitter=0))
    schedule.begin()  # a fetch starts
    for _ in range(5):
        schedule.trigger()
    schedule.done(now=10.0, ok=True, draw=0.0)
    assert schedule.wait(now=10.0) == 0  # one more, at once
    schedule.begin()
    schedule.done(now=11.0, ok=True, draw=0.0)
    assert schedule.wait(now=11.0) == 60  # and no other


def test_failures_are_counted_until_a_fetch_works() -> None:
    schedule = PollSchedule(PollTiming(interval=60, jitter=0, backoff_base=5))
    for expected in (5, 10, 20):
        schedule.begin()
        assert schedule.done(now=0.0, ok=False, draw=0.0) == expected
    assert schedule.failures == 3
    schedule.begin()
    assert schedule.done(now=0.0, ok=True, draw=0.0) == 60
    assert schedule.failures == 0
