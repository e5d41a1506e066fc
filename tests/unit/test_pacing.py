"""The budget a HipChat answer reports, against the sends still on their way.

An answer's ``X-Ratelimit-Remaining`` counts the requests the server had seen
when it answered; sends other workers made since are not in it. Taking the
header as the budget left would let those sends spend it twice, and the next
sends meet a 429 (seen as bursts of 429s with many rooms on one token).
"""

from __future__ import annotations

import pytest

from syncd.hipchat.pacing import Pacing
from syncd.hipchat.wire import LIMIT_HEADERS, RoomTarget

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
TOKEN = next(limit for limit in LIMIT_HEADERS if limit.scope == "token")


def _answer(remaining: int) -> dict[str, str]:
    return {TOKEN.remaining: str(remaining), TOKEN.reset: str(NOW + 60)}


def test_sends_in_flight_are_taken_from_the_budget_an_answer_reports() -> None:
    pacing = Pacing()
    rooms = [RoomTarget("https://h", str(room), "token") for room in range(4)]
    for target in rooms:
        pacing.note_send(target, NOW)
    # The first answer says 3 left; the three other sends are still out and will
    # spend them: nothing may go until the window resets.
    pacing.observe(rooms[0], _answer(3), NOW)
    pacing.note_done(rooms[0])
    fifth = RoomTarget("https://h", "9", "token")
    assert pacing.delay_before_send(fifth, NOW) == 60.0


def test_a_send_that_got_no_answer_no_longer_counts_as_in_flight() -> None:
    pacing = Pacing()
    first, second = (RoomTarget("https://h", room, "token") for room in ("1", "2"))
    pacing.note_send(first, NOW)
    pacing.note_send(second, NOW)
    pacing.note_done(first)  # a connection error: no headers
    pacing.observe(second, _answer(1), NOW)
    pacing.note_done(second)
    assert pacing.delay_before_send(first, NOW) == 0.0
    pacing.note_send(first, NOW)
    assert pacing.delay_before_send(second, NOW) == 60.0
