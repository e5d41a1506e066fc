"""How often the daemon's cyclic garbage collector runs: CPython's pace is set
for short programs, not for a daemon with a thousand sends in flight.

CPython collects its youngest generation once 700 more container objects were
made than freed, and counts as old what lives through one of those and then
through a collection of the middle generation (every tenth); once the old
objects have grown by a quarter since the last full collection, the next one
walks the whole heap. A send in flight holds a few dozen objects (its task,
the item and its event, the request, the answer) for as long as HipChat takes to
answer, so at 1,024 workers they live through the young collections, are counted
as old although they are freed a moment later, and set off full collections of
everything the daemon keeps: the integrations and their rooms, the loader's
results, the kept connections. At 10,000 rooms that was 37 full collections of
about 140 ms each in a run of a minute and a half: with the younger ones, a
sixth of the daemon's CPU.

With a young collection every ``YOUNG`` new objects instead, a send is answered
before its objects are counted as old, and a full collection comes when the
heap has grown, as CPython means it to. Cycles are still collected (garbage
in a cycle waits for up to ``YOUNG`` new objects instead of 700), and the older
generations keep CPython's own thresholds.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# Objects made and not yet freed between two young collections: ten times
# CPython's default.
YOUNG = 7_000


def young_threshold(current: int) -> int | None:
    """The youngest generation's threshold to set, or None to leave it: a
    collector switched off (0) stays off, and a higher threshold stays."""
    if current == 0 or current >= YOUNG:
        return None
    return YOUNG


def pace_collector() -> None:
    """Collect the youngest generation every ``YOUNG`` new objects, saying so."""
    current, middle, oldest = gc.get_threshold()
    wanted = young_threshold(current)
    if wanted is None:
        return
    gc.set_threshold(wanted, middle, oldest)
    log.info("garbage collector: a young collection every %d new objects, not %d", wanted, current)
