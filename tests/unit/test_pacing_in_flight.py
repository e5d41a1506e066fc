"""The budget a HipChat answer reports, against the sends other workers still have
on their way: the header counts only what the server had seen when it answered.

A worker is a sender identity (a thread, in the daemon); here the test names it."""

from __future__ import annotations

import pytest

from syncd.hipchat.pacing import Pacing
from syncd.hipchat.wire import LIMIT_HEADERS, RoomTarget

NOW = 1_800_000_000.0
TOKEN = next(limit for limit in LIMIT_HEADERS if limit.scope == "token")
ROOM = next(limit for limit in LIMIT_HEADERS if limit.scope == "room")


class Workers:
    """Which worker calls the pacing now: the test says, as each thread would be."""

    def __init__(self) -> None:
        self.current = 0

    def __call__(self) -> int:
        return self.current

    def as_(self, worker: int) -> Workers:
        self.current = worker
        return self


def token_answer(remaining: int) -> dict[str, str]:
    return {TOKEN.remaining: str(remaining), TOKEN.reset: str(NOW + 60)}


def room(n: int) -> RoomTarget:
    return RoomTarget("https://hipchat.example.com", str(n), "one-token-for-all-rooms")


def test_sends_in_flight_elsewhere_are_taken_from_the_budget_an_answer_reports() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    for n in range(4):
        workers.as_(n)
        pacing.note_send(room(n), NOW)
    # The first answer says 3 left: the three other sends still out will spend them.
    workers.as_(0)
    pacing.observe(room(0), token_answer(3), NOW)
    workers.as_(4)
    assert pacing.delay_before_send(room(9), NOW) == 60.0


def test_a_workers_own_send_is_not_taken_twice() -> None:
    pacing = Pacing(sender=Workers())
    for left in (2, 1):
        pacing.note_send(room(1), NOW)
        pacing.observe(room(1), token_answer(left), NOW)
        assert pacing.delay_before_send(room(1), NOW) == 0.0
    pacing.note_send(room(1), NOW)
    pacing.observe(room(1), token_answer(0), NOW)
    assert pacing.delay_before_send(room(1), NOW) == 60.0


def test_sends_noted_before_the_answered_one_are_not_taken_twice() -> None:
    """An older send still out (or lost) was counted by the server before the one
    answered: the budget the answer reports has it already."""
    workers = Workers()
    pacing = Pacing(sender=workers)
    workers.as_(1)
    pacing.note_send(room(1), NOW)  # no answer comes: a connection error
    workers.as_(2)
    pacing.note_send(room(2), NOW)
    pacing.observe(room(2), token_answer(2), NOW)
    for worker in (3, 4):
        workers.as_(worker)
        assert pacing.reserve(room(worker), NOW) == 0.0
    workers.as_(5)
    assert pacing.reserve(room(5), NOW) == 60.0


def test_an_answer_that_comes_back_late_gives_back_nothing_a_newer_one_took() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    for worker in (1, 2):
        workers.as_(worker)
        pacing.note_send(room(worker), NOW)
    workers.as_(2)
    pacing.observe(room(2), token_answer(8), NOW)
    workers.as_(1)
    pacing.observe(room(1), token_answer(9), NOW)  # counted before the second send
    for n in range(8):
        workers.as_(10 + n)
        assert pacing.reserve(room(10 + n), NOW) == 0.0
    workers.as_(99)
    assert pacing.reserve(room(99), NOW) == 60.0


def test_a_send_held_up_on_its_way_does_not_take_the_budget_spent_meanwhile() -> None:
    """Its answer counts it last: the 100 sends noted after it and answered before
    it are in that answer already."""
    workers = Workers()
    pacing = Pacing(sender=workers)
    workers.as_(1)
    pacing.note_send(room(1), NOW)
    for n in range(2, 102):
        workers.as_(n)
        pacing.note_send(room(n), NOW)
        pacing.observe(room(n), token_answer(500 - (n - 1)), NOW)
    workers.as_(1)
    pacing.observe(room(1), token_answer(399), NOW)
    workers.as_(200)
    assert all(pacing.reserve(room(200), NOW) == 0.0 for _ in range(399))
    assert pacing.reserve(room(200), NOW) == 60.0


def test_an_answer_from_a_window_already_over_is_not_taken_in() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    for worker in (1, 2):
        workers.as_(worker)
        pacing.note_send(room(worker), NOW)
    workers.as_(2)
    pacing.observe(room(2), {TOKEN.remaining: "0", TOKEN.reset: str(NOW + 300)}, NOW)
    workers.as_(1)
    pacing.observe(room(1), {TOKEN.remaining: "4", TOKEN.reset: str(NOW + 1)}, NOW)
    assert pacing.delay_before_send(room(3), NOW + 2) == 298.0


def test_a_rooms_flood_budget_counts_the_rooms_sends_in_flight() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    target = room(7)
    for n in range(3):
        workers.as_(n)
        pacing.note_send(target, NOW)
    workers.as_(0)
    pacing.observe(target, {ROOM.remaining: "2", ROOM.reset: str(NOW + 30)}, NOW)
    workers.as_(3)
    assert pacing.delay_before_send(target, NOW) == 30.0
    assert pacing.delay_before_send(room(8), NOW) == 0.0


def test_a_thread_is_a_worker_by_default() -> None:
    pacing = Pacing()
    pacing.note_send(room(1), NOW)
    pacing.observe(room(1), token_answer(2), NOW)
    pacing.note_send(room(2), NOW)  # the one before was answered: nothing else counts
    pacing.observe(room(2), token_answer(1), NOW)
    assert pacing.reserve(room(3), NOW) == 0.0
    assert pacing.reserve(room(4), NOW) == 60.0


def test_two_workers_cannot_both_reserve_a_budgets_last_request() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    pacing.note_send(room(1), NOW)
    pacing.observe(room(1), token_answer(1), NOW)
    workers.as_(1)
    assert pacing.reserve(room(2), NOW) == 0.0
    workers.as_(2)
    assert pacing.reserve(room(3), NOW) == 60.0
    workers.as_(1)
    pacing.note_send(room(2), NOW)  # the reserved send goes: it counts nothing more
    pacing.observe(room(2), token_answer(0), NOW)
    workers.as_(2)
    assert pacing.reserve(room(3), NOW) == 60.0
    assert pacing.reserve(room(3), NOW + 60) == 0.0  # the window is over


def test_a_reserved_send_is_counted_once() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    pacing.note_send(room(1), NOW)
    pacing.observe(room(1), token_answer(2), NOW)
    workers.as_(1)
    assert pacing.reserve(room(2), NOW) == 0.0
    pacing.note_send(room(2), NOW)
    workers.as_(2)
    assert pacing.reserve(room(3), NOW) == 0.0  # the second of 2
    workers.as_(3)
    assert pacing.reserve(room(4), NOW) == 60.0


def room_answer(remaining: int, reset: float) -> dict[str, str]:
    return {
        TOKEN.remaining: "400",
        TOKEN.reset: str(int(NOW + 300)),
        ROOM.remaining: str(remaining),
        ROOM.reset: str(reset),
    }


def test_a_rooms_minute_ends_a_minute_after_an_answer_in_it_not_at_the_rounded_reset() -> None:
    pacing = Pacing(sender=Workers())
    # The window opened as the first send arrived, 0.2 s before its answer came back;
    # HipChat names its reset in whole seconds, up to a second late.
    opened = NOW + 0.3
    pacing.note_send(room(1), opened)
    pacing.observe(room(1), room_answer(29, NOW + 61), opened + 0.2)
    for n in range(29):
        pacing.note_send(room(1), opened + 1 + n)
        pacing.observe(room(1), room_answer(28 - n, NOW + 61), opened + 1.2 + n)
    minute_after_first_answer = opened + 0.2 + 60
    assert pacing.delay_before_send(room(1), minute_after_first_answer - 0.1) > 0
    assert pacing.delay_before_send(room(1), minute_after_first_answer) == 0.0
    # The token's budget has no stated period: its reset header stands as said.
    assert ROOM.period == 60.0 and TOKEN.period is None


def test_a_reset_sooner_than_a_minute_after_the_answer_stands() -> None:
    pacing = Pacing(sender=Workers())
    pacing.note_send(room(1), NOW)
    pacing.observe(room(1), room_answer(0, NOW + 5), NOW)
    assert pacing.delay_before_send(room(1), NOW) == 5.0


def test_an_answer_from_the_last_window_does_not_end_the_new_one_early() -> None:
    workers = Workers()
    pacing = Pacing(sender=workers)
    workers.as_(1)
    pacing.note_send(room(1), NOW)
    workers.as_(2)
    pacing.note_send(room(1), NOW + 70)
    pacing.observe(room(1), room_answer(0, NOW + 131), NOW + 70.2)
    # The first send's answer, from the window before, comes back last: it names that
    # window, so the minute of the new one is not taken from its time.
    workers.as_(1)
    pacing.observe(room(1), room_answer(0, NOW + 61), NOW + 70.3)
    assert pacing.delay_before_send(room(1), NOW + 71) == pytest.approx(59.2)
