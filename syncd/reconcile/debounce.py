"""When to reload the config: the watcher's timing, as a pure state machine.

The watcher's thread feeds :class:`ReloadSchedule` what happened (a change, a
forced reload, a look at git's index lock), each with the time it happened, and
asks it what to do next: fire the reload, resync, look at the lock, or sleep
until a given time. It does no I/O and reads no clock, so every timing rule
(the quiet window, the maximum wait, the wait for a git operation and when to
stop waiting for one, the resync period) is decided here and specified by tests
that pass the time in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Debouncer",
    "LockIdentity",
    "LockVerdict",
    "ReloadSchedule",
    "ReloadStep",
    "WatchTiming",
]

# The index lock's inode and mtime: a new git operation makes a new lock file.
LockIdentity = tuple[int, int]

# What one look at the index lock meant:
# free: not locked when a reload was due, so it can go ahead;
# locked: a reload was due but git is at work, so it is held;
# waiting: still held; long_wait: still held, long enough to say so (once a hold);
# released: the lock is gone; stale: it stayed so long it is taken for one left
# by a git that died, and no longer waited for.
LockVerdict = Literal["free", "locked", "waiting", "long_wait", "released", "stale"]

_MIN_LOCK_POLL = 0.05


@dataclass(frozen=True)
class WatchTiming:
    """The watcher's windows, in seconds; ``resync_interval=None`` disables resyncs."""

    quiet: float = 0.15
    max_wait: float = 1.0
    resync_interval: float | None = 60.0
    stale_lock_after: float = 600.0
    long_lock_warning: float = 30.0
    # How long a file written to and not yet closed holds a reload: a writer that
    # pauses mid-file must not have its half file applied.
    writer_wait: float = 10.0

    @property
    def lock_poll(self) -> float:
        """How often a held reload looks at the lock: a lock outside the watched
        tree sends no events when it goes."""
        return max(self.quiet, _MIN_LOCK_POLL)


@dataclass(frozen=True)
class ReloadStep:
    """What to do next. ``wait`` sleeps until ``until`` (``None``: until news arrives),
    then asks again; after ``check_lock`` the answer goes to ``observe_lock``."""

    action: Literal["fire", "resync", "check_lock", "wait"]
    until: float | None = None


_FIRE = ReloadStep("fire")
_RESYNC = ReloadStep("resync")
_CHECK_LOCK = ReloadStep("check_lock")


class Debouncer:
    """Decides when a burst of changes has settled; the clock is passed in.

    A quiet window alone never fires while something keeps writing, so
    ``max_wait`` caps how long the first change of a burst can wait. While a git
    operation holds its index lock the work tree is half-written: nothing fires
    until the lock is gone, and then only after a fresh quiet window, which gives
    git time to move HEAD after it releases the index.
    """

    def __init__(self, quiet: float, max_wait: float) -> None:
        if quiet < 0 or max_wait < quiet:
            raise ValueError(f"need 0 <= quiet <= max_wait, got {quiet=} {max_wait=}")
        self.quiet = quiet
        self.max_wait = max_wait
        self._first: float | None = None
        self._last: float | None = None
        self._forced_at: float | None = None
        self._held_since: float | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    @property
    def held_since(self) -> float | None:
        return self._held_since

    def event(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def force(self, now: float) -> None:
        """Be due at ``now``; pending events fire with it rather than separately."""
        self.event(now)
        if self._forced_at is None:
            self._forced_at = now

    def hold(self, now: float) -> None:
        if self._held_since is None:
            self._held_since = now

    def release(self, now: float) -> None:
        if self._held_since is None:
            return
        self._held_since = None
        if self._first is not None:
            self._first = self._last = now
            self._forced_at = None

    def restart(self, now: float) -> None:
        """Pending changes count from ``now``, as if they had just happened."""
        if self._first is not None:
            self._first = self._last = now

    def deadline(self) -> float | None:
        """When to fire; ``None`` when nothing is pending or the lock holds it back."""
        if self._first is None or self._last is None or self._held_since is not None:
            return None
        deadline = min(self._last + self.quiet, self._first + self.max_wait)
        if self._forced_at is not None:
            deadline = min(deadline, self._forced_at)
        return deadline

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def fired(self) -> None:
        self._first = self._last = self._forced_at = None


class ReloadSchedule:
    """The :class:`Debouncer`, the wait for git's index lock, and the resync timer.

    A reload that is due is first checked against the index lock: while git
    holds it, the reload waits, looking at the lock every ``lock_poll`` seconds
    and at once when told the lock file changed. A lock that stays
    ``stale_lock_after`` seconds is remembered by identity and ignored from then
    on; a new lock is waited for again.
    """

    def __init__(self, timing: WatchTiming) -> None:
        self.timing = timing
        self._burst = Debouncer(timing.quiet, timing.max_wait)
        self._next_resync: float | None = None
        self._lock_checked_at: float | None = None
        self._lock_free_at: float | None = None
        self._warned_long_wait = False
        self._stale_lock: LockIdentity | None = None
        self._writers: dict[str, float] = {}

    @property
    def pending(self) -> bool:
        """Changes wait to be fired (held by the lock or not)."""
        return self._burst.pending

    @property
    def held_since(self) -> float | None:
        return self._burst.held_since

    def change(self, now: float) -> None:
        self._burst.event(now)

    def force(self, now: float) -> None:
        """A reload asked for (SIGHUP, a resync that found a change): due now."""
        self._burst.force(now)

    def writing(self, path: str, now: float) -> None:
        """``path`` was written to and is not closed yet: reloads wait for it."""
        self._writers.setdefault(path, now)

    def closed(self, path: str, now: float) -> None:
        """``path`` was closed after writing, or is gone; once no writer is left, a
        fresh quiet window passes before the reload, as after git's lock."""
        if self._writers.pop(path, None) is not None and not self._writers:
            self._burst.restart(now)

    @property
    def writers(self) -> list[str]:
        return sorted(self._writers)

    def lock_touched(self) -> None:
        """The lock file was created, changed or removed: look at it before waiting on."""
        self._lock_checked_at = None

    def resync_after(self, now: float) -> None:
        """Start the resync period; at start, and after every fire or resync."""
        interval = self.timing.resync_interval
        self._next_resync = None if interval is None else now + interval

    def next_step(self, now: float) -> ReloadStep:
        """What to do at ``now``; a ``fire`` or ``resync`` answer is taken as done."""
        if self._next_resync is not None and now >= self._next_resync:
            self._next_resync = None
            return _RESYNC
        if self._burst.held_since is not None:
            return self._while_held(now)
        if self._writers:
            until = min(self._writers.values()) + self.timing.writer_wait
            if now < until:
                return self._wait(until)
            self._writers.clear()  # a writer that never closes is not waited for again
        deadline = self._burst.deadline()
        if deadline is not None and now >= deadline:
            return self._when_due(deadline)
        return self._wait(deadline)

    def observe_lock(self, now: float, identity: LockIdentity | None) -> LockVerdict:
        """Take in a look at the index lock (``None``: no lock file) asked for by a
        ``check_lock`` step."""
        locked = identity is not None and identity != self._stale_lock
        held_since = self._burst.held_since
        if held_since is None:
            return self._before_firing(now, locked)
        self._lock_checked_at = now
        if not locked:
            self._burst.release(now)
            return "released"
        return self._still_locked(now, now - held_since, identity)

    def _while_held(self, now: float) -> ReloadStep:
        checked = self._lock_checked_at
        if checked is None or now >= checked + self.timing.lock_poll:
            return _CHECK_LOCK
        return self._wait(checked + self.timing.lock_poll)

    def _when_due(self, deadline: float) -> ReloadStep:
        free_at = self._lock_free_at
        if free_at is None or free_at < deadline:
            return _CHECK_LOCK
        self._burst.fired()
        self._lock_free_at = None
        return _FIRE

    def _wait(self, until: float | None) -> ReloadStep:
        resync = self._next_resync
        if until is None or (resync is not None and resync < until):
            until = resync
        return ReloadStep("wait", until)

    def _before_firing(self, now: float, locked: bool) -> LockVerdict:
        if not locked:
            self._lock_free_at = now
            return "free"
        self._burst.hold(now)
        self._lock_checked_at = now
        self._warned_long_wait = False
        return "locked"

    def _still_locked(
        self, now: float, held_for: float, identity: LockIdentity | None
    ) -> LockVerdict:
        if held_for >= self.timing.stale_lock_after:
            self._stale_lock = identity
            self._burst.release(now)
            return "stale"
        if held_for > self.timing.long_lock_warning and not self._warned_long_wait:
            self._warned_long_wait = True
            return "long_wait"
        return "waiting"
