"""The PostgreSQL implementation of the event flow's store (see ``syncd.store.contract``),
which several daemons, on one host or many, share as one queue.

Each promise of the contract has to hold across daemons here, not only across
one daemon's threads:

- **Claims.** A room's head is claimed from the ``heads`` table (one row per
  room, indexed by due time) with ``FOR UPDATE SKIP LOCKED``: two daemons
  claiming at once take different rooms, and neither waits on the other. The
  claim leases the item to this store's ``owner`` and bumps its ``lease``
  generation.
- **Fenced settles.** A settle changes the item only while it is still in
  flight under this owner and the generation this store's claim got. A daemon
  that stalled past its lease, and whose item another daemon claimed since,
  settles nothing: the later claim does.
- **One call a notification.** A worker's settle and its next claim are one
  statement, a function in the database (``pgschema``'s migration 3): one
  round trip, where sending the same statements from here cost most of the
  daemon's CPU per notification; and the calls many workers hand in together
  (a lot) are one transaction, one commit for all of them.
- **Recovery by lease expiry.** ``recover`` at start makes pending only what no
  one holds any more (leases run out); a daemon starting next to live ones
  takes nothing from them. ``close`` gives this daemon's own leases back, so a
  stop hands its rooms on at once rather than after the lease.
- **Order.** Ids come from a sequence, which is not in commit order; so a batch
  takes a lock per room it queues for (advisory, in one sorted order) before
  it draws ids, and a room's items are numbered in the order their batches
  committed. A batch also locks the heads it extends, so a settle cannot drop
  a room's head while items for it are being committed.
- **Decided once.** A batch's reads of a fingerprint ("is it new?") and of a
  throttle window take a transaction-level advisory lock on that key first, so
  two batches on two daemons touching one key run one after the other, and the
  second reads what the first wrote. Only batches sharing a key wait; the
  rest run in parallel. (SERIALIZABLE would abort the second instead, and a
  batch cannot be run again from inside the store: its body is the caller's.)
- **Chores once.** Expiry, window flushes, forgetting, pruning and cutting
  waits each run under a session-level advisory lock, taken with a try on a
  connection of its own and kept: one daemon does each chore, the others skip
  it, and when that daemon dies its connection closes and another daemon's
  next try takes the lock. The chore's work runs on that same connection, so
  it is never done by a daemon that lost its lock.
- **Time the daemon ran.** The running clock is shared: each daemon adds its
  monotonic time to the largest value any daemon saved, and saves it back at
  every probe (once a housekeeping tick).
- **A server out of reach.** A failure that means the connection is gone
  (a terminated backend, a restart, a refused connection, a pool that found
  none) marks the store lost: every call fails at once until a probe gets
  through, after checking the pool's idle connections (a terminated backend
  leaves each broken, and each would fail one call). So the daemon turns
  not ready and answers 503 within one call, and comes back within a
  housekeeping tick of the server, without a restart.
- **Members.** Each daemon keeps a row (``members``): its id (the owner of
  its leases), host, release, the revision it applied and the integrations
  in it, and a heartbeat on the server's clock, written at every probe. A
  member is live while its heartbeat is under ``MEMBER_TTL`` old. What
  other live members know is what a rollout needs: a daemon leaves their
  integrations' items to them rather than cancel what it does not know.

No psycopg exception leaves this module: failures are :class:`StoreUnavailable`
(the server is out of reach, restarting, or a lock waited too long),
:class:`StoreFull` (the server's disk), or :class:`StoreUnusable` (the
database is not a syncd store this release can use, or the role may not use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from syncd.store import pgschema
from syncd.store.contract import (
    DeadPick,
    Expired,
    Item,
    ItemState,
    NewItem,
    Settle,
    StoredWindow,
    StoreError,
    StoreFull,
    StoreUnavailable,
    StoreUnusable,
    Window,
    WindowUpdate,
)
from syncd.store.sqlite import SEEN_RESOLUTION
from syncd.store.tables import LEGACY_WINDOW_LIFE

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")

# Connections each daemon's pool keeps at most; one more holds the chores' locks.
POOL_SIZE = 8
# How long a call waits for a pooled connection, and a statement for a lock.
POOL_WAIT = 30.0
LOCK_WAIT = "30s"
# A session that sits inside a transaction this long (a stalled daemon holding
# locks) is ended by the server, and its locks with it.
IDLE_IN_TRANSACTION = "60s"
CONNECT_TIMEOUT = "10"
# While the server is out of reach, how long a probe waits for a pooled connection.
PROBE_WAIT = 2.0
# After a failure that showed the server out of reach, calls fail at once for
# this long (ingest answers 503 at once, workers pause instead of queueing on
# the pool); then one may try again, with the short wait.
LOST_HOLD = 1.0
# A member is live while its last heartbeat (one a housekeeping tick) is this
# recent; the rows of members silent this long are deleted.
MEMBER_TTL = 30.0
MEMBER_FORGET = 24 * 3600.0
_SERVER_NOW = "extract(epoch FROM clock_timestamp())"
_LIVE_MEMBERS = (
    "SELECT id, host, version, revision, uids, started_at, "
    f"{_SERVER_NOW} - heartbeat FROM members WHERE heartbeat > {_SERVER_NOW} - %s "
    "ORDER BY started_at, id"
)
HELD_MAX = 100_000

_COLUMNS = (
    "o.id, o.uid, o.room_id, e.body, o.count, o.mention, o.created_at, o.next_attempt_at, "
    "o.attempts, o.state, o.lease_until, o.reason, o.finished_at, o.since"
)
_ITEMS = "outbox o JOIN events e ON e.event_id = o.event_id"

# A worker's call (``pgschema``'s migration 3): the settle of its last item, if
# any, and the claim of up to ``wanted`` due room heads, in one statement.
_SETTLE_AND_CLAIM = (
    "SELECT * FROM syncd_settle_and_claim(%(settled)s::bigint, %(generation)s::bigint, "
    "%(outcome)s::text, %(why)s::text, %(retry_at)s::float8, %(unattempted)s::int, "
    "%(rest_until)s::float8, %(claimer)s::text, %(clock)s::float8, %(until)s::float8, "
    "%(skipped)s::text[], %(wanted)s::int)"
)

# A room's head is its oldest undelivered item; due at its next attempt, or when
# its lease runs out while in flight. The rooms named are brought up to date:
# a head set, moved, or deleted when the room has nothing left.
_REFRESH = """
WITH rooms AS (
    ROOMS
), next AS (
    SELECT r.uid, r.room_id, n.id, n.due, n.waited_at FROM rooms r
    LEFT JOIN LATERAL (
        SELECT id, waited_at,
            CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) ELSE next_attempt_at END AS due
        FROM outbox o
        WHERE o.uid = r.uid AND o.room_id = r.room_id AND o.state IN ('pending', 'inflight')
        ORDER BY o.id LIMIT 1
    ) n ON true
), gone AS (
    DELETE FROM heads h USING next
    WHERE h.uid = next.uid AND h.room_id = next.room_id AND next.id IS NULL
)
INSERT INTO heads (uid, room_id, item_id, due, set_at)
SELECT uid, room_id, id, due, waited_at FROM next WHERE id IS NOT NULL ORDER BY uid, room_id
ON CONFLICT (uid, room_id) DO UPDATE
SET item_id = excluded.item_id, due = excluded.due, set_at = excluded.set_at
"""

_REFRESH_HEADS = _REFRESH.replace(
    "ROOMS",
    "SELECT DISTINCT uid, room_id FROM unnest(%(uids)s::text[], %(rooms)s::text[]) "
    "AS r(uid, room_id)",
)

# What the heads table must say, from a full scan of the items (for checks).
HEADS_SCAN = """
SELECT DISTINCT ON (uid, room_id) uid, room_id, id,
    CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) ELSE next_attempt_at END, waited_at
FROM outbox WHERE state IN ('pending', 'inflight') ORDER BY uid, room_id, id
"""
TALLIES_SCAN = """
SELECT uid, room_id, syncd_kind(state) AS kind, count(*) FROM outbox
WHERE syncd_kind(state) IS NOT NULL GROUP BY uid, room_id, kind
"""

# The chores, each with its advisory lock.
_CHORES = {"expire": 1, "forget": 2, "prune": 3, "windows": 4, "waits": 5}


def stored_room(room_id: str) -> str:
    """A room id as stored: ``text`` holds no NUL, so NUL and the escape itself are
    escaped (a room id is whatever the config's YAML said)."""
    if "\0" not in room_id and "\\" not in room_id:
        return room_id
    return room_id.replace("\\", "\\\\").replace("\0", "\\0")


def _room_back(stored: str) -> str:
    if "\\" not in stored:
        return stored
    out, chars = [], iter(stored)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            out.append("\0" if escaped == "0" else escaped)
        else:
            out.append(char)
    return "".join(out)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _prose(text: str | None) -> str | None:
    """A reason as stored: prose, so a NUL or a lone surrogate becomes a stand-in."""
    if text is None:
        return None
    return text.replace("\0", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _mentions_text(mentions: Sequence[str]) -> str | None:
    return json.dumps(list(mentions)) if mentions else None


def _mentions(text: str | None) -> tuple[str, ...]:
    return tuple(str(m) for m in json.loads(text)) if text else ()


def _window(row: Sequence[Any]) -> Window:
    last_sent, pending, since, mention = row
    return Window(last_sent, pending, since, _mentions(mention) if pending else ())


def _item(row: Sequence[Any]) -> Item:
    values = list(row)
    values[2] = _room_back(values[2])
    values[3] = json.loads(values[3])
    values[5] = _mentions(values[5])
    return Item(*values)


def _columns(
    items: Sequence[NewItem], rooms: Sequence[tuple[str, str]], events: Mapping[int, int]
) -> tuple[list[Any], ...]:
    """The items' columns, one list each, for ``unnest``: a batch is one insert."""
    return (
        [uid for uid, _ in rooms],
        [room for _, room in rooms],
        [events[id(item.event)] for item in items],
        [item.count for item in items],
        [_mentions_text(item.mentions) for item in items],
        [item.since for item in items],
    )


_NO_SETTLE: Mapping[str, Any] = {
    "settled": None,
    "generation": None,
    "outcome": None,
    "why": None,
    "retry_at": None,
    "unattempted": 0,
    "rest_until": None,
}


def _settled(done: Settle, generation: int, now: float) -> dict[str, Any]:
    """A settle as ``_SETTLE_AND_CLAIM``'s parameters: the claim it ends is this
    store's of that generation, which the fence checks."""
    return {
        "settled": done.item_id,
        "generation": generation,
        "outcome": done.state,
        "why": _prose(done.reason),
        "retry_at": done.retry_at,
        "unattempted": 0 if done.attempted else 1,
        "rest_until": done.next_turn(now),
    }


def _rooms(pairs: Collection[tuple[str, str]]) -> dict[str, list[str]]:
    """Rooms (uid and stored room id) as the parameters of ``_REFRESH_HEADS``."""
    ordered = sorted(set(pairs))
    return {"uids": [u for u, _ in ordered], "rooms": [r for _, r in ordered]}


# The heads of the rooms of the items given (a lot's settles), locked as
# ``_lock_heads`` locks: in one order, before any of their items is written.
_LOCK_SETTLED_HEADS = (
    "SELECT h.item_id FROM heads h JOIN outbox o ON o.uid = h.uid AND o.room_id = h.room_id "
    "WHERE o.id = ANY(%s::bigint[]) ORDER BY h.uid, h.room_id FOR UPDATE OF h"
)


def _lock_heads(conn: Conn, where: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    """Lock the heads of the rooms a write will move, in one order (uid, room), before
    their items: every write takes a room's head before its items, so two writes
    on the same rooms queue instead of deadlocking."""
    return conn.execute(
        f"SELECT h.uid, h.room_id, h.item_id FROM heads h WHERE {where} "
        "ORDER BY h.uid, h.room_id FOR UPDATE OF h",
        params,
    ).fetchall()


# PostgreSQL's error classes (SQLSTATE's first two characters) that mean "try again":
# connection, transaction rollback (serialization, deadlock), invalid transaction
# state (a read-only standby, an idle transaction ended), insufficient resources,
# operator intervention (shutdown, cancel), system errors.
_TRY_AGAIN = frozenset({"08", "25", "40", "53", "57", "58"})
# Of those, the ones that mean the connection is gone: connection exceptions, and
# a server that shut down, crashed, or is not yet taking connections (a
# terminated backend, a restart, a failover).
_CONNECTION_GONE = frozenset({"57P01", "57P02", "57P03"})
_DISK_FULL = "53100"
_LOCK_NOT_AVAILABLE = "55P03"


def store_error(exc: psycopg.Error, secrets: Collection[str] = ()) -> StoreError:
    """A psycopg error as the contract's: try again, full, or unusable as it is.

    A client-side failure (no server, a connection lost) carries no SQLSTATE and
    is one to try again; a server error is judged by its class. Anything else
    (no such table, no privilege, a wrong password, a database that does not
    exist) needs the operator: the store is unusable as it is.
    """
    message = f"PostgreSQL: {str(exc).strip() or type(exc).__name__}"
    for secret in secrets:
        message = message.replace(secret, "***")
    state = exc.sqlstate or ""
    if state == _DISK_FULL:
        return StoreFull(message)
    if state[:2] in _TRY_AGAIN or state == _LOCK_NOT_AVAILABLE:
        return StoreUnavailable(message)
    if not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(message)
    if isinstance(exc, psycopg.DataError):
        return StoreError(message)
    return StoreUnusable(message)


def connection_lost(exc: psycopg.Error) -> bool:
    """Whether the error means the server is out of reach (rather than one
    statement failing): a client-side failure, a connection exception, a
    shutdown, or a wait for a pooled connection that none came for."""
    state = exc.sqlstate or ""
    if state[:2] == "08" or state in _CONNECTION_GONE:
        return True
    return not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


@dataclass(frozen=True)
class _Locks:
    """The advisory lock classes of one schema."""

    room: int
    fingerprint: int
    window: int
    chore: int

    @classmethod
    def of(cls, schema: str) -> _Locks:
        kinds = ("room", "fingerprint", "window", "chore")
        return cls(*(pgschema.lock_class(schema, kind) for kind in kinds))


class PgView:
    """The :class:`syncd.store.contract.Reads` of one read-only transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def known(self, project: str, fingerprint: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM fingerprints WHERE project = %s AND fingerprint = %s",
            (_bytes(project), _bytes(fingerprint)),
        ).fetchone()
        return row is not None

    def window(self, key: str) -> Window:
        row = self._conn.execute(
            "SELECT last_sent, pending, pending_since, mention FROM windows WHERE key = %s",
            (_bytes(key),),
        ).fetchone()
        return _window(row) if row else Window()


class PgBatch(PgView):
    """The :class:`syncd.store.contract.Batch` of one write transaction. Each key read
    or written (a fingerprint, a window) is locked first, until the commit."""

    def __init__(self, conn: Conn, running: float, locks: _Locks) -> None:
        super().__init__(conn)
        self._running = running
        self._locks = locks
        self._held: set[tuple[int, int]] = set()
        self._new_heads = 0

    @property
    def new_heads(self) -> int:
        return self._new_heads

    def _lock(self, kind: int, key: str) -> None:
        """A key's lock, taken once per batch, in a statement of its own: a read in
        the same statement would see the database as it was before the wait. The
        batch runs in a pipeline, so the lock and the read after it still cost one
        round trip, and the writes none until the next read or the commit."""
        lock = (kind, pgschema.lock_id(key))
        if lock not in self._held:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock)
            self._held.add(lock)

    def known(self, project: str, fingerprint: str) -> bool:
        self._lock(self._locks.fingerprint, f"{project}\0{fingerprint}")
        return super().known(project, fingerprint)

    def window(self, key: str) -> Window:
        self._lock(self._locks.window, key)
        return super().window(key)

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        self._lock(self._locks.fingerprint, f"{project}\0{fingerprint}")
        self._conn.execute(
            "INSERT INTO fingerprints AS f (project, fingerprint, first_seen, seen_run) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (project, fingerprint) DO UPDATE "
            "SET seen_run = excluded.seen_run WHERE f.seen_run < excluded.seen_run - %s",
            (_bytes(project), _bytes(fingerprint), now, self._running, SEEN_RESOLUTION),
        )

    def save_window(self, update: WindowUpdate) -> None:
        self._lock(self._locks.window, update.key)
        window = update.window
        length = LEGACY_WINDOW_LIFE if update.length is None else update.length
        expires = None if window.last_sent is None else window.last_sent + length
        self._conn.execute(
            "INSERT INTO windows AS w (key, uid, last_sent, pending, pending_since, due_at, "
            "last_event, mention, length, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET last_sent = excluded.last_sent, "
            "pending = excluded.pending, pending_since = excluded.pending_since, "
            "due_at = excluded.due_at, last_event = coalesce(excluded.last_event, w.last_event), "
            "mention = excluded.mention, length = excluded.length, "
            "expires_at = excluded.expires_at",
            (
                _bytes(update.key),
                update.uid,
                window.last_sent,
                window.pending,
                window.pending_since,
                update.due_at,
                None if update.last_event is None else _json(update.last_event),
                _mentions_text(window.mentions),
                update.length,
                expires,
            ),
        )

    def drop_window(self, key: str) -> None:
        self._lock(self._locks.window, key)
        self._conn.execute("DELETE FROM windows WHERE key = %s", (_bytes(key),))

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        """Items in order: their rooms locked (so ids follow commits per room), each
        distinct event stored once, the items, their rooms' heads and tallies."""
        if not items:
            return []
        rooms = [(item.uid, stored_room(item.room_id)) for item in items]
        bodies = {id(item.event): item.event for item in items}
        event_ids, ids = self._draw(rooms, len(bodies), len(items))
        refs = Counter(id(item.event) for item in items)
        events = {key: event_ids[n] for n, key in enumerate(bodies)}
        with self._conn.pipeline():
            self._conn.execute(
                "INSERT INTO events (event_id, body, refs) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::int[])",
                (event_ids, [_json(b) for b in bodies.values()], [refs[k] for k in bodies]),
            )
            self._conn.execute(
                "INSERT INTO outbox (id, uid, room_id, event_id, count, mention, since, "
                "created_at, next_attempt_at, ran_at, waited_at) "
                "SELECT i, u, r, e, c, m, s, %s, %s, %s, %s FROM unnest(%s::bigint[], "
                "%s::text[], %s::text[], %s::bigint[], %s::int[], %s::text[], %s::float8[]) "
                "AS t(i, u, r, e, c, m, s)",
                (now, now, self._running, now, ids, *_columns(items, rooms, events)),
            )
            heads = self._extend_rooms(rooms, ids, now)
        # Read once the pipeline has synced: a head already there is not counted.
        self._new_heads += max(0, heads.rowcount)
        return ids

    def _draw(
        self, rooms: Sequence[tuple[str, str]], events: int, items: int
    ) -> tuple[list[int], list[int]]:
        """Ids for the events and the items, drawn once the rooms are locked (in one
        order, so batches sharing rooms queue rather than deadlock)."""
        locks = sorted({pgschema.lock_id(f"{uid}\0{room}") for uid, room in rooms})
        with self._conn.pipeline():
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) WITH ORDINALITY "
                "AS t(k, n) ORDER BY n",
                (self._locks.room, locks),
            )
            drawn = self._conn.execute(
                "SELECT array(SELECT nextval('event_ids') FROM generate_series(1, %s)), "
                "array(SELECT nextval('item_ids') FROM generate_series(1, %s))",
                (events, items),
            ).fetchone()
        assert drawn is not None
        return sorted(drawn[0]), sorted(drawn[1])

    def _extend_rooms(
        self, rooms: Sequence[tuple[str, str]], ids: Sequence[int], now: float
    ) -> psycopg.Cursor[TupleRow]:
        """Each room's head (a new room's first item) and its count of open items;
        the heads' insert, whose row count is the new heads."""
        firsts: dict[tuple[str, str], int] = {}
        for room, item_id in zip(rooms, ids, strict=True):
            firsts.setdefault(room, item_id)
        counts = Counter(rooms)
        ordered = sorted(firsts)
        uids, room_ids = [u for u, _ in ordered], [r for _, r in ordered]
        # A head already there is older and stays; it is locked all the same (the
        # update that never happens), so no settle drops it before this commits.
        heads = self._conn.execute(
            "INSERT INTO heads AS h (uid, room_id, item_id, due, set_at) "
            "SELECT u, r, i, %s, %s FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
            "AS t(u, r, i) ORDER BY u, r "
            "ON CONFLICT (uid, room_id) DO UPDATE SET item_id = h.item_id WHERE false",
            (now, now, uids, room_ids, [firsts[room] for room in ordered]),
        )
        self._conn.execute(
            "INSERT INTO tallies AS t (uid, room_id, kind, n) "
            "SELECT u, r, 'open', c FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
            "AS x(u, r, c) ORDER BY u, r "
            "ON CONFLICT (uid, room_id, kind) DO UPDATE SET n = t.n + excluded.n",
            (uids, room_ids, [counts[room] for room in ordered]),
        )
        return heads


class _Chores:
    """Each chore on one daemon at a time: a session-level advisory lock per chore,
    tried (never waited for) on a connection kept for the chores alone, and the
    chore's transaction on that same connection. The lock goes with the
    connection: a daemon that dies or loses the server lets another one take it."""

    def __init__(self, connect: Callable[[], Conn], lock_class: int) -> None:
        self._connect = connect
        self._class = lock_class
        self._conn: Conn | None = None
        self._held: set[int] = set()
        self._mutex = threading.Lock()

    def run(self, chore: str, work: Callable[[Conn], T], skipped: T) -> T:
        with self._mutex:
            try:
                conn = self._conn if self._conn is not None else self._open()
                if not self._take(conn, _CHORES[chore]):
                    return skipped
                with conn.transaction():
                    return work(conn)
            except psycopg.Error:
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._drop()
                raise

    def _open(self) -> Conn:
        self._conn = self._connect()
        return self._conn

    def _take(self, conn: Conn, chore: int) -> bool:
        if chore in self._held:
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._class, chore)).fetchone()
        if row is None or not row[0]:
            return False
        self._held.add(chore)
        return True

    def holds(self) -> set[str]:
        """The chores this daemon holds the lock of."""
        with self._mutex:
            return {name for name, key in _CHORES.items() if key in self._held}

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        with self._mutex:
            self._drop()


@dataclass(frozen=True)
class Member:
    """One daemon of the cluster, as its row says."""

    id: str
    host: str
    version: str
    revision: str
    uids: frozenset[str]
    started_at: float
    heartbeat_age: float  # seconds since its last heartbeat, by the server's clock


@dataclass(frozen=True)
class Cluster:
    """The live members as this daemon last read them, and since when (its wall
    clock) their revisions disagree; None while they agree."""

    me: str
    members: tuple[Member, ...] = ()
    skew_since: float | None = None
    # The integrations another live member's applied set has (read once a claim).
    elsewhere: frozenset[str] = frozenset()

    @property
    def revisions(self) -> dict[str, int]:
        """Each revision applied by a live member, with how many apply it."""
        return dict(Counter(m.revision for m in self.members if m.revision))


@dataclass(frozen=True)
class _Announced:
    """What this daemon says of itself in its row."""

    version: str
    revision: str
    uids: tuple[str, ...]


class PostgresOutbox:
    """The shared outbox. Thread-safe: calls take a connection from a pool.

    ``url`` is a libpq URL or connection string; ``password``, when given, is
    used instead of any in the URL and never shown. Opening migrates the schema
    (under its lock) unless ``migrate`` is False, and refuses a newer one.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        connections: int = POOL_SIZE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        migrate: bool = True,
        owner: str | None = None,
    ) -> None:
        self.clock = clock
        self._monotonic = monotonic
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conninfo, self._secrets = conninfo(url, password, application_name(self.owner))
        self._held: dict[int, int] = {}  # item id -> the lease generation this store's claim got
        # Claim calls under way (a key -> the clock as each began), and since when a
        # lost connection may have left claims no worker knows of.
        self._claiming: dict[int, float] = {}
        self._unknown_since: float | None = None
        self._held_lock = threading.Lock()
        self._clock_lock = threading.Lock()
        self._full: str | None = None
        # Why the server is out of reach, from the failure that showed it; calls
        # fail at once until a probe reaches the server again.
        self._lost: str | None = None
        self._hold_until = 0.0
        self._started = clock()
        self._cluster = Cluster(self.owner)
        self._announced: _Announced | None = None
        self._announce_due = False
        self._member_lock = threading.Lock()
        with self._errors():
            self._locks, self._ran_before = self._prepare(migrate)
        self._opened = monotonic()
        self._chores = _Chores(self._connect, self._locks.chore)
        self._pool = psycopg_pool.ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max(1, connections),
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
            name="syncd",
            timeout=POOL_WAIT,
        )
        try:
            with self._errors():
                self._pool.open(wait=True, timeout=POOL_WAIT)
        except StoreError:
            self._pool.close()  # its threads would go on trying
            raise

    def _connect(self) -> Conn:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        _configure(conn)
        return conn

    def _prepare(self, migrate: bool) -> tuple[_Locks, float]:
        """The schema checked (and brought up to date), its lock classes, and the
        running clock as the cluster last saved it."""
        with self._connect() as conn:
            if migrate:
                pgschema.migrate(conn, by=self.owner)
            else:
                state = pgschema.check(conn)
                if state.newer:
                    raise StoreUnusable(pgschema.newer_message(state))
                if state.behind:
                    raise StoreUnusable(
                        f"the database holds syncd schema version {state.found}, behind the "
                        f"{state.known} this syncd needs: run syncd store migrate"
                    )
            locks = _Locks.of(pgschema.schema_of(conn))
            row = conn.execute("SELECT value FROM meta WHERE key = 'ran'").fetchone()
        return locks, float(row[0]) if row else 0.0

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            error = store_error(exc, self._secrets)
            if isinstance(error, StoreFull):
                self._full = str(error)
            elif connection_lost(exc):
                self._lost = f"the database is out of reach ({error})"
                self._hold_until = time.monotonic() + LOST_HOLD
                with self._held_lock:
                    self._unknown_since = self.clock()
            raise error from None

    def _reachable(self) -> None:
        """Fail at once for ``LOST_HOLD`` after the server was found out of reach:
        ingest answers 503 without waiting on the pool, and workers pause instead of
        queueing on it. Then a call may try again (with the short wait); a probe
        (once a housekeeping tick) is what says the server is back."""
        lost = self._lost
        if lost is not None and time.monotonic() < self._hold_until:
            raise StoreUnavailable(lost)

    @contextmanager
    def _transaction(self, pipeline: bool = False, probing: bool = False) -> Iterator[Conn]:
        """A transaction on a pooled connection; in a pipeline, statements whose
        results are not read go with the next that is (or with the commit)."""
        with (
            self._pooled(probing) as conn,
            conn.pipeline() if pipeline else contextlib.nullcontext(),
            conn.transaction(),
        ):
            yield conn

    @contextmanager
    def _pooled(self, probing: bool = False) -> Iterator[Conn]:
        """A pooled connection, its errors as the store's: none while the server is
        held out of reach (unless ``probing``), and a short wait for one once it
        was lost."""
        if not probing:
            self._reachable()
        wait = PROBE_WAIT if self._lost is not None else POOL_WAIT
        with self._errors(), self._pool.connection(timeout=wait) as conn:
            yield conn

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        self._reachable()
        with self._errors(), self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _statement(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """A write that is one statement, in a transaction of its own (the connection
        commits it as it answers): one round trip, where a transaction block costs
        two more. Waits for a connection as ``_transaction`` does."""
        with self._pooled() as conn:
            return conn.execute(sql, params).fetchall()

    # the running clock

    def running(self) -> float:
        """Seconds the cluster's daemons have had the store open, as this daemon
        last agreed with the others, plus its own time since (see the module
        docstring)."""
        with self._clock_lock:
            return self._ran_before + (self._monotonic() - self._opened)

    def _save_running(self, conn: Conn) -> None:
        with self._clock_lock:
            at = self._monotonic()
            mine = self._ran_before + (at - self._opened)
        row = conn.execute(
            "INSERT INTO meta AS m (key, value) VALUES ('ran', %s) ON CONFLICT (key) "
            "DO UPDATE SET value = greatest(m.value, excluded.value) RETURNING value",
            (mine,),
        ).fetchone()
        assert row is not None
        with self._clock_lock:
            self._ran_before, self._opened = float(row[0]), at

    # membership

    def announce(self, version: str, revision: str, uids: Collection[str]) -> None:
        """Record the set this daemon applied in its row: at once when the server
        answers (a daemon starting beside it reads the rows before it cancels or
        claims anything), else with the next heartbeat."""
        with self._member_lock:
            self._announced = _Announced(version, revision, tuple(sorted(uids)))
            self._announce_due = True
        with contextlib.suppress(StoreError), self._transaction() as conn:
            self._heartbeat(conn)

    def _heartbeat(self, conn: Conn) -> None:
        """This daemon's row: its heartbeat, and what it applied when that changed
        (a set's uids are written once, not once a tick); then the live rows
        read, and those of members long silent deleted."""
        with self._member_lock:
            announced, due = self._announced, self._announce_due
        if announced is not None:
            beaten = self._write_member(conn, announced, whole=due)
            with self._member_lock:
                # A row that was not there (deleted while this daemon was away)
                # is written whole at the next heartbeat.
                if self._announced is announced:
                    self._announce_due = not beaten
        conn.execute(f"DELETE FROM members WHERE heartbeat < {_SERVER_NOW} - %s", (MEMBER_FORGET,))
        self._keep(conn.execute(_LIVE_MEMBERS, (MEMBER_TTL,)).fetchall())

    def _write_member(self, conn: Conn, announced: _Announced, whole: bool) -> bool:
        """The row written whole, or its heartbeat only; False when there was no
        row to beat."""
        if not whole:
            beat = f"UPDATE members SET heartbeat = {_SERVER_NOW} WHERE id = %s"
            return bool(conn.execute(beat, (self.owner,)).rowcount)
        return bool(
            conn.execute(
                "INSERT INTO members AS m (id, host, version, revision, uids, started_at, "
                f"heartbeat) VALUES (%s, %s, %s, %s, %s, %s, {_SERVER_NOW}) "
                "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
                "revision = excluded.revision, uids = excluded.uids, "
                "heartbeat = excluded.heartbeat",
                (
                    self.owner,
                    socket.gethostname(),
                    announced.version,
                    announced.revision,
                    list(announced.uids),
                    self._started,
                ),
            ).rowcount
        )

    def _keep(self, rows: Sequence[Any]) -> Cluster:
        """The live members read, kept for :meth:`cluster`; revisions that disagree
        are dated from the first read that found them so."""
        members = tuple(
            Member(r[0], r[1], r[2], r[3], frozenset(r[4]), float(r[5]), max(0.0, float(r[6])))
            for r in rows
        )
        skewed = len({m.revision for m in members if m.revision}) > 1
        with self._member_lock:
            since = (self._cluster.skew_since or self.clock()) if skewed else None
            elsewhere = frozenset().union(*(m.uids for m in members if m.id != self.owner))
            self._cluster = Cluster(self.owner, members, since, elsewhere)
            return self._cluster

    def members(self) -> Cluster:
        """The live members, read now (and kept for :meth:`cluster`)."""
        return self._keep(self._read(_LIVE_MEMBERS, (MEMBER_TTL,)))

    def cluster(self) -> Cluster:
        """The live members as the last heartbeat (or :meth:`members`) read them."""
        with self._member_lock:
            return self._cluster

    def known_elsewhere(self, fresh: bool = False) -> frozenset[str]:
        """Integrations another live member applies: as last read, or read now (a
        :class:`StoreError` when the server does not answer: what to cancel is
        never decided on an old read)."""
        if fresh:
            return self.members().elsewhere
        return self.cluster().elsewhere

    # ingest

    @contextmanager
    def batch(self) -> Iterator[PgBatch]:
        """One atomic batch; new data is refused while the server's disk is full."""
        if self._full is not None:
            raise StoreFull(self._full)
        with self._transaction(pipeline=True) as conn:
            yield PgBatch(conn, self.running(), self._locks)

    @contextmanager
    def view(self) -> Iterator[PgView]:
        """Reads of one moment (a read-only repeatable-read transaction); no lock taken."""
        with self._transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgView(conn)

    def due_windows(self, now: float) -> list[StoredWindow]:
        """Windows whose time has come, for the daemon that holds the flush chore; none
        for the others, so each digest is flushed by one daemon."""

        def due(conn: Conn) -> list[StoredWindow]:
            rows = conn.execute(
                "SELECT key, uid, last_sent, pending, pending_since, mention, last_event "
                "FROM windows WHERE due_at IS NOT NULL AND due_at <= %s",
                (now,),
            ).fetchall()
            return [
                StoredWindow(
                    bytes(r[0]).decode("utf-8", "surrogatepass"),
                    r[1],
                    _window(r[2:6]),
                    json.loads(r[6]) if r[6] else None,
                )
                for r in rows
            ]

        return self._chore("windows", due, [])

    def _chore(self, chore: str, work: Callable[[Conn], T], skipped: T) -> T:
        self._reachable()
        with self._errors():
            return self._chores.run(chore, work, skipped)

    def chores_held(self) -> set[str]:
        """The chores this daemon runs for the cluster (it holds their locks)."""
        return self._chores.holds()

    # delivery

    def recover(self) -> int:
        """Items whose lease ran out are pending again; items leased by live daemons
        (their leases running) are theirs, whoever started since."""
        now = self.clock()
        with self._transaction() as conn:
            heads = _lock_heads(
                conn,
                "h.item_id IN (SELECT id FROM outbox WHERE state = 'inflight' "
                "AND lease_until <= %s)",
                (now,),
            )
            return self._release(conn, heads, "lease_until <= %s", (now,))

    def _release(
        self, conn: Conn, heads: Sequence[Any], condition: str, params: Sequence[Any]
    ) -> int:
        """Room heads in flight given back: pending, due when they were before the claim."""
        if not heads:
            return 0
        released = conn.execute(
            "UPDATE outbox SET state = 'pending', lease_until = NULL, owner = NULL "
            f"WHERE id = ANY(%s) AND state = 'inflight' AND {condition}",
            ([h[2] for h in heads], *params),
        ).rowcount
        conn.execute(_REFRESH_HEADS, _rooms([(h[0], h[1]) for h in heads]))
        return released

    def _release_unknown(self, conn: Conn) -> int:
        """After the server was out of reach: claims of this daemon that no worker
        holds (the connection went as the claim committed, so the worker never
        got the item) are pending again at once, not after their lease; a room
        must not wait a lease for a claim nobody will send."""
        with self._held_lock:
            since = self._unknown_since
            if since is None or any(began <= since for began in self._claiming.values()):
                return 0  # a claim from before the loss may still be recorded: next probe
            held = list(self._held)
        unknown = "owner = %s AND waited_at <= %s AND NOT (id = ANY(%s::bigint[]))"
        params = (self.owner, since, held)
        heads = _lock_heads(
            conn,
            f"h.item_id IN (SELECT id FROM outbox WHERE state = 'inflight' AND {unknown})",
            params,
        )
        released = self._release(conn, heads, unknown, params)
        with self._held_lock:
            if self._unknown_since == since:
                self._unknown_since = None
        return released

    def settle_and_claim(
        self, done: Settle | None, limit: int, lease: float, skip: Collection[str] = ()
    ) -> list[Item]:
        """Record how the last item ended and claim up to ``limit`` room heads, in one
        statement, so one round trip and one transaction (see the module docstring
        for the fence and the claim)."""
        now = self.clock()
        with self._claiming_from(now):
            generation, params = self._call(done, limit, lease, skip, now)
            if params is None:
                self._reachable()
                return []
            rows = self._statement(_SETTLE_AND_CLAIM, params)
            return self._recorded(done, generation, rows)

    @contextmanager
    def _claiming_from(self, now: float) -> Iterator[None]:
        """Marks a claim under way since ``now``: claims made meanwhile are not given
        back as unknown (see ``_release_unknown``) until it has ended."""
        key = id(threading.current_thread())
        with self._held_lock:
            self._claiming[key] = now
        try:
            yield
        finally:
            with self._held_lock:
                self._claiming.pop(key, None)

    def _call(
        self, done: Settle | None, limit: int, lease: float, skip: Collection[str], now: float
    ) -> tuple[int | None, dict[str, Any] | None]:
        """The generation ``done`` settles and the settle-and-claim statement's
        parameters; none when there is nothing to write. A settle of a claim this
        store does not hold (forgotten, or never its own) records nothing: the
        fence would refuse it anyway."""
        generation = None if done is None else self._generation(done.item_id)
        if (done is None or generation is None) and limit <= 0:
            return generation, None
        params = {
            **(
                _NO_SETTLE
                if done is None or generation is None
                else _settled(done, generation, now)
            ),
            "claimer": self.owner,
            "clock": now,
            "until": now + lease,
            "skipped": sorted(skip),
            "wanted": max(0, limit),
        }
        return generation, params

    def _recorded(self, done: Settle | None, generation: int | None, rows: list[Any]) -> list[Item]:
        """The claimed ``rows`` as items, once held (see ``_record``)."""
        self._record(done, generation, rows)
        return sorted((_item(row[1:]) for row in rows), key=lambda i: (i.next_attempt_at, i.id))

    def _record(self, done: Settle | None, generation: int | None, rows: list[Any]) -> None:
        """The claims this store holds: the settled one gone (if it was this claim's),
        the new ones in. A settle of an item this store no longer knows changes
        nothing here, and never keeps the new claims out."""
        with self._held_lock:
            if (
                done is not None
                and generation is not None
                and (self._held.get(done.item_id) == generation)
            ):
                del self._held[done.item_id]
            for row in rows:
                self._held[row[1]] = row[0]
            # A claim never settled (its worker gone) is forgotten after many more:
            # its late settle is then fenced off, and the item is sent again.
            while len(self._held) > HELD_MAX:
                del self._held[next(iter(self._held))]

    def _generation(self, item_id: int) -> int | None:
        with self._held_lock:
            return self._held.get(item_id)

    def settle_and_claim_all(
        self, calls: Sequence[tuple[Settle | None, int]], lease: float, skip: Collection[str] = ()
    ) -> list[list[Item] | StoreError]:
        """The calls in one transaction: their statements sent together, then one
        Sync, which commits them all (or, after a failure, rolls them all back),
        the fence judging each settle in its own statement. A transaction per
        call cost a commit per notification, the most of the server's CPU per
        notification, where a lot of many calls shares one. After a failure
        every call carries the error and none recorded anything, so trying them
        again is safe, and no claim is left in flight that no worker knows of."""
        now = self.clock()
        with self._claiming_from(now):
            planned = [self._call(done, limit, lease, skip, now) for done, limit in calls]
            if all(params is None for _, params in planned):
                self._reachable()
                return [[] for _ in calls]
            try:
                answers = iter(self._served_lot(calls, planned))
            except StoreError as exc:
                return [exc] * len(calls)
            return [
                self._recorded(done, generation, [] if params is None else next(answers))
                for (done, _), (generation, params) in zip(calls, planned, strict=True)
            ]

    def _served_lot(
        self,
        calls: Sequence[tuple[Settle | None, int]],
        planned: Sequence[tuple[int | None, Mapping[str, Any] | None]],
    ) -> list[list[Any]]:
        """The rows each planned statement gave, in one transaction and one round
        trip: without a BEGIN, the statements before a Sync are one transaction,
        committed by it. The heads of the settled items' rooms are locked first,
        in one statement and in the one order every write takes them: settled
        one by one in the workers' order, a lot holding one room and waiting for
        another deadlocked with a batch doing the opposite."""
        settled = [
            done.item_id
            for (done, _), (generation, params) in zip(calls, planned, strict=True)
            if done is not None and generation is not None and params is not None
        ]
        with self._pooled() as conn, conn.pipeline():
            if settled:
                conn.execute(_LOCK_SETTLED_HEADS, (settled,))
            cursors = [
                conn.execute(_SETTLE_AND_CLAIM, params)
                for _, params in planned
                if params is not None
            ]
            return [cursor.fetchall() for cursor in cursors]

    def settle(self, done: Settle) -> None:
        self.settle_and_claim(done, 0, 0.0)

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        rows = self._read(
            "SELECT due FROM heads WHERE NOT (uid = ANY(%s::text[])) ORDER BY due LIMIT 1",
            (sorted(skip),),
        )
        return float(rows[0][0]) if rows else None

    def cancel_integration(self, uid: str, reason: str) -> int:
        """Undelivered items of a removed integration: cancelled, with the reason kept.
        Items in flight keep their owner and lease, so only their own worker's
        "delivered" is still recorded."""
        with self._transaction() as conn:
            _lock_heads(conn, "h.uid = %s", (uid,))
            conn.execute("DELETE FROM windows WHERE uid = %s", (uid,))
            conn.execute("DELETE FROM heads WHERE uid = %s", (uid,))
            return conn.execute(
                "UPDATE outbox SET state = 'cancelled', reason = %s, finished_at = %s, "
                "lease_until = NULL WHERE uid = %s AND state IN ('pending', 'inflight')",
                (_prose(reason), self.clock(), uid),
            ).rowcount

    def revive(self, uid: str, reason: str, since: float) -> int:
        now = self.clock()
        match = "uid = %s AND state = 'cancelled' AND reason = %s AND finished_at >= %s"
        params = (uid, _prose(reason), since)
        with self._transaction() as conn:
            rooms = conn.execute(f"SELECT DISTINCT uid, room_id FROM outbox WHERE {match}", params)
            found = [(u, r) for u, r in rooms.fetchall()]
            if not found:
                return 0
            _lock_heads(
                conn,
                "(h.uid, h.room_id) IN (SELECT * FROM unnest(%(uids)s::text[], %(rooms)s::text[]))",
                _rooms(found),
            )
            revived = conn.execute(
                "UPDATE outbox SET state = 'pending', reason = NULL, finished_at = NULL, "
                f"next_attempt_at = %s, waited_at = %s WHERE {match}",
                (now, now, *params),
            ).rowcount
            conn.execute(_REFRESH_HEADS, _rooms(found))
            return revived

    def cut_waits(self) -> int:
        """Waits that began in the future, cut to the length they were set for (see
        ``Outbox.cut_waits``); a chore, done by one daemon."""
        now = self.clock()

        def cut(conn: Conn) -> int:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM heads WHERE set_at > %s) "
                "OR EXISTS (SELECT 1 FROM windows WHERE last_sent > %s)",
                (now, now),
            ).fetchone()
            if row is None or not row[0]:
                return 0
            return _cut_heads(conn, now) + _cut_windows(conn, now)

        return self._chore("waits", cut, 0)

    def undelivered_uids(self) -> set[str]:
        return {uid for (uid,) in self._read("SELECT DISTINCT uid FROM heads")}

    def expire(self, max_age: float) -> list[Expired]:
        """Dead-letter what waited longer than ``max_age`` seconds of running time; a
        chore, done by one daemon, which logs it."""
        now = self.clock()

        def expire(conn: Conn) -> list[Expired]:
            return _expire(conn, self.running() - max_age, max_age, now)

        return self._chore("expire", expire, [])

    def forget_old(self, max_age: float) -> int:
        now = self.clock()

        def forget(conn: Conn) -> int:
            oldest = self.running() - max_age
            gone = conn.execute("DELETE FROM fingerprints WHERE seen_run < %s", (oldest,)).rowcount
            return gone + (
                conn.execute(
                    "DELETE FROM windows WHERE due_at IS NULL AND expires_at < %s", (now,)
                ).rowcount
            )

        return self._chore("forget", forget, 0)

    def probe(self) -> str | None:
        """Whether new data can be written: the running clock is saved (every daemon
        does, once a housekeeping tick, in a transaction of its own: a chore that
        holds its rows for long holds no daemon's tick up). A full disk, or a
        server out of reach, is told; other failures raised.

        While the server is out of reach, the pool's connections are checked
        first (a terminated backend leaves them broken, and each would fail one
        call) and the wait for one is short; the write that succeeds is what
        lets every other call through again.
        """
        lost = self._lost
        if lost is not None:
            with contextlib.suppress(psycopg.Error):
                self._pool.check()
        try:
            with self._transaction(probing=True) as conn:
                self._save_running(conn)
                self._heartbeat(conn)
                if self._unknown_since is not None:
                    self._release_unknown(conn)
        except StoreFull as exc:
            self._full = str(exc)
            return self._full
        except StoreUnavailable:
            if self._lost is None:
                raise
            return self._lost
        self._full = self._lost = None
        return None

    def write_problem(self) -> str | None:
        """Why nothing new can be written: a full disk, or a server out of reach."""
        return self._lost or self._full

    def dead_letters(self) -> dict[tuple[str, str], int]:
        rows = self._read("SELECT uid, room_id, n FROM tallies WHERE kind = 'dead' AND n > 0")
        return {(uid, _room_back(room)): int(n) for uid, room, n in rows}

    def retry_dead(self, pick: DeadPick) -> list[Item]:
        """Dead letters queued again, each in its room's order, as if just accepted."""
        where, params = _dead_where(pick)
        now = self.clock()
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT o.room_id, {_COLUMNS} FROM {_ITEMS} WHERE {where} ORDER BY o.id", params
            ).fetchall()
            if not rows:
                return []
            found = [(row[2], row[0]) for row in rows]
            _lock_heads(
                conn,
                "(h.uid, h.room_id) IN (SELECT * FROM unnest(%(uids)s::text[], %(rooms)s::text[]))",
                _rooms(found),
            )
            conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %s, "
                "created_at = %s, finished_at = NULL, lease_until = NULL, ran_at = %s, "
                "waited_at = %s WHERE id = ANY(%s) AND state = 'dead'",
                (now, now, self.running(), now, [row[1] for row in rows]),
            )
            conn.execute(_REFRESH_HEADS, _rooms(found))
        return [_item(row[1:]) for row in rows]

    def prune_finished(self, older_than: float) -> int:
        cutoff = self.clock() - older_than

        def prune(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'cancelled') AND finished_at < %s",
                (cutoff,),
            ).rowcount

        return self._chore("prune", prune, 0)

    # reading

    def get(self, item_id: int) -> Item | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM {_ITEMS} WHERE o.id = %s", (item_id,))
        return _item(rows[0]) if rows else None

    def items(
        self, state: ItemState | None = None, uid: str | None = None, limit: int = -1
    ) -> list[Item]:
        """Items oldest first, of one state or all, one integration or all; ``limit``
        -1 for no limit."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("o.state", state), ("o.uid", uid)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM {_ITEMS} {clause} ORDER BY o.id LIMIT %s",
            [*params, None if limit < 0 else limit],
        )
        return [_item(r) for r in rows]

    def depth(self) -> dict[str, int]:
        """Undelivered items per integration, from the kept tallies."""
        rows = self._read(
            "SELECT uid, sum(n)::bigint FROM tallies WHERE kind = 'open' AND n > 0 GROUP BY uid"
        )
        return {uid: int(n) for uid, n in rows}

    def close(self) -> None:
        """Give this daemon's leases back (its rooms go on at once on another daemon),
        save the running clock, and close every connection; the chores' locks go
        with theirs."""
        with contextlib.suppress(StoreError), self._transaction() as conn:
            heads = _lock_heads(
                conn,
                "h.item_id IN (SELECT id FROM outbox WHERE state = 'inflight' AND owner = %s)",
                (self.owner,),
            )
            self._release(conn, heads, "owner = %s", (self.owner,))
            self._save_running(conn)
            conn.execute("DELETE FROM members WHERE id = %s", (self.owner,))
        with self._held_lock:
            self._held.clear()
        self._chores.close()
        self._pool.close()


def application_name(owner: str) -> str:
    """What ``pg_stat_activity`` shows for a daemon's connections: its owner id, cut
    from the left to PostgreSQL's 63 bytes (the end tells daemons apart)."""
    name = f"syncd {owner}"
    while len(name.encode()) > 63:
        name = "syncd " + name[7:]
    return name


def conninfo(
    url: str, password: str | None, application: str = "syncd"
) -> tuple[str, tuple[str, ...]]:
    """The connection string, with syncd's defaults where the URL names none, and the
    secrets to keep out of every message."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnusable(f"not a PostgreSQL URL or connection string: {exc}") from None
    extra: dict[str, Any] = {}
    if "application_name" not in given:
        extra["application_name"] = application
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if password is not None:
        extra["password"] = password
    secrets = tuple(str(s) for s in (given.get("password"), password) if s)
    return make_conninfo(url, **extra), secrets


def _configure(conn: Conn) -> None:
    """Each connection's limits: a lock waited for too long is an error to retry,
    and a session stuck inside a transaction is ended, its locks with it."""
    conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")


def _dead_where(pick: DeadPick) -> tuple[str, list[Any]]:
    where, params = ["o.state = 'dead'"], list[Any]()
    if pick.ids:
        where.append("o.id = ANY(%s)")
        params.append(list(pick.ids))
    for column, value in (("o.uid", pick.uid), ("o.room_id", pick.room_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(stored_room(value) if column == "o.room_id" else value)
    return " AND ".join(where), params


def _expire(conn: Conn, oldest: float, max_age: float, now: float) -> list[Expired]:
    """Pending items accepted before ``oldest`` (running time) dead, per room, with the
    reason their oldest one last failed for."""
    rooms = conn.execute(
        "SELECT DISTINCT uid, room_id FROM outbox WHERE state = 'pending' AND ran_at < %s",
        (oldest,),
    ).fetchall()
    if not rooms:
        return []
    found = [(u, r) for u, r in rooms]
    _lock_heads(
        conn,
        "(h.uid, h.room_id) IN (SELECT * FROM unnest(%(uids)s::text[], %(rooms)s::text[]))",
        _rooms(found),
    )
    expired = conn.execute(
        "WITH gone AS ("
        "UPDATE outbox o SET state = 'dead', finished_at = %s, "
        "reason = 'expired after ' || %s || ' s: ' || coalesce(o.reason, 'never delivered') "
        "FROM (SELECT id, reason FROM outbox WHERE state = 'pending' AND ran_at < %s) before "
        "WHERE o.id = before.id AND o.state = 'pending' "
        "RETURNING o.uid, o.room_id, o.id, before.reason) "
        "SELECT uid, room_id, count(*), (array_agg(reason ORDER BY id))[1] FROM gone "
        "GROUP BY uid, room_id ORDER BY uid, room_id",
        (now, str(int(max_age)), oldest),
    ).fetchall()
    conn.execute(_REFRESH_HEADS, _rooms(found))
    return [Expired(uid, _room_back(room), int(n), reason) for uid, room, n, reason in expired]


def _cut_heads(conn: Conn, now: float) -> int:
    """Room heads whose wait began after ``now``: due as long after now as it was
    after the wait began, the item's own retry time or lease with it."""
    heads = conn.execute(
        "SELECT uid, room_id, item_id, greatest(0, due - set_at) FROM heads WHERE set_at > %s "
        "ORDER BY uid, room_id FOR UPDATE",
        (now,),
    ).fetchall()
    if not heads:
        return 0
    ids, waits = [h[2] for h in heads], [now + h[3] for h in heads]
    conn.execute(
        "UPDATE outbox o SET waited_at = %s, "
        "next_attempt_at = CASE o.state WHEN 'pending' THEN c.due ELSE o.next_attempt_at END, "
        "lease_until = CASE o.state WHEN 'inflight' THEN c.due ELSE o.lease_until END "
        "FROM unnest(%s::bigint[], %s::float8[]) AS c(id, due) WHERE o.id = c.id",
        (now, ids, waits),
    )
    conn.execute(
        "UPDATE heads h SET due = c.due, set_at = %s "
        "FROM unnest(%s::text[], %s::text[], %s::float8[]) AS c(uid, room_id, due) "
        "WHERE h.uid = c.uid AND h.room_id = c.room_id",
        (now, [h[0] for h in heads], [h[1] for h in heads], waits),
    )
    return len(heads)


def _cut_windows(conn: Conn, now: float) -> int:
    """Windows whose last send is after ``now``: they start again now."""
    return conn.execute(
        "UPDATE windows SET "
        "due_at = CASE WHEN due_at IS NULL THEN NULL "
        "ELSE %s + greatest(0, due_at - last_sent) END, "
        "expires_at = %s + coalesce(length, expires_at - last_sent), "
        "pending_since = least(pending_since, %s), last_sent = %s WHERE last_sent > %s",
        (now, now, now, now, now),
    ).rowcount


@contextmanager
def _schema_connection(url: str, password: str | None) -> Iterator[Conn]:
    info, secrets = conninfo(url, password)
    try:
        with psycopg.connect(info, autocommit=True) as conn:
            yield conn
    except psycopg.Error as exc:
        raise store_error(exc, secrets) from None


def migrate_schema(url: str, password: str | None = None) -> tuple[int, int]:
    """Bring a database's schema up to date ahead of a rollout (what every daemon
    does as it opens the store): the version found and the version left."""
    with _schema_connection(url, password) as conn:
        return pgschema.migrate(conn, by=f"syncd store migrate on {socket.gethostname()}")


def check_schema(url: str, password: str | None = None) -> pgschema.SchemaState:
    """The schema version a database holds, against the one this syncd knows."""
    with _schema_connection(url, password) as conn:
        return pgschema.check(conn)
