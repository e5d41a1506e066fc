"""The storage interface of the event flow, and the records it keeps.

Ingest, housekeeping and delivery speak only to a :class:`Store`. The SQLite
outbox (``syncd.store.sqlite``) serves one daemon; the PostgreSQL one
(``syncd.store.postgresql``) a database that several daemons on several hosts
share. Both keep these promises, the second across daemons as the first across
one daemon's threads:

- **Atomic batches.** Everything done inside one :meth:`Store.batch` is
  committed together or not at all, and batches are serialisable: an event's
  "is this fingerprint new?" and its throttle window are read and written
  without another batch interleaving, whichever daemon runs it. An event whose
  batch committed is never lost; one whose batch failed left no trace.
- **Leased claims.** :meth:`Store.settle_and_claim` hands out each room's
  *head* (its oldest undelivered item) only, never two items of one room at
  once, so a room is delivered in order. Rooms take turns: a room's next
  item is due from the settle of the one before (:meth:`Settle.next_turn`),
  so due heads are handed out in the order their rooms became ready, and a
  room with a backlog does not go ahead of the rooms that waited meanwhile.
  Finding the due heads costs the same however many items wait behind them.
  A claimed item is leased; when the lease runs out without a settle (a
  crashed worker or host) it is claimable again: delivery is at least once.
  A shared store leases a claim to its daemon and fences settles: a settle
  counts only while the claim it ends is still the item's latest, so a
  daemon that stalled past its lease cannot undo the work of the daemon that
  claimed the item since.
- **Settles that respect cancellation.** Settling an item that was cancelled
  while in flight does not revive it; only "delivered" is still recorded.
- **Durability.** A returned call has reached stable storage as the
  implementation's durability setting promises.
- **Out of reach, said.** A store whose server is gone (a shared one: a
  killed connection, a restart, a failover) says why in
  :meth:`Store.write_problem` and fails every call at once with
  :class:`StoreUnavailable`, without waiting, until :meth:`Store.probe`
  reaches the server again; the daemon is then not ready, ingest answers
  503, and workers keep the settle they could not record and retry it. A
  settle recorded late still counts if no one claimed the item since (the
  fence); one that did costs a second send, at most one per lease in flight.
- **Counts kept, not counted.** :meth:`Store.depth` and :meth:`Store.dead_letters`
  cost the same with ten items waiting or a million: they read counts kept as
  items change (in the same atomic writes), never a scan of the items.
- **Chores once.** :meth:`Store.due_windows`, :meth:`Store.expire`,
  :meth:`Store.forget_old`, :meth:`Store.prune_finished` and
  :meth:`Store.cut_waits` do their work on one daemon at a time and answer
  "nothing" on the others, so each digest is flushed and each expiry logged
  once; when that daemon goes, another takes over.
- **Time the daemon ran.** ``--max-age`` and the fingerprints' retention count
  the time the store was open (a monotonic clock, summed across restarts; with
  several daemons, the time at least one had it open), so a step of the wall
  clock neither ages nor rejuvenates anything; and
  :meth:`Store.cut_waits` cuts a wait that a step back made longer than it was
  set for (see its docstring).

Only the event and what the rules decided are stored; the message is rendered
and the token looked up at send time, so pending items go out with the
integration's current settings and a rotated token.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# How long a claim holds by default (``syncd run --lease``): past it, another
# worker or daemon may take the item. Long enough for the slowest send allowed
# by default, short enough that a dead daemon's rooms go on within minutes.
DEFAULT_LEASE = 120.0

ItemState = Literal["pending", "inflight", "delivered", "dead", "cancelled"]


class StoreError(Exception):
    """A store could not do what was asked. Callers catch this, never an
    implementation's own exceptions, so a second implementation changes no caller."""


class StoreUnavailable(StoreError):
    """Try again later: the store is busy, full or out of reach, and nothing of the
    failed call was kept. Ingest answers 503; delivery and upkeep pause and retry."""


class StoreFull(StoreUnavailable):
    """The store's disk is full (or the file may grow no more): nothing new can be
    written until space is freed, though changes that need no new space may pass."""


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
    # The integration's frequency: an idle window older than this is no longer
    # needed (the next event would find it over), so the store may forget it.
    length: float | None = None


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
    # A delivered item whose answer said the room (or its token) takes nothing
    # more before this time: the room's next item waits until then in the queue
    # itself, so that whichever daemon claims it next waits too.
    room_rest_until: float | None = None

    def next_turn(self, now: float) -> float | None:
        """When the room's next item takes its turn, settled at ``now`` (None: this
        item stays the room's head). An item that ended hands the room on from now
        at the soonest, never from when the next one was queued: with fewer sends
        than rooms, a room with a deep backlog would otherwise be claimed ahead of
        every room that waited meanwhile (a minute's window reopening for a
        thousand rooms) until it ran dry, and the rooms behind it last."""
        if self.state == "pending":
            return self.room_rest_until
        return now if self.room_rest_until is None else max(self.room_rest_until, now)


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


class Reads(Protocol):
    """What routing reads from the store: whether a fingerprint is known, and a window."""

    def known(self, project: str, fingerprint: str) -> bool:
        """True when the fingerprint was seen before (and not forgotten since)."""
        ...

    def window(self, key: str) -> Window: ...


class Batch(Reads, Protocol):
    """The reads and writes of one ingest or flush, inside one atomic batch."""

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        """Record a fingerprint as seen now (first seen, or seen again)."""
        ...

    def save_window(self, update: WindowUpdate) -> None: ...

    def drop_window(self, key: str) -> None: ...

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]: ...

    @property
    def new_heads(self) -> int:
        """Rooms this batch's items gave a head (they had nothing undelivered): the
        items claimable at once, what a worker is woken for. An item behind a
        room's head is claimed by whoever settles the one before it."""
        ...


class Store(Protocol):
    def batch(self) -> AbstractContextManager[Batch]:
        """All of the batch's writes, or none of them (see the module docstring)."""
        ...

    def view(self) -> AbstractContextManager[Reads]:
        """Reads outside any write: ingest decides a request's routing on these,
        then checks them again inside its batch (see ``events.ingest``)."""
        ...

    def due_windows(self, now: float) -> list[StoredWindow]: ...

    def recover(self) -> int:
        """At start-up, items in flight that no one holds any more are pending again:
        for a store of one daemon, all that was in flight at its last stop; for a
        shared one, those whose lease ran out (a live daemon's leases are its own)."""
        ...

    def settle_and_claim(
        self, done: Settle | None, limit: int, lease: float, skip: Collection[str] = ()
    ) -> list[Item]:
        """Record how the last item ended and claim up to ``limit`` room heads,
        passing over the integrations in ``skip``."""
        ...

    def settle_and_claim_all(
        self, calls: Sequence[tuple[Settle | None, int]], lease: float, skip: Collection[str] = ()
    ) -> list[list[Item] | StoreError]:
        """Each ``(done, limit)`` as :meth:`settle_and_claim` would serve it, in as few
        transactions as the store can: many workers' calls handed in together.

        Each call gets its claimed items, or the error that kept it from being
        recorded. A lot is recorded whole or not at all: a claim recorded for a
        call whose worker is handed an error would leave its room waiting out
        the lease with no one sending."""
        ...

    def settle(self, done: Settle) -> None: ...

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        """When a room head outside ``skip`` may next be claimed, for an idle worker's
        sleep: a pending head when it is due, one in flight when its lease runs out."""
        ...

    def cancel_integration(self, uid: str, reason: str) -> int: ...

    def revive(self, uid: str, reason: str, since: float) -> int:
        """Items of ``uid`` cancelled with ``reason`` at ``since`` or later are
        pending again, in their rooms' order; returns how many."""
        ...

    def cut_waits(self) -> int:
        """A wait that began in the future began before the wall clock stepped back:
        it is cut to the length it was set for, counted from now (retry times,
        leases, throttle windows). Returns how many were cut."""
        ...

    def forget_old(self, max_age: float) -> int:
        """Forget fingerprints not seen for ``max_age`` seconds of the daemon's running
        time, and idle throttle windows that are over; returns how many rows went."""
        ...

    def probe(self) -> str | None:
        """Whether something new can be written: None, or why not (disk full...)."""
        ...

    def undelivered_uids(self) -> set[str]: ...

    def expire(self, max_age: float) -> list[Expired]:
        """Dead-letter what waited longer than ``max_age`` seconds of running time."""
        ...

    def dead_letters(self) -> dict[tuple[str, str], int]: ...

    def retry_dead(self, pick: DeadPick) -> list[Item]: ...

    def prune_finished(self, older_than: float) -> int: ...

    def depth(self) -> dict[str, int]:
        """Undelivered items per integration, from kept counts."""
        ...

    def write_problem(self) -> str | None:
        """Why the last write failed for want of space, until a write or a probe that
        needed new space succeeds; None when writes work."""
        ...

    def get(self, item_id: int) -> Item | None: ...

    def items(
        self, state: ItemState | None = None, uid: str | None = None, limit: int = -1
    ) -> list[Item]: ...

    def close(self) -> None: ...
