"""Room to write on the state dir's file system: told before it runs out, and a
little kept back so that delivery goes on once it has.

A full disk fails every write alike, and an outbox whose queued notifications
cannot even be marked delivered stops delivering. So the store keeps a
reserve file beside the database. When a write fails for want of space, or
the file system is nearly full, the reserve is given back and the store
refuses new data (events, digests) until there is room for the reserve again
and more: the space it freed is for settling sends, which delivery needs,
and for SQLite to copy its log into the database so that log can start over
instead of growing.

Nothing here knows SQLite; the store says when a write failed and asks
whether new data fits.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Kept back for settling sends once the disk is full.
RESERVE_BYTES = 2 << 20
# Below this many bytes free the store takes no new data: the next batch may not fit.
LOW_SPACE = 1 << 20
_CHUNK = b"\0" * (64 << 10)


class Space:
    """The reserve file, and why new data is refused (None while it is not)."""

    def __init__(
        self, database: Path, *, low_space: int = LOW_SPACE, reserve: int = RESERVE_BYTES
    ) -> None:
        self.reserve_path = database.with_name(database.name + ".reserve")
        self.low_space = low_space
        self.reserve = reserve
        self.problem: str | None = None
        self.keep()

    def free(self) -> int | None:
        """Bytes free to this process on the file system; None when it cannot tell."""
        try:
            stat = os.statvfs(self.reserve_path.parent)
        except OSError:
            return None
        return stat.f_bavail * stat.f_frsize

    def short(self) -> str | None:
        """Why new data would not fit now, judged by free space alone."""
        free = self.free()
        if free is None or free >= self.low_space:
            return None
        return (
            f"{free} bytes free on the state dir's file system, under the "
            f"{self.low_space} it needs to take events in"
        )

    def full(self, reason: str) -> None:
        """A write failed for want of space (or space ran low): refuse new data, and
        give the reserve back for settling sends."""
        self.problem = reason
        with contextlib.suppress(OSError):
            self.reserve_path.unlink()

    def room_again(self) -> bool:
        """Whether there is room for the reserve and for new data besides; if so, the
        reserve is kept again. The store then confirms with a write of its own."""
        free = self.free()
        if free is not None and free < self.low_space + self.reserve:
            return False
        return self.keep()

    def keep(self) -> bool:
        """Write the reserve file, whole and synced; False when it does not fit."""
        try:
            if self.reserve_path.stat().st_size == self.reserve:
                return True
        except OSError:
            pass
        try:
            _fill(self.reserve_path, self.reserve)
        except OSError:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            return False
        return True


def _fill(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        written = 0
        while written < size:
            written += os.write(fd, _CHUNK[: size - written])
        os.fsync(fd)
    finally:
        os.close(fd)
