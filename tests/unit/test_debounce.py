"""ReloadSchedule: when the watcher reloads, driven by a fake clock.

Each test plays the watcher's thread: it asks for the next step, answers a
lock check with what the index lock looks like at that moment, and jumps the
clock to the end of each wait.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from syncd.reconcile.debounce import LockIdentity, LockVerdict, ReloadSchedule, WatchTiming

TIMING = WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=None, stale_lock_after=600.0)
LOCK: LockIdentity = (42, 1_000)
NEW_LOCK: LockIdentity = (43, 2_000)
LockAt = Callable[[float], LockIdentity | None]


def no_lock(_: float) -> LockIdentity | None:
    return None


def locked_until(end: float, identity: LockIdentity = LOCK) -> LockAt:
    return lambda now: identity if now < end else None


@dataclass
class Thread:
    """The watcher's worker thread with the clock in its hands."""

    schedule: ReloadSchedule
    now: float = 100.0
    lock: LockAt = no_lock
    verdicts: list[tuple[float, LockVerdict]] = field(default_factory=list)

    def run(self, limit: float = 10_000.0) -> tuple[str, float]:
        """Steps until a fire or resync (or idleness, or ``limit``): what and when."""
        while self.now <= limit:
            step = self.schedule.next_step(self.now)
            if step.action in ("fire", "resync"):
                return step.action, self.now
            if step.action == "check_lock":
                verdict = self.schedule.observe_lock(self.now, self.lock(self.now))
                self.verdicts.append((self.now, verdict))
            elif step.until is None:
                return "idle", self.now
            else:
                assert step.until > self.now, "a wait must end in the future"
                self.now = step.until
        return "limit", self.now

    def said(self, verdict: LockVerdict) -> list[float]:
        return [t for t, v in self.verdicts if v == verdict]


def thread(timing: WatchTiming = TIMING, *, now: float = 100.0, lock: LockAt = no_lock) -> Thread:
    return Thread(ReloadSchedule(timing), now=now, lock=lock)


def test_with_nothing_changed_it_waits_for_news_without_a_timeout() -> None:
    t = thread()
    assert t.schedule.next_step(t.now).until is None
    assert t.run() == ("idle", 100.0)


def test_a_change_fires_after_the_quiet_window_once_the_lock_is_seen_free() -> None:
    t = thread()
    t.schedule.change(100.0)
    assert t.schedule.next_step(100.1).action == "wait"
    assert t.schedule.next_step(100.1).until == pytest.approx(100.15)
    assert t.run() == ("fire", pytest.approx(100.15))
    assert t.verdicts == [(pytest.approx(100.15), "free")]


def test_a_fire_is_taken_as_done_and_the_next_burst_starts_afresh() -> None:
    t = thread()
    t.schedule.change(100.0)
    t.run()
    assert t.run() == ("idle", pytest.approx(100.15))
    t.schedule.change(200.0)
    assert t.run() == ("fire", pytest.approx(200.15))


def test_each_change_restarts_the_quiet_window_up_to_max_wait() -> None:
    t = thread()
    fired_at = None
    for tick in range(30):  # a change every 0.1 s, always inside the quiet window
        now = 100.0 + tick / 10
        step = t.schedule.next_step(now)
        if step.action == "check_lock":
            t.schedule.observe_lock(now, None)
            step = t.schedule.next_step(now)
        if step.action == "fire":
            fired_at = now
            break
        t.schedule.change(now)
    assert fired_at == pytest.approx(101.0)


def test_a_forced_reload_is_due_at_once_and_absorbs_pending_changes() -> None:
    t = thread(now=100.05)
    t.schedule.change(100.0)
    t.schedule.force(100.05)
    t.schedule.change(100.06)
    assert t.run() == ("fire", pytest.approx(100.05))
    assert t.run()[0] == "idle"


def test_a_resync_comes_every_interval_after_the_last_action() -> None:
    t = thread(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=60.0))
    t.schedule.resync_after(100.0)
    assert t.run() == ("resync", 160.0)
    t.schedule.resync_after(170.0)  # the resync took ten seconds
    t.now = 180.0
    t.schedule.change(180.0)
    assert t.run() == ("fire", pytest.approx(180.15))
    t.schedule.resync_after(181.0)  # the reload took until 181
    assert t.run() == ("resync", 241.0)


def test_a_resync_answer_is_not_repeated_until_the_period_starts_again() -> None:
    t = thread(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=60.0))
    t.schedule.resync_after(100.0)
    assert t.run() == ("resync", 160.0)
    assert t.schedule.next_step(500.0) == t.schedule.next_step(500.0)
    assert t.schedule.next_step(500.0).action == "wait"


def test_waiting_ends_at_whichever_comes_first_of_the_deadline_and_the_resync() -> None:
    schedule = ReloadSchedule(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=60.0))
    schedule.resync_after(100.0)
    assert schedule.next_step(100.0).until == 160.0
    schedule.change(110.0)
    assert schedule.next_step(110.0).until == pytest.approx(110.15)

    later = ReloadSchedule(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=60.0))
    later.resync_after(100.0)
    later.change(159.9)
    assert later.next_step(159.9).until == 160.0


def test_without_a_resync_interval_no_resync_ever_comes() -> None:
    t = thread()
    t.schedule.resync_after(100.0)
    assert t.run() == ("idle", 100.0)


def test_an_index_lock_holds_the_reload_past_max_wait() -> None:
    t = thread(lock=locked_until(130.0))
    t.schedule.change(100.0)
    assert t.run() == ("fire", pytest.approx(130.0 + 0.15, abs=0.16))
    assert t.said("locked") == [pytest.approx(100.15)]
    assert t.said("released")[0] >= 130.0


def test_a_held_reload_looks_at_the_lock_every_lock_poll() -> None:
    t = thread(lock=locked_until(101.0))
    t.schedule.change(100.0)
    t.run()
    looks = [time for time, verdict in t.verdicts if verdict != "free"]
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(looks)}
    assert gaps == {TIMING.lock_poll}


def test_lock_poll_is_never_shorter_than_50_ms() -> None:
    assert WatchTiming(quiet=0.0, max_wait=1.0).lock_poll == 0.05
    assert WatchTiming(quiet=0.3, max_wait=1.0).lock_poll == 0.3


def test_a_touched_lock_is_looked_at_at_once() -> None:
    t = thread(lock=locked_until(100.2))
    t.schedule.change(100.0)
    t.run(limit=100.16)
    assert t.schedule.next_step(100.2).action == "wait"
    t.schedule.lock_touched()
    assert t.schedule.next_step(100.2).action == "check_lock"
    assert t.schedule.observe_lock(100.2, None) == "released"


def test_after_the_lock_goes_a_fresh_quiet_window_passes_before_firing() -> None:
    t = thread(lock=locked_until(110.0))
    t.schedule.change(100.0)
    action, fired_at = t.run()
    released_at = t.said("released")[0]
    assert action == "fire"
    assert fired_at == pytest.approx(released_at + 0.15)


def test_changes_and_a_forced_reload_while_held_wait_for_the_lock() -> None:
    t = thread(lock=locked_until(150.0))
    t.schedule.change(100.0)
    t.run(limit=120.0)
    t.schedule.force(120.0)
    t.schedule.change(121.0)
    action, fired_at = t.run()
    assert action == "fire"
    assert fired_at > 150.0
    assert t.run()[0] == "idle", "one fire for all of it"


def test_a_long_wait_is_said_once_per_hold() -> None:
    t = thread(lock=locked_until(100.0 + 90.0))
    t.schedule.change(100.0)
    t.run()
    (said_at,) = t.said("long_wait")
    assert said_at == pytest.approx(100.15 + 30.0, abs=TIMING.lock_poll)


def test_a_lock_that_stays_ten_minutes_is_taken_as_stale_and_the_reload_goes_ahead() -> None:
    t = thread(lock=locked_until(float("inf")))
    t.schedule.change(100.0)
    action, fired_at = t.run()
    (stale_at,) = t.said("stale")
    assert action == "fire"
    assert stale_at == pytest.approx(100.15 + 600.0, abs=TIMING.lock_poll)
    assert fired_at == pytest.approx(stale_at + 0.15)


def test_the_stale_lock_is_not_waited_for_again_but_a_new_lock_is() -> None:
    t = thread(lock=locked_until(float("inf")))
    t.schedule.change(100.0)
    t.run()
    t.verdicts.clear()
    t.schedule.change(t.now + 1)
    t.now += 1
    action, _ = t.run()
    assert action == "fire"
    assert t.said("locked") == []

    t.lock = locked_until(float("inf"), NEW_LOCK)
    t.schedule.change(t.now + 1)
    t.now += 1
    t.run(limit=t.now + 5)
    assert len(t.said("locked")) == 1


def test_a_resync_comes_even_while_a_reload_is_held() -> None:
    t = thread(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=60.0), lock=locked_until(1e9))
    t.schedule.resync_after(100.0)
    t.schedule.change(100.0)
    assert t.run() == ("resync", pytest.approx(160.0))
    assert t.schedule.pending
    assert t.schedule.held_since == pytest.approx(100.15)


def test_the_stale_rule_follows_its_setting() -> None:
    timing = WatchTiming(quiet=0.05, max_wait=0.25, resync_interval=None, stale_lock_after=1.0)
    t = thread(timing, lock=locked_until(float("inf")))
    t.schedule.change(100.0)
    action, fired_at = t.run()
    assert action == "fire"
    assert fired_at == pytest.approx(100.05 + 1.0 + 0.05, abs=timing.lock_poll)


def test_inconsistent_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="quiet"):
        ReloadSchedule(WatchTiming(quiet=0.5, max_wait=0.2))


def test_a_file_written_and_not_closed_holds_the_reload_until_it_is() -> None:
    t = thread()
    t.schedule.change(100.0)
    t.schedule.writing("a.yaml", 100.0)
    # The writer pauses mid-file far past the quiet window and max_wait: nothing fires.
    step = t.schedule.next_step(102.0)
    assert (step.action, step.until) == ("wait", pytest.approx(110.0))
    t.now = 105.0
    t.schedule.closed("a.yaml", 105.0)
    assert t.run() == ("fire", pytest.approx(105.15))


def test_a_writer_that_never_closes_is_waited_for_writer_wait_at_most() -> None:
    t = thread(WatchTiming(quiet=0.15, max_wait=1.0, resync_interval=None, writer_wait=5.0))
    t.schedule.change(100.0)
    t.schedule.writing("a.yaml", 100.0)
    assert t.run() == ("fire", pytest.approx(105.0))
    assert t.schedule.writers == []
