"""A room's health: degraded after failed attempts in a row, unhealthy after a
permanent failure, and both cleared by a delivery; retries logged without a
warning per attempt."""

from __future__ import annotations

import logging

from syncd.config.model import Integration, integration_from_data
from syncd.config.plan import Plan, Update
from syncd.delivery.dispatch import _retry_level
from syncd.delivery.health import DEGRADED_AFTER, RoomHealthBook
from syncd.registry import Snapshot


def test_failures_in_a_row_degrade_a_room_until_a_delivery() -> None:
    book = RoomHealthBook()
    for n in range(1, DEGRADED_AFTER):
        assert book.failed("a", "1", float(n), "ConnectionError", permanent=False) == n
        assert not book.of("a", "1").degraded
    book.failed("a", "1", 9.0, "ConnectionError", permanent=False)
    assert book.of("a", "1").degraded and book.of("a", "1").healthy
    assert not book.of("b", "1").degraded
    book.delivered("a", "1", 10.0)
    health = book.of("a", "1")
    assert (health.degraded, health.failures, health.healthy) == (False, 0, True)


def test_a_permanent_failure_makes_a_room_unhealthy() -> None:
    book = RoomHealthBook()
    book.failed("a", "1", 1.0, "HTTP 401 Unauthorized", permanent=True)
    assert not book.of("a", "1").healthy
    book.failed("a", "1", 2.0, "HTTP 503", permanent=False)
    assert not book.of("a", "1").healthy


def test_retries_warn_when_a_room_turns_degraded_then_ever_more_rarely() -> None:
    warned = [n for n in range(1, 200) if _retry_level(n) == logging.WARNING]
    assert warned == [DEGRADED_AFTER, 8, 16, 32, 64, 128]


def _integration(uid: str, rooms: list[int]) -> Integration:
    return integration_from_data(
        {
            "uid": uid,
            "project": "checkout",
            "name": uid,
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": room, "token": {"env": "HIPCHAT_T"}} for room in rooms],
            },
        }
    )


def test_a_room_or_integration_that_leaves_the_set_comes_back_healthy() -> None:
    book = RoomHealthBook()
    before = _integration("a", [1, 2])
    for uid, room in (("a", "1"), ("a", "2"), ("b", "1")):
        book.failed(uid, room, 1.0, "HTTP 404 Not Found", permanent=True)
    after = _integration("a", [1])
    book.on_applied(
        Plan(update=(Update(before, after),), delete=(_integration("b", [1]),)), Snapshot()
    )
    assert not book.of("a", "1").healthy  # kept through an update
    assert book.of("a", "2").healthy  # room removed
    assert book.of("b", "1").healthy  # integration removed
