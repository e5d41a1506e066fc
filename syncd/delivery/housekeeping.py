"""Periodic upkeep of the outbox, and the one owner of a removed integration's items.

Removal has three ways in: a reconcile that prunes an integration (the
registry calls :meth:`Housekeeping.on_applied` before the new set is visible),
a start on a set that lost integrations while the daemon was down
(:meth:`Housekeeping.cancel_removed`), and an item queued by an event that
raced the prune, which a delivery worker hands to :func:`not_deliverable`. All
three cancel with the same reason, decided here and nowhere else; so do the
items of an integration that was disabled.

A removal by reconcile is not final at once: a checkout that flaps, or a
truncated file applied, would otherwise lose what was queued.

On a store several daemons share, only a daemon that applied a removal
cancels for it. A start on a set without an integration is no removal when
another live daemon's set has it (a rollout under way, this daemon on the
older or newer side): its items are left to that daemon (``elsewhere``). For
``prune_grace`` seconds (``--prune-grace``) the removed integration's endpoint
and room ids are remembered; if it comes back with the same ones (and not
disabled), what the removal cancelled is queued again, in order, as old as it
was. Other changes (name, display, actions) do not matter: queued items are
rendered with the integration's current settings anyway. A removal found at
start is final: the set it was in is gone.

The loop itself flushes throttle windows whose time has come, dead-letters
what waited longer than ``--max-age`` (of the daemon's running time), forgets
old fingerprints and idle windows, cuts waits a step of the wall clock made
too long, and forgets finished items after a week. It first asks the store
whether new data fits; while it does not (a full disk, or a shared store out
of reach), it does nothing else, so the space left serves delivery's settles,
and the store's probe is what finds a lost database back. It runs on its own
thread so none of this sits on the ingest or delivery path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd.config.model import Integration
from syncd.config.plan import Plan
from syncd.events.ingest import Ingest
from syncd.registry import Snapshot
from syncd.store.contract import Item, Settle, Store, StoreError

log = logging.getLogger("syncd")

REMOVED = "integration removed"
DISABLED = "integration disabled"
EXPIRY_INTERVAL = 60.0
KEEP_FINISHED = 7 * 24 * 3600.0
PRUNE_GRACE = 600.0


@dataclass(frozen=True)
class _Removal:
    """A removed integration, while it may still come back: where it sent to, and when."""

    endpoint: str
    rooms: tuple[str, ...]
    at: float  # wall clock: the items its removal cancelled were cancelled since
    mono: float  # monotonic: when the grace ends, whatever the wall clock does


def _shape(integration: Integration) -> tuple[str, tuple[str, ...]]:
    """What "unchanged" compares: the endpoint and the rooms, in order."""
    return integration.hipchat.endpoint, tuple(room.id for room in integration.rooms)


def not_deliverable(item: Item, integration: Integration | None) -> Settle | None:
    """A claimed item whose integration is gone or disabled is cancelled, as the
    change that removed or disabled it cancels the rest; None when it may be sent."""
    if integration is None:
        return Settle(item.id, "cancelled", REMOVED)
    if integration.state == "disabled":
        return Settle(item.id, "cancelled", DISABLED)
    return None


class Housekeeping:
    def __init__(
        self,
        store: Store,
        ingest: Ingest,
        *,
        max_age: float,
        interval: float = 1.0,
        chores: Sequence[Callable[[], None]] = (),
        prune_grace: float = PRUNE_GRACE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wake: Callable[[int], None] = lambda _count: None,
        elsewhere: Callable[[bool], frozenset[str]] = lambda _fresh: frozenset(),
    ) -> None:
        self.store = store
        self.ingest = ingest
        self.max_age = max_age
        self.interval = interval
        self.chores = tuple(chores)
        self.prune_grace = prune_grace
        self.clock = clock
        self.monotonic = monotonic
        self.wake = wake
        self.elsewhere = elsewhere
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncd-housekeeping", daemon=True)
        self._last_expiry: float | None = None
        self._failing = False
        self._full: str | None = None
        self._removed: dict[str, _Removal] = {}
        self._returning: dict[str, _Removal] = {}
        self._lock = threading.Lock()

    def on_applied(self, plan: Plan, snapshot: Snapshot) -> None:
        for integration in plan.delete:
            self._remove(integration)
        for integration in plan.create:
            self._returned(integration)
        for update in plan.update:
            if update.after.state == "disabled" and update.before.state != "disabled":
                self._cancel(update.uid, DISABLED)

    def _remove(self, integration: Integration) -> None:
        endpoint, rooms = _shape(integration)
        removal = _Removal(endpoint, rooms, self.clock(), self.monotonic())
        with self._lock:
            self._returning.pop(integration.uid, None)
            if self.prune_grace > 0:
                self._removed[integration.uid] = removal
        self._cancel(integration.uid)

    def _returned(self, integration: Integration) -> None:
        """An integration created again: if it is the one removed within the grace,
        its items are queued again once the set holding it is published (a worker
        would cancel them before)."""
        with self._lock:
            removal = self._removed.pop(integration.uid, None)
            if removal is None or self.monotonic() - removal.mono > self.prune_grace:
                return
            if integration.state == "disabled" or _shape(integration) != (
                removal.endpoint,
                removal.rooms,
            ):
                log.info(
                    "%s is back within --prune-grace but changed (endpoint, rooms or "
                    "disabled): what its removal cancelled stays cancelled",
                    integration.uid,
                )
                return
            self._returning[integration.uid] = removal

    def _revive_returned(self) -> None:
        """Queue again what the removal of an integration now back in the set cancelled."""
        notifiers = self.ingest.registry.snapshot.notifiers
        with self._lock:
            back = [(uid, r) for uid, r in self._returning.items() if uid in notifiers]
            for uid, _ in back:
                del self._returning[uid]
        for uid, removal in back:
            revived = self.store.revive(uid, REMOVED, removal.at)
            if revived:
                log.warning(
                    "%s came back unchanged within --prune-grace %.0f s: %d notification(s) "
                    "its removal cancelled are queued again",
                    uid,
                    self.prune_grace,
                    revived,
                )
                self.wake(revived)

    def _forget_removals(self) -> None:
        now = self.monotonic()
        with self._lock:
            for uid in [u for u, r in self._removed.items() if now - r.mono > self.prune_grace]:
                del self._removed[uid]

    def cancel_removed(self, snapshot: Snapshot) -> int:
        """Cancel what is queued for integrations the active set no longer has and
        no other live daemon knows (read now, not as last seen)."""
        lacking = self.store.undelivered_uids() - set(snapshot.notifiers)
        known = self.elsewhere(True) & lacking if lacking else frozenset()
        if known:
            log.info(
                "%d integration(s) with queued notifications are not in this set but "
                "another daemon's (%s): left to it",
                len(known),
                ", ".join(sorted(known)[:5]),
            )
        return sum(self._cancel(uid) for uid in sorted(lacking - known))

    def _cancel(self, uid: str, reason: str = REMOVED) -> int:
        cancelled = self.store.cancel_integration(uid, reason)
        if cancelled:
            what = "removed" if reason == REMOVED else "disabled"
            log.warning(
                "%s %s with %d notification(s) still queued: cancelled", uid, what, cancelled
            )
        return cancelled

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop, and wait up to ``timeout`` for a chore under way: a last-known-good
        copy still being written must not outlive the daemon's hold on its state dir."""
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                self._failing = False
            except StoreError as exc:
                if not self._failing:
                    log.error("housekeeping cannot write the outbox: %s", exc)
                self._failing = True
            except Exception:
                log.exception("housekeeping failed")

    def tick(self) -> None:
        if not self._writable():
            return
        for chore in self.chores:
            chore()
        self._revive_returned()
        self.store.cut_waits()
        self.ingest.flush_due()
        now = self.monotonic()
        if self._last_expiry is None or now - self._last_expiry > EXPIRY_INTERVAL:
            self._last_expiry = now
            self._expire()
            self.store.forget_old(self.max_age)
            self.store.prune_finished(KEEP_FINISHED)
            self._forget_removals()

    def _writable(self) -> bool:
        """Whether new data fits in the store (and a shared one is in reach); said
        once when it stops, once when back."""
        problem = self.store.probe()
        if problem is not None and self._full is None:
            log.error(
                "the outbox cannot take new writes: %s; events are refused (503) and "
                "/readyz says not ready until it can; queued notifications are still "
                "delivered while settling them is possible",
                problem,
            )
        elif problem is None and self._full is not None:
            log.info("the outbox takes new writes again")
        self._full = problem
        return problem is None

    def _expire(self) -> None:
        for expired in self.store.expire(self.max_age):
            log.warning(
                "%s room %s: %d notification(s) expired undelivered after %.0f s "
                "(dead-lettered; last error: %s)",
                expired.uid,
                expired.room_id,
                expired.count,
                self.max_age,
                expired.last_reason or "none",
            )
