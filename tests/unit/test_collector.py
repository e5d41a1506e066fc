"""The daemon's pace for the cyclic garbage collector: a young collection every
``YOUNG`` new objects, so that the objects of sends in flight are freed before
they count as old and set off full collections of the whole heap."""

from __future__ import annotations

import gc
import logging
import sys
from collections import deque
from collections.abc import Iterator

import pytest

from syncd.service.collector import YOUNG, pace_collector, young_threshold

# The shape of the daemon's work, small: a heap of long-lived objects (the
# integrations), and sends that each hold a few containers while in flight,
# 1,024 at once, freed in the order they were made, and leave a little garbage
# in a reference cycle (as asyncio's tasks and futures do), which only the
# collector frees.
KEPT = 50_000
IN_FLIGHT = 1_024
SENDS = 200_000


@pytest.fixture
def thresholds() -> Iterator[None]:
    """The collector's thresholds as the test found them, whatever it changes."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [(700, YOUNG), (1, YOUNG), (YOUNG - 1, YOUNG), (0, None), (YOUNG, None), (50_000, None)],
)
def test_the_young_threshold_is_raised_to_young_never_lowered_and_never_switched_on(
    current: int, wanted: int | None
) -> None:
    assert young_threshold(current) == wanted


def test_pace_sets_the_young_threshold_keeps_the_older_ones_and_says_so(
    thresholds: None, caplog: pytest.LogCaptureFixture
) -> None:
    gc.set_threshold(700, 11, 12)
    with caplog.at_level(logging.INFO, logger="syncd.service.collector"):
        pace_collector()
    assert gc.get_threshold() == (YOUNG, 11, 12)
    assert f"a young collection every {YOUNG} new objects, not 700" in caplog.text


def test_a_collector_switched_off_stays_off(
    thresholds: None, caplog: pytest.LogCaptureFixture
) -> None:
    gc.set_threshold(0, 10, 10)
    with caplog.at_level(logging.INFO, logger="syncd.service.collector"):
        pace_collector()
    assert gc.get_threshold() == (0, 10, 10)
    assert caplog.text == ""


def full_collections(young: int) -> int:
    """Full collections while SENDS sends go through IN_FLIGHT slots beside a heap
    of KEPT long-lived objects, with the youngest generation's threshold ``young``."""
    kept = [[n] for n in range(KEPT)]
    gc.collect()
    middle, oldest = gc.get_threshold()[1:]
    gc.set_threshold(young, middle, oldest)
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        flying: deque[list[object]] = deque()
        for n in range(SENDS):
            flying.append([[n] for _ in range(10)])
            cycle: list[object] = [n, {}, []]
            cycle[1]["send"] = cycle  # type: ignore[index]
            cycle[2].append(cycle)  # type: ignore[attr-defined]
            if len(flying) > IN_FLIGHT:
                flying.popleft()
    finally:
        gc.callbacks.remove(count)
    del kept
    return seen.count(2)


def test_sends_in_flight_set_off_full_collections_at_cpythons_pace_and_none_at_the_daemons(
    thresholds: None,
) -> None:
    """The reason for the pace, shown on the collector itself: CPython's 700
    counts the objects of sends in flight as old and walks the whole heap again
    and again; at ``YOUNG`` they are freed first."""
    at_cpythons = full_collections(700)
    if at_cpythons == 0 and sys.version_info >= (3, 14):
        pytest.skip("this Python's collector is incremental: it has no full collections to count")
    assert at_cpythons >= 2
    assert full_collections(YOUNG) == 0
