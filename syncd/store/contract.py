"""The storage interface of the event flow, and the records it keeps.

Ingest, housekeeping and delivery speak only to a :class:`Store`; the SQLite
outbox (``syncd.store.sqlite``) is one implementation. A second one, say a shared
server database that several daemons on several hosts use together, can be
added without touching ingest, rules or dispatch if it keeps these promises:

- **Atomic batches.** Everything done inside one :meth:`Store.batch` is
  committed together or not at all, and batches are serialisable: an event's
  "is this fingerprint new?" and its throttle window are read and written
  without another batch interleaving. An event whose batch committed is never
  lost; one whose batch failed left no trace.
- **Leased claims.** :meth:`Store.settle_and_claim` hands out each room's
  *head* (its oldest undelivered item) only, never two items of one room at
  once, so a room is delivered in order. Finding the due heads costs the same
  however many items wait behind them. A claimed item is leased; when the
  lease runs out without a settle (a crashed worker or host) it is claimable
  again: delivery is at least once.
- **Settles that respect cancellation.** Settling an item that was cancelled
  while in flight does not revive it; only "delivered" is still recorded.
- **Durability.** A returned call has reached stable storage as the
  implementation's durability setting promises.

Only the event and what the rules decided are stored; the message is rendered
and the token looked up at send time, so pending items go out with the
integration's current settings and a rotated token.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ItemState = Literal["pending", "inflight", "delivered", "dead", "cancelled"]


class StoreError(Exception):
    """A store could not do what was asked. Callers catch this, never an
    implementation's own exceptions, so a second implementation changes no caller."""


class StoreUnavailable(StoreError):
    """Try again later: the store is busy, full or out of reach, and nothing of the
    failed call was kept. Ingest answers 503; delivery and upkeep pause and retry."""


class StoreUnusable(StoreError):
    """The store cannot be used as it is (damaged, or not a store at all): the
    daemon refuses to start on it rather than lose or misread what it holds."""


@dataclass(frozen=True)
class Window:
    """Throttle state of one aggregation key (see ``rules.window_key``).

    ``mentions`` are those the events waiting in the window earned, each once, in
    the order first earned: the digest that ends the window stands for all of
    those events, so it carries all of their mentions, not only the last one's.
    """

    last_sent: float | None = None
    pending: int = 0
    pending_since: float | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewItem:
    """A notification to queue: one event for one room of one integration."""

    uid: str
    room_id: str
    event: Mapping[str, Any]
    count: int = 1
    mentions: tuple[str, ...] = ()
    since: float | None = None  # a digest: when the first event it stands for came


@dataclass(frozen=True)
class WindowUpdate:
    """A throttle window to store (its mentions with it); ``last_event`` None keeps
    the stored one."""

    key: str
    uid: str
    window: Window
    due_at: float | None
    last_event: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StoredWindow:
    key: str
    uid: str
    window: Window
    last_event: Mapping[str, Any] | None


@dataclass(frozen=True)
class Item:
    id: int
    uid: str
    room_id: str
    event: Mapping[str, Any]
    count: int
    mentions: tuple[str, ...]
    created_at: float
    next_attempt_at: float
    attempts: int
    state: ItemState
    lease_until: float | None = None
    reason: str | None = None
    finished_at: float | None = None
    since: float | None = None


@dataclass(frozen=True)
class Settle:
    """How a claimed item ended: done (delivered, dead, cancelled) or pending again."""

    item_id: int
    state: Literal["delivered", "dead", "cancelled", "pending"]
    reason: str | None = None
    retry_at: float | None = None
    # False: the item went back unsent (its server had no free slot), so the claim
    # does not count as an attempt.
    attempted: bool = True


@dataclass(frozen=True)
class Expired:
    """Notifications of one room dead-lettered for their age, and the last reason."""

    uid: str
    room_id: str
    count: int
    last_reason: str | None


@dataclass(frozen=True)
class DeadPick:
    """Which dead letters to queue again: these ids, or all of an integration or room."""

    ids: tuple[int, ...] = ()
    uid: str | None = None
    room_id: str | None = None


class Batch(Protocol):
    """The reads and writes of one ingest or flush, inside one atomic batch."""

    def first_seen(self, project: str, fingerprint: str, now: float) -> bool:
        """Record a fingerprint; True when it was not seen before."""
        ...

    def window(self, key: str) -> Window: ...

    def save_window(self, update: WindowUpdate) -> None: ...

    def drop_window(self, key: str) -> None: ...

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]: ...


class Store(Protocol):
    def batch(self) -> AbstractContextManager[Batch]:
        """All of the batch's writes, or none of them (see the module docstring)."""
        ...

    def due_windows(self, now: float) -> list[StoredWindow]: ...

    def recover(self) -> int:
        """At start-up, items in flight at the last stop are pending again."""
        ...

    def settle_and_claim(
        self, done: Settle | None, limit: int, lease: float, skip: Collection[str] = ()
    ) -> list[Item]:
        """Record how the last item ended and claim up to ``limit`` room heads,
        passing over the integrations in ``skip``."""
        ...

    def settle(self, done: Settle) -> None: ...

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        """When a room head outside ``skip`` may next be claimed, for an idle worker's
        sleep: a pending head when it is due, one in flight when its lease runs out."""
        ...

    def cancel_integration(self, uid: str, reason: str) -> int: ...

    def undelivered_uids(self) -> set[str]: ...

    def expire(self, max_age: float) -> list[Expired]: ...

    def dead_letters(self) -> dict[tuple[str, str], int]: ...

    def retry_dead(self, pick: DeadPick) -> list[Item]: ...

    def prune_finished(self, older_than: float) -> int: ...

    def depth(self) -> dict[str, int]: ...

    def get(self, item_id: int) -> Item | None: ...

    def items(
        self, state: ItemState | None = None, uid: str | None = None, limit: int = -1
    ) -> list[Item]: ...

    def close(self) -> None: ...
