"""Each room's health as delivery saw it: delivery's own state, not the config's.

The registry's snapshot is a value the config flow replaces whole; what sends
learn about a room (failures in a row, the last error) changes with every send
and belongs here. An update of an integration keeps its rooms' health; a room
or integration removed from the set is forgotten, so one added again later
starts healthy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from syncd.config.plan import Plan
from syncd.registry import Snapshot

DEGRADED_AFTER = 3  # failed attempts in a row that make a room degraded


@dataclass(frozen=True, slots=True)
class RoomHealth:
    """``healthy`` is False after a permanent failure; ``degraded`` after
    ``DEGRADED_AFTER`` failed attempts in a row; a delivery clears both."""

    healthy: bool = True
    degraded: bool = False
    failures: int = 0  # failed attempts since the last delivery
    last_delivery: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


_HEALTHY = RoomHealth()


class RoomHealthBook:
    """Thread-safe: every delivery worker writes here, ``/status`` reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[tuple[str, str], RoomHealth] = {}

    def of(self, uid: str, room_id: str) -> RoomHealth:
        return self._rooms.get((uid, room_id), _HEALTHY)

    def delivered(self, uid: str, room_id: str, at: float) -> None:
        with self._lock:
            old = self._rooms.get((uid, room_id), _HEALTHY)
            # Built whole, not by ``replace``: this runs once per notification.
            self._rooms[uid, room_id] = RoomHealth(
                True, False, 0, at, old.last_error, old.last_error_at
            )

    def failed(self, uid: str, room_id: str, at: float, reason: str, *, permanent: bool) -> int:
        """Record a failed attempt; returns the failed attempts in a row."""
        with self._lock:
            old = self._rooms.get((uid, room_id), _HEALTHY)
            failures = old.failures + 1
            self._rooms[uid, room_id] = replace(
                old,
                healthy=old.healthy and not permanent,
                degraded=failures >= DEGRADED_AFTER,
                failures=failures,
                last_error=reason,
                last_error_at=at,
            )
            return failures

    def on_applied(self, plan: Plan, _snapshot: Snapshot) -> None:
        """A registry listener: forget the rooms that left the set."""
        kept = {u.uid: {room.id for room in u.after.rooms} for u in plan.update}
        gone = {i.uid for i in plan.delete}
        if not kept and not gone:
            return
        with self._lock:
            for key in list(self._rooms):
                uid, room_id = key
                if uid in gone or (uid in kept and room_id not in kept[uid]):
                    del self._rooms[key]
