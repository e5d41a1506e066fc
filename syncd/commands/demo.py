"""``syncd demo``: the daemon on the shipped example, against a local HipChat."""

from __future__ import annotations


def demo() -> int:
    from syncd import demo as tour

    return tour.run()
