"""What soft limit on open files the daemon asks for at start."""

from __future__ import annotations

import resource

from syncd.service.descriptors import MOST, target_limit


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    assert target_limit(1024, 524_288) == 524_288


def test_nothing_is_asked_when_the_soft_limit_is_already_there() -> None:
    assert target_limit(65_536, 65_536) is None
    assert target_limit(resource.RLIM_INFINITY, resource.RLIM_INFINITY) is None


def test_a_hard_limit_past_a_million_or_unlimited_asks_for_a_million() -> None:
    # A container's "infinity" is 1,073,741,816: children inherit the soft limit,
    # and one that closes every descriptor up to it would take minutes.
    assert target_limit(1024, 1_073_741_816) == MOST == 1_048_576
    assert target_limit(1024, resource.RLIM_INFINITY) == MOST
    assert target_limit(MOST, resource.RLIM_INFINITY) is None
