"""The SQLite implementation of the event flow's store (see ``syncd.store.contract``).

One file in WAL mode. Every write is ``BEGIN IMMEDIATE`` so writers queue on
the database lock instead of failing half-way. Items are claimed with a
lease: a worker that dies mid-send leaves an item whose lease runs out, and it
is claimed again; so delivery is at least once, never zero. No connection
leaves this module: callers get a :class:`SqliteBatch` inside a transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from syncd.store.space import LOW_SPACE, RESERVE_BYTES, Space
from syncd.store.tables import LEGACY_WINDOW_LIFE, create

_POOL_SIZE = 8
# Each connection's page cache, in KiB (SQLite's default is 2,000). Rooms take
# turns, so a lot's claims and settles touch items all over a deep outbox, not
# those queued last: at 10,000 rooms and 300,000 items the default cache cost
# 8% more CPU per notification, read again from the file. At most 16 MiB a
# connection, filled only as a large outbox is read.
_CACHE_KIB = 16 << 10
# What a probe writes and takes back: about what a batch of events needs.
_PROBE_BYTES = 64 << 10
_COLUMNS = (
    "id, uid, room_id, coalesce(events.body, outbox.event), count, mention, created_at, "
    "next_attempt_at, attempts, state, lease_until, reason, finished_at, since"
)
# Items with their event: kept once per event, however many items it caused.
_ITEMS = "outbox LEFT JOIN events USING (event_id)"


@dataclass
class _Call:
    """One ``settle_and_claim`` waiting for the commit that serves it."""

    done: Settle | None
    limit: int
    lease: float
    skip: frozenset[str]
    finished: bool = False
    items: list[Item] = field(default_factory=list)
    error: Exception | None = None


class SqliteView:
    """The :class:`syncd.store.contract.Reads` of one read transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def known(self, project: str, fingerprint: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM fingerprints WHERE project = ? AND fingerprint = ?",
            (project, fingerprint),
        ).fetchone()
        return row is not None

    def window(self, key: str) -> Window:
        row = self._db.execute(
            "SELECT last_sent, pending, pending_since, mention FROM windows WHERE key = ?", (key,)
        ).fetchone()
        return _window(*row) if row else Window()


# A fingerprint seen again is written back at most this often (seconds of running
# time): its retention need not be exact, and a write per event would not be free.
SEEN_RESOLUTION = 60.0


class SqliteBatch(SqliteView):
    """The :class:`syncd.store.contract.Batch` of one write transaction; ``running``
    is the store's running clock as the batch began."""

    def __init__(self, db: sqlite3.Connection, running: float) -> None:
        super().__init__(db)
        self._running = running
        self._new_heads = 0

    @property
    def new_heads(self) -> int:
        return self._new_heads

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        """Items in order, in one statement. An event is kept once, however many
        items (integrations times rooms) it caused: a request's fan-out costs a
        row of ids per notification, not a copy of the event. Ids follow the
        largest one: the write lock is held, and SQLite gives a row one more than
        the largest id when none is named. The rooms' tallies are counted here,
        once per room (see ``tables``)."""
        if not items:
            return []
        events = self._events(items)
        (last,) = self._db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        self._db.executemany(
            "INSERT INTO outbox (id, uid, room_id, event, event_id, count, mention, created_at, "
            "next_attempt_at, since, ran_at, waited_at) "
            "VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    last + n,
                    item.uid,
                    item.room_id,
                    events[id(item.event)],
                    item.count,
                    _mentions_text(item.mentions),
                    now,
                    now,
                    item.since,
                    self._running,
                    now,
                )
                for n, item in enumerate(items, 1)
            ],
        )
        ids = list(range(last + 1, last + 1 + len(items)))
        self._heads_and_tallies(items, ids, now)
        return ids

    def _events(self, items: Sequence[NewItem]) -> dict[int, int]:
        """Each distinct event of ``items`` stored once, with how many items refer to
        it; by the event object's identity, to its row."""
        refs = Counter(id(item.event) for item in items)
        rows: dict[int, int] = {}
        for item in items:
            key = id(item.event)
            if key not in rows:
                cursor = self._db.execute(
                    "INSERT INTO events (body, refs) VALUES (?, ?)", (_json(item.event), refs[key])
                )
                assert cursor.lastrowid is not None
                rows[key] = cursor.lastrowid
        return rows

    def _heads_and_tallies(self, items: Sequence[NewItem], ids: Sequence[int], now: float) -> None:
        firsts = {
            (item.uid, item.room_id): item_id
            for item, item_id in zip(reversed(items), reversed(ids), strict=True)
        }
        heads = self._db.executemany(
            "INSERT INTO heads (uid, room_id, item_id, due, set_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(uid, room_id, item_id, now, now) for (uid, room_id), item_id in firsts.items()],
        )
        self._new_heads += heads.rowcount
        counts = Counter((item.uid, item.room_id) for item in items)
        self._db.executemany(
            "INSERT INTO tallies (uid, room_id, kind, n) VALUES (?, ?, 'open', ?) "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n",
            [(uid, room_id, n) for (uid, room_id), n in counts.items()],
        )

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO fingerprints (project, fingerprint, first_seen, seen_run) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET seen_run = excluded.seen_run "
            "WHERE seen_run IS NULL OR seen_run < excluded.seen_run - ?",
            (project, fingerprint, now, self._running, SEEN_RESOLUTION),
        )

    def save_window(self, update: WindowUpdate) -> None:
        window = update.window
        length = LEGACY_WINDOW_LIFE if update.length is None else update.length
        expires = None if window.last_sent is None else window.last_sent + length
        self._db.execute(
            "INSERT INTO windows (key, uid, last_sent, pending, pending_since, due_at, "
            "last_event, mention, length, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_sent = excluded.last_sent, "
            "pending = excluded.pending, pending_since = excluded.pending_since, "
            "due_at = excluded.due_at, "
            "last_event = coalesce(excluded.last_event, windows.last_event), "
            "mention = excluded.mention, length = excluded.length, "
            "expires_at = excluded.expires_at",
            (
                update.key,
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
        self._db.execute("DELETE FROM windows WHERE key = ?", (key,))


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _mentions_text(mentions: Sequence[str]) -> str | None:
    """Mentions as the ``mention`` column keeps them: a JSON list, NULL for none."""
    return json.dumps(list(mentions)) if mentions else None


def _mentions(text: str | None) -> tuple[str, ...]:
    """The ``mention`` column read back. Before it held a JSON list it held one text,
    the targets separated by spaces; files written then still read: a target is
    ``@`` and no space, so a list is the only value that starts with ``[``."""
    if not text:
        return ()
    if text.startswith("["):
        return tuple(str(m) for m in json.loads(text))
    return tuple(text.split())


def _window(
    last_sent: float | None, pending: int, since: float | None, mention: str | None
) -> Window:
    """A stored window. With nothing waiting it has earned no mention: files of the
    one-text form kept the last mention after the window sent, and it was delivered."""
    return Window(last_sent, pending, since, _mentions(mention) if pending else ())


def _item(row: Sequence[Any]) -> Item:
    values = list(row)
    values[3] = json.loads(values[3])
    values[5] = _mentions(values[5])
    return Item(*values)


# SQLite's words for a write that found no room: ENOSPC is "database or disk is
# full"; a file that may grow no more (EFBIG, a quota) shows as an I/O error.
_NO_ROOM = ("database or disk is full", "disk i/o error")


def _store_error(exc: sqlite3.Error) -> StoreError:
    """SQLite's own exceptions never leave this module. An operational error (locked,
    disk full, I/O) may pass; any other database error means the file is not an
    outbox that can be trusted."""
    if isinstance(exc, sqlite3.OperationalError):
        if any(words in str(exc).lower() for words in _NO_ROOM):
            return StoreFull(str(exc))
        return StoreUnavailable(str(exc))
    if isinstance(exc, sqlite3.DatabaseError):
        return StoreUnusable(str(exc))
    return StoreError(str(exc))


class Outbox:
    """Thread-safe: each thread gets its own connection to the same file."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        low_space: int = LOW_SPACE,
        reserve: int = RESERVE_BYTES,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.clock = clock
        self._monotonic = monotonic
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._calls: list[_Call] = []
        self._calls_lock = threading.Lock()
        self._ran_before = 0.0
        self._opened = monotonic()
        self.space = Space(path, low_space=low_space, reserve=reserve)
        with self._connection() as conn:
            self._check(conn)
        with self._transaction() as db:
            self._ran_before = _ran(db)
            create(db, now=self.clock(), running=self._ran_before)
            _rebuild_heads(db)

    def running(self) -> float:
        """Seconds the store has been open, over all its runs: the clock ``--max-age``
        and the fingerprints' retention count on, which a step of the wall clock
        does not move. Saved now and then, so a crash loses a minute at most."""
        return self._ran_before + (self._monotonic() - self._opened)

    def _save_running(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('ran', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (self.running(),),
        )

    def _check(self, conn: sqlite3.Connection) -> None:
        """SQLite's quick_check before anything is written: a damaged file is reported, not used."""
        (verdict,) = conn.execute("PRAGMA quick_check(1)").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {verdict}")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection from a small pool, used by one thread at a time.

        Request threads come and go; a connection per thread would leak one
        file descriptor per request served.
        """
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._open()
            yield conn
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc
        except UnicodeDecodeError as exc:
            # SQLite's own message about a damaged schema can hold the damage itself.
            raise StoreUnusable(f"text in the file is not readable ({exc.reason})") from exc
        finally:
            if conn is not None:
                self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        """Back to the pool, never inside a transaction: a failed COMMIT or ROLLBACK
        must not carry one into the next caller's BEGIN."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._lock:
            keep = len(self._idle) < _POOL_SIZE
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    @contextmanager
    def batch(self) -> Iterator[SqliteBatch]:
        """One atomic batch of ingest or flush reads and writes: new data, refused
        while the disk is full (see ``space``) so that what space is left serves
        the settles of what is already queued."""
        problem = self.space.problem
        if problem is not None:
            raise StoreFull(problem)
        with self._transaction() as db:
            yield SqliteBatch(db, self.running())

    @contextmanager
    def view(self) -> Iterator[SqliteView]:
        """Reads in one read transaction, so they see one moment; no lock taken."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield SqliteView(conn)
            finally:
                conn.execute("ROLLBACK")

    def write_problem(self) -> str | None:
        return self.space.problem

    def probe(self) -> str | None:
        """Whether new data fits: free space on the file system first; after a
        failure, room for the reserve and more, then a write of about a batch's
        size, committed and taken back."""
        short = self.space.short()
        if short is not None:
            self._full(short)
            return short
        problem = self.space.problem
        if problem is None:
            return None
        if not self.space.room_again():
            return problem
        try:
            with self._transaction() as db:
                db.execute("INSERT INTO probe (filler) VALUES (zeroblob(?))", (_PROBE_BYTES,))
            with self._transaction() as db:
                db.execute("DELETE FROM probe")
        except StoreError:
            return self.space.problem
        self.space.problem = None
        return None

    def _full(self, reason: str) -> None:
        """No room: new data is refused and the reserve given back; SQLite copies its
        log into the database now, so the log starts over rather than grow."""
        fresh = self.space.problem is None
        self.space.full(reason)
        if fresh:
            with contextlib.suppress(StoreError), self._connection() as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; this process's writers take turns on a lock first.

        SQLite's busy handler sleeps and polls while another connection writes;
        queueing on a lock wakes the next writer as soon as the last commits, which
        doubles the writes per second when the delivery workers and ingest compete.
        Other processes still meet the busy timeout.
        """
        with self._write_lock, self._locked_transaction() as conn:
            yield conn

    @contextmanager
    def _locked_transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                _commit(conn)
        except StoreFull as exc:
            self._full(str(exc))
            raise

    def close(self) -> None:
        """Save the running clock (if the disk lets it), then close every connection."""
        with contextlib.suppress(StoreError), self._transaction() as db:
            self._save_running(db)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def due_windows(self, now: float) -> list[StoredWindow]:
        rows = self._read(
            "SELECT key, uid, last_sent, pending, pending_since, last_event, mention "
            "FROM windows WHERE due_at IS NOT NULL AND due_at <= ?",
            (now,),
        )
        return [
            StoredWindow(
                key, uid, _window(last_sent, pending, since, m), json.loads(ev) if ev else None
            )
            for key, uid, last_sent, pending, since, ev, m in rows
        ]

    # delivery

    def recover(self) -> int:
        """At start-up, every in-flight item of a previous run is pending again."""
        with self._transaction() as db:
            count = db.execute(
                "UPDATE outbox SET state = 'pending', lease_until = NULL WHERE state = 'inflight'"
            ).rowcount
            _rebuild_heads(db)
            return count

    def settle_and_claim(
        self, done: Settle | None, limit: int, lease: float, skip: Collection[str] = ()
    ) -> list[Item]:
        """Record how the last item ended and claim the next in one transaction.

        Only a room's oldest undelivered item is ever claimable, so each room is
        delivered in order; a room with an item in flight is skipped until it is
        settled or its lease runs out. Integrations in ``skip`` are passed over.
        One commit instead of two per item is what keeps synchronous=FULL fast;
        and the calls that queue up while another writes are served together,
        in one commit (a group commit): their settles first, then their claims,
        each written a statement per kind of change for the whole group.
        """
        (call,) = self._group([_Call(done, limit, lease, frozenset(skip))])
        if call.error is not None:
            raise call.error
        return call.items

    def settle_and_claim_all(
        self, calls: Sequence[tuple[Settle | None, int]], lease: float, skip: Collection[str] = ()
    ) -> list[list[Item] | StoreError]:
        """The calls served in one commit (with any others queued meanwhile): all
        recorded, or none, each failed call given the commit's error."""
        skipped = frozenset(skip)
        served: list[list[Item] | StoreError] = []
        for call in self._group([_Call(done, limit, lease, skipped) for done, limit in calls]):
            if call.error is None:
                served.append(call.items)
            elif isinstance(call.error, StoreError):
                served.append(call.error)
            else:
                raise call.error
        return served

    def _group(self, mine: list[_Call]) -> list[_Call]:
        """Serve ``mine`` and whatever calls queued up meanwhile, in one commit."""
        with self._calls_lock:
            self._calls.extend(mine)
        with self._write_lock:
            if not all(call.finished for call in mine):
                with self._calls_lock:
                    calls, self._calls = self._calls, []
                self._serve(calls)
        return mine

    def _serve(self, calls: list[_Call]) -> None:
        now = self.clock()
        try:
            with self._locked_transaction() as db:
                _settle_all(db, [call.done for call in calls if call.done is not None], now)
                claimed = _claim_all(db, calls, now)
        except BaseException as exc:
            failure = (
                exc if isinstance(exc, Exception) else RuntimeError("outbox write interrupted")
            )
            for call in calls:
                call.error = failure
                call.finished = True
            if failure is not exc:
                raise
            return
        for call, items in zip(calls, claimed, strict=True):
            call.items = items
            call.finished = True

    def settle(self, done: Settle) -> None:
        with self._transaction() as db:
            _settle_all(db, [done], self.clock())

    def cancel_integration(self, uid: str, reason: str) -> int:
        """Undelivered items of a removed integration: cancelled, with the reason kept.

        Items in flight are cancelled too; their worker's settle cannot undo it.
        """
        with self._transaction() as db:
            db.execute("DELETE FROM windows WHERE uid = ?", (uid,))
            db.execute("DELETE FROM heads WHERE uid = ?", (uid,))
            return db.execute(
                "UPDATE outbox SET state = 'cancelled', reason = ?, finished_at = ?, "
                "lease_until = NULL WHERE uid = ? AND state IN ('pending', 'inflight')",
                (reason, self.clock(), uid),
            ).rowcount

    def revive(self, uid: str, reason: str, since: float) -> int:
        """Items cancelled for ``reason`` since ``since`` are pending again, due now and
        as old as they were (``--max-age`` goes on counting from their acceptance)."""
        now = self.clock()
        with self._transaction() as db:
            rooms = db.execute(
                "SELECT DISTINCT room_id FROM outbox "
                "WHERE uid = ? AND state = 'cancelled' AND reason = ? AND finished_at >= ?",
                (uid, reason, since),
            ).fetchall()
            revived = db.execute(
                "UPDATE outbox SET state = 'pending', reason = NULL, finished_at = NULL, "
                "next_attempt_at = ?, waited_at = ? "
                "WHERE uid = ? AND state = 'cancelled' AND reason = ? AND finished_at >= ?",
                (now, now, uid, reason, since),
            ).rowcount
            for (room_id,) in rooms:
                _refresh_head(db, uid, room_id)
            return revived

    def cut_waits(self) -> int:
        """Waits that began in the future, cut to the length they were set for.

        A wait began in the future only if the wall clock stepped back since: a
        retry time or lease (a room head's ``set_at``), or a throttle window
        (its ``last_sent``). Each starts again now with its own length, so a step
        back of a day delays nothing by a day. Costs an index look-up when
        nothing stepped.
        """
        now = self.clock()
        with self._connection() as conn:
            stepped = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM heads WHERE set_at > ?) "
                "OR EXISTS (SELECT 1 FROM windows WHERE last_sent > ?)",
                (now, now),
            ).fetchone()[0]
        if not stepped:
            return 0
        with self._transaction() as db:
            return _cut_heads(db, now) + _cut_windows(db, now)

    def undelivered_uids(self) -> set[str]:
        """Integrations with items still to send: those with a room head."""
        rows = self._read("SELECT DISTINCT uid FROM heads")
        return {uid for (uid,) in rows}

    def expire(self, max_age: float) -> list[Expired]:
        """Dead-letter what has waited longer than ``max_age`` seconds of the store's
        running time (see :meth:`running`), keeping the last reason; returns what
        expired, per room."""
        now = self.clock()
        oldest = self.running() - max_age
        with self._transaction() as db:
            self._save_running(db)
            rooms = db.execute(
                "SELECT uid, room_id, count(*), min(id) FROM outbox WHERE state = 'pending' "
                "AND ran_at < ? GROUP BY uid, room_id",
                (oldest,),
            ).fetchall()
            # The oldest is the room's head: the one tried, with the last error.
            expired = [
                Expired(
                    uid,
                    room_id,
                    count,
                    db.execute("SELECT reason FROM outbox WHERE id = ?", (head,)).fetchone()[0],
                )
                for uid, room_id, count, head in rooms
            ]
            db.execute(
                "UPDATE outbox SET state = 'dead', finished_at = ?, "
                "reason = 'expired after ' || ? || ' s: ' || coalesce(reason, 'never delivered') "
                "WHERE state = 'pending' AND ran_at < ?",
                (now, int(max_age), oldest),
            )
            for uid, room_id, _, _ in rooms:
                _refresh_head(db, uid, room_id)
            return expired

    def forget_old(self, max_age: float) -> int:
        """Fingerprints not seen for ``max_age`` seconds of running time, and idle
        windows whose frequency has passed since their last send (the next event
        would find them over): both only grow otherwise, with every new
        fingerprint and every trace-throttled one."""
        oldest = self.running() - max_age
        with self._transaction() as db:
            self._save_running(db)
            gone = db.execute("DELETE FROM fingerprints WHERE seen_run < ?", (oldest,)).rowcount
            gone += db.execute(
                "DELETE FROM windows WHERE due_at IS NULL AND expires_at < ?", (self.clock(),)
            ).rowcount
            return gone

    def dead_letters(self) -> dict[tuple[str, str], int]:
        """Dead letters per integration and room, from the kept tallies."""
        rows = self._read("SELECT uid, room_id, n FROM tallies WHERE kind = 'dead'")
        return {(uid, room_id): count for uid, room_id, count in rows}

    def retry_dead(self, pick: DeadPick) -> list[Item]:
        """Dead letters queued again, each in its room's order (by id), as if just
        accepted: attempts from zero, and ``--max-age`` counted from now."""
        where, params = _dead_where(pick)
        now = self.clock()
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM {_ITEMS} WHERE {where}", params).fetchall()
            items = [_item(r) for r in rows]
            running = self.running()
            db.executemany(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                "created_at = ?, finished_at = NULL, lease_until = NULL, ran_at = ?, "
                "waited_at = ? WHERE id = ?",
                [(now, now, running, now, item.id) for item in items],
            )
            for uid, room_id in sorted({(item.uid, item.room_id) for item in items}):
                _refresh_head(db, uid, room_id)
        return items

    def prune_finished(self, older_than: float) -> int:
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'cancelled') AND finished_at < ?",
                (self.clock() - older_than,),
            ).rowcount

    # reading

    def get(self, item_id: int) -> Item | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM {_ITEMS} WHERE id = ?", (item_id,))
        return _item(rows[0]) if rows else None

    def items(
        self, state: ItemState | None = None, uid: str | None = None, limit: int = -1
    ) -> list[Item]:
        """Items oldest first, of one state or all, one integration or all; ``limit``
        -1 for no limit."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("uid", uid)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM {_ITEMS} {clause} ORDER BY id LIMIT ?", [*params, limit]
        )
        return [_item(r) for r in rows]

    def depth(self) -> dict[str, int]:
        """Undelivered items per integration, from the kept tallies: one row per room
        is read, however many items wait."""
        rows = self._read("SELECT uid, sum(n) FROM tallies WHERE kind = 'open' GROUP BY uid")
        return dict(rows)

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        """When the next room head may be claimed: a pending head when it is due, one
        in flight when its lease runs out. Other items wait for their head."""
        with self._connection() as conn:
            for uid, due in conn.execute("SELECT uid, due FROM heads ORDER BY due"):
                if uid not in skip:
                    return float(due)
        return None


def _commit(conn: sqlite3.Connection) -> None:
    """COMMIT; one that fails (a full disk) may leave the transaction open, and a
    pooled connection must not carry it into the next caller's BEGIN."""
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _ran(db: sqlite3.Connection) -> float:
    """The running clock as the last run saved it; 0 for a file that never did."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'ran'").fetchone()
    except sqlite3.OperationalError:  # a file from before the running clock
        return 0.0
    return float(row[0]) if row else 0.0


# A room's head is its oldest undelivered item. It is claimable when due: a pending
# head at its next attempt, one in flight when its lease runs out. The heads table
# keeps one row per room, so claiming and sleeping cost the same at any depth.
# ``set_at`` is when the head's due time was set: a due time further from it than
# from now was set before the wall clock stepped back (see ``Outbox.cut_waits``).
HEADS_SCAN = (
    "SELECT uid, room_id, min(id), "
    "CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) ELSE next_attempt_at END, "
    "coalesce(waited_at, created_at) "
    "FROM outbox WHERE state IN ('pending', 'inflight') GROUP BY uid, room_id"
)


def _dead_where(pick: DeadPick) -> tuple[str, list[Any]]:
    where, params = ["state = 'dead'"], list[Any]()
    if pick.ids:
        where.append(f"id IN ({','.join('?' * len(pick.ids))})")
        params.extend(pick.ids)
    for column, value in (("uid", pick.uid), ("room_id", pick.room_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(where), params


def _rebuild_heads(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM heads")
    db.execute(f"INSERT INTO heads (uid, room_id, item_id, due, set_at) {HEADS_SCAN}")


def _refresh_head(db: sqlite3.Connection, uid: str, room_id: str) -> None:
    _refresh_heads(db, [(uid, room_id)])


def _refresh_heads(db: sqlite3.Connection, rooms: Sequence[tuple[str, str]]) -> None:
    """Each room's head as its oldest undelivered item now is, or none when it has
    none: two statements for any number of rooms."""
    db.executemany(
        "INSERT INTO heads (uid, room_id, item_id, due, set_at) "
        "SELECT uid, room_id, id, CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) "
        "ELSE next_attempt_at END, coalesce(waited_at, created_at) FROM outbox "
        "WHERE uid = ? AND room_id = ? AND state IN ('pending', 'inflight') ORDER BY id LIMIT 1 "
        "ON CONFLICT (uid, room_id) DO UPDATE SET item_id = excluded.item_id, "
        "due = excluded.due, set_at = excluded.set_at",
        rooms,
    )
    db.executemany(
        "DELETE FROM heads WHERE uid = ?1 AND room_id = ?2 AND NOT EXISTS (SELECT 1 FROM outbox "
        "WHERE uid = ?1 AND room_id = ?2 AND state IN ('pending', 'inflight'))",
        rooms,
    )


# The room's next pending item not before the given time (never brought forward);
# parameters: until, now, uid, room_id, until. The open states are named so that
# the room's items are found through the index of open items, not by reading
# every pending item of every room (a settle each).
_REST_ROOM = (
    "UPDATE outbox SET next_attempt_at = ?, waited_at = ? WHERE id = ("
    "SELECT min(id) FROM outbox WHERE uid = ? AND room_id = ? "
    "AND state IN ('pending', 'inflight') AND state = 'pending') "
    "AND next_attempt_at < ?"
)


def _settle_all(db: sqlite3.Connection, dones: Sequence[Settle], now: float) -> None:
    """Record sends' ends, each unless its item was cancelled while in flight.

    A cancelled item stays cancelled (a worker's late "retry later" must not
    revive it), except that a send which did go out is recorded as delivered.
    A group commit's settles are written together, a statement per kind of
    change rather than per item: the items are of different rooms (a room has
    one item in flight), so no settle's change reaches another's.
    """
    ids = [done.item_id for done in dones]
    if len(set(ids)) < len(ids):  # the same item twice: each sees the one before
        for done in dones:
            _settle_all(db, [done], now)
        return
    writes = _SettleWrites(now)
    states = _rows_by_id(db, "uid, room_id, state", ids)
    for done in dones:
        writes.add(done, *states.get(done.item_id, (None, None, None)))
    writes.run(db)


@dataclass
class _SettleWrites:
    """A group's settles sorted by the statement each needs."""

    now: float
    pending: list[tuple[Any, ...]] = field(default_factory=list)
    ended: list[tuple[Any, ...]] = field(default_factory=list)
    late: list[tuple[Any, ...]] = field(default_factory=list)
    rests: list[tuple[Any, ...]] = field(default_factory=list)
    rooms: dict[tuple[str, str], None] = field(default_factory=dict)

    def add(self, done: Settle, uid: str | None, room_id: str | None, state: str | None) -> None:
        if state == "cancelled" and done.state == "delivered":
            self.late.append((done.reason, self.now, done.item_id))
        if state != "inflight" or uid is None or room_id is None:
            return
        if done.state == "pending":
            attempted = 0 if done.attempted else 1
            self.pending.append((done.retry_at, done.reason, attempted, self.now, done.item_id))
        else:
            self.ended.append((done.state, done.reason, self.now, done.item_id))
        until = done.next_turn(self.now)
        if until is not None:
            self.rests.append((until, self.now, uid, room_id, until))
        self.rooms[(uid, room_id)] = None

    def run(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, reason = ?, "
            "lease_until = NULL, attempts = attempts - ?, waited_at = ? WHERE id = ?",
            self.pending,
        )
        db.executemany(
            "UPDATE outbox SET state = ?, reason = ?, finished_at = ?, lease_until = NULL "
            "WHERE id = ?",
            self.ended,
        )
        db.executemany(
            "UPDATE outbox SET state = 'delivered', reason = ?, finished_at = ? WHERE id = ?",
            self.late,
        )
        db.executemany(_REST_ROOM, self.rests)
        if self.rooms:
            _refresh_heads(db, list(self.rooms))


def _rows_with_ids(db: sqlite3.Connection, select: str, ids: Sequence[int]) -> Iterator[Any]:
    """The rows ``select ... WHERE id IN ({marks})`` gives for ``ids``, asked in parts
    of at most 500: SQLite takes a bounded number of parameters per statement."""
    for first in range(0, len(ids), 500):
        part = ids[first : first + 500]
        yield from db.execute(select.format(marks=",".join("?" * len(part))), part)


def _rows_by_id(db: sqlite3.Connection, columns: str, ids: Sequence[int]) -> dict[int, Any]:
    select = f"SELECT id, {columns} FROM outbox WHERE id IN ({{marks}})"
    return {row[0]: row[1:] for row in _rows_with_ids(db, select, ids)}


def _claim_all(db: sqlite3.Connection, calls: Sequence[_Call], now: float) -> list[list[Item]]:
    """Lease each call up to its ``limit`` of due heads, passing over the
    integrations it skips."""
    chosen = _choose_heads(db, calls, now)
    leased = [
        (now + call.lease, item_id, uid, room_id)
        for call, heads in zip(calls, chosen, strict=True)
        for item_id, uid, room_id in heads
    ]
    if not leased:
        return [[] for _ in calls]
    db.executemany(
        "UPDATE outbox SET state = 'inflight', lease_until = ?, attempts = attempts + 1, "
        "waited_at = ? WHERE id = ?",
        [(until, now, item_id) for until, item_id, _, _ in leased],
    )
    db.executemany(
        "UPDATE heads SET due = ?, set_at = ? WHERE uid = ? AND room_id = ?",
        [(until, now, uid, room_id) for until, _, uid, room_id in leased],
    )
    items = _items_by_id(db, [item_id for _, item_id, _, _ in leased])
    return [sorted((items[i] for i, _, _ in heads), key=_claim_order) for heads in chosen]


def _claim_order(item: Item) -> tuple[float, int]:
    return item.next_attempt_at, item.id


def _items_by_id(db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Item]:
    select = f"SELECT {_COLUMNS} FROM {_ITEMS} WHERE id IN ({{marks}})"
    items = (_item(row) for row in _rows_with_ids(db, select, ids))
    return {item.id: item for item in items}


@dataclass
class _Taker:
    """One call of a group commit, as the due heads are dealt."""

    wanted: int
    skip: frozenset[str]
    chosen: list[tuple[int, str, str]] = field(default_factory=list)

    def takes(self, uid: str) -> bool:
        return self.wanted > 0 and uid not in self.skip

    def take(self, head: tuple[int, str, str]) -> bool:
        """Take ``head``; True when that was the last one wanted."""
        self.chosen.append(head)
        self.wanted -= 1
        return self.wanted == 0


def _choose_heads(
    db: sqlite3.Connection, calls: Sequence[_Call], now: float
) -> list[list[tuple[int, str, str]]]:
    """One walk of the due heads for the whole group, each head to the first call
    still short that takes it: what claiming for each call in turn would give."""
    takers = [_Taker(call.limit, call.skip) for call in calls]
    wanting = [taker for taker in takers if taker.wanted > 0]
    if wanting:
        heads = db.execute(
            "SELECT item_id, uid, room_id FROM heads WHERE due <= ? ORDER BY due, item_id", (now,)
        )
        _deal(heads, wanting)
    return [taker.chosen for taker in takers]


def _deal(heads: Iterable[tuple[int, str, str]], wanting: list[_Taker]) -> None:
    """Deal ``heads`` in order until the takers still ``wanting`` some have all
    they want, or none is left. A taker that has all it wants leaves the line, so
    a lot of a hundred calls of one head each is dealt in a hundred steps, not
    five thousand."""
    for head in heads:
        for place, taker in enumerate(wanting):
            if taker.takes(head[1]):
                if taker.take(head):
                    del wanting[place]
                    if not wanting:
                        return
                break


def _cut_heads(db: sqlite3.Connection, now: float) -> int:
    """Room heads whose wait began after ``now``: due as long after now as it was
    after the wait began, the item's own retry time or lease with it."""
    heads = db.execute(
        "SELECT uid, room_id, item_id, max(0, due - set_at) FROM heads WHERE set_at > ?", (now,)
    ).fetchall()
    for uid, room_id, item_id, wait in heads:
        db.execute(
            "UPDATE outbox SET waited_at = ?, "
            "next_attempt_at = CASE state WHEN 'pending' THEN ? ELSE next_attempt_at END, "
            "lease_until = CASE state WHEN 'inflight' THEN ? ELSE lease_until END WHERE id = ?",
            (now, now + wait, now + wait, item_id),
        )
        db.execute(
            "UPDATE heads SET due = ?, set_at = ? WHERE uid = ? AND room_id = ?",
            (now + wait, now, uid, room_id),
        )
    return len(heads)


def _cut_windows(db: sqlite3.Connection, now: float) -> int:
    """Windows whose last send is after ``now``: they start again now, a digest due
    one frequency from now, never a day and a frequency."""
    return db.execute(
        "UPDATE windows SET "
        "due_at = CASE WHEN due_at IS NULL THEN NULL ELSE ? + max(0, due_at - last_sent) END, "
        "expires_at = ? + coalesce(length, expires_at - last_sent), "
        "pending_since = min(pending_since, ?), last_sent = ? WHERE last_sent > ?",
        (now, now, now, now, now),
    ).rowcount
