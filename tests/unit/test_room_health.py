"""A room's health: degraded after failed attempts in a row, unhealthy after a
permanent failure, and both cleared by a delivery; retries logged without a
warning per attempt."""

from __future__ import annotations

import logging

from syncd.delivery.dispatch import _retry_level
from syncd.registry import DEGRADED_AFTER, RuntimeState


def test_failures_in_a_row_degrade_a_room_until_a_delivery() -> None:
    state = RuntimeState(created_at=0.0)
    for n in range(1, DEGRADED_AFTER):
        assert state.failed("1", float(n), "ConnectionError", permanent=False) == n
        assert not state.rooms["1"].degraded
    state.failed("1", 9.0, "ConnectionError", permanent=False)
    assert state.rooms["1"].degraded and state.rooms["1"].healthy
    state.delivered("1", 10.0)
    health = state.rooms["1"]
    assert (health.degraded, health.failures, health.healthy) == (False, 0, True)


def test_a_permanent_failure_makes_a_room_unhealthy() -> None:
    state = RuntimeState(created_at=0.0)
    state.failed("1", 1.0, "HTTP 401 Unauthorized", permanent=True)
    assert not state.rooms["1"].healthy


def test_retries_warn_when_a_room_turns_degraded_then_ever_more_rarely() -> None:
    warned = [n for n in range(1, 200) if _retry_level(n) == logging.WARNING]
    assert warned == [DEGRADED_AFTER, 8, 16, 32, 64, 128]
