"""What soft limit on open files the daemon asks for at start."""

from __future__ import annotations

import resource

from syncd.service.descriptors import UNLIMITED_TARGET, target_limit


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    assert target_limit(1024, 524_288) == 524_288


def test_nothing_is_asked_when_the_soft_limit_is_already_there() -> None:
    assert target_limit(65_536, 65_536) is None
    assert target_limit(resource.RLIM_INFINITY, resource.RLIM_INFINITY) is None


def test_an_unlimited_hard_limit_asks_for_a_bounded_one() -> None:
    # Linux refuses a soft limit past its nr_open: "unlimited" would fail.
    assert target_limit(1024, resource.RLIM_INFINITY) == UNLIMITED_TARGET
    assert target_limit(UNLIMITED_TARGET, resource.RLIM_INFINITY) is None
