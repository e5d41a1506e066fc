"""File times as the loader's fingerprints see them: ctime moves only with the
file system's coarse clock, and a file read just after a write is not trusted."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.waiting import wait_for


def later_wall() -> int:
    """A wall clock a second ahead, for ``ConfigLoader(wall=...)``: each read looks
    long after the file's last write, so no fingerprint is taken for racy."""
    return time.time_ns() + 1_000_000_000


def next_tick(path: Path) -> None:
    """Until a change made now gets another ctime than ``path`` has: the file
    system stamps files from a clock that moves every few milliseconds."""
    before = path.stat().st_ctime_ns
    probe = path.with_name(f".{path.name}.tick")

    def moved() -> bool:
        probe.write_bytes(b"")
        return probe.stat().st_ctime_ns != before

    wait_for(moved, timeout=5, what="the file system's clock to move")
    probe.unlink()
