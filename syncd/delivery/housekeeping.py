"""Periodic upkeep of the outbox, and the one owner of a removed integration's items.

Removal has three ways in: a reconcile that prunes an integration (the
registry calls :meth:`Housekeeping.on_applied` before the new set is visible),
a start on a set that lost integrations while the daemon was down
(:meth:`Housekeeping.cancel_removed`), and an item queued by an event that
raced the prune, which a delivery worker hands to :func:`not_deliverable`. All
three cancel with the same reason, decided here and nowhere else; so do the
items of an integration that was disabled.

The loop itself flushes throttle windows whose time has come, dead-letters
what waited longer than ``--max-age`` and forgets finished items after a week.
It runs on its own thread so none of this sits on the ingest or delivery path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

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
    ) -> None:
        self.store = store
        self.ingest = ingest
        self.max_age = max_age
        self.interval = interval
        self.chores = tuple(chores)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncd-housekeeping", daemon=True)
        self._last_expiry = 0.0
        self._failing = False

    def on_applied(self, plan: Plan, snapshot: Snapshot) -> None:
        for integration in plan.delete:
            self._cancel(integration.uid)
        for update in plan.update:
            if update.after.state == "disabled" and update.before.state != "disabled":
                self._cancel(update.uid, DISABLED)

    def cancel_removed(self, snapshot: Snapshot) -> int:
        """Cancel what is queued for integrations the active set no longer has."""
        gone = self.store.undelivered_uids() - set(snapshot.notifiers)
        return sum(self._cancel(uid) for uid in sorted(gone))

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
        for chore in self.chores:
            chore()
        self.ingest.flush_due()
        if time.monotonic() - self._last_expiry > EXPIRY_INTERVAL:
            self._last_expiry = time.monotonic()
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
            self.store.prune_finished(KEEP_FINISHED)
