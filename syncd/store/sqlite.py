"""The SQLite implementation of the event flow's store (see ``syncd.store.contract``).

One file in WAL mode. Every write is ``BEGIN IMMEDIATE`` so writers queue on
the database lock instead of failing half-way. Items are claimed with a
lease: a worker that dies mid-send leaves an item whose lease runs out, and it
is claimed again; so delivery is at least once, never zero. No connection
leaves this module: callers get a :class:`SqliteBatch` inside a transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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
    StoreUnavailable,
    StoreUnusable,
    Window,
    WindowUpdate,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    mention TEXT,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    lease_until REAL,
    reason TEXT,
    finished_at REAL,
    since REAL
);
DROP INDEX IF EXISTS outbox_room;
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (uid, room_id, id)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS heads (
    uid TEXT NOT NULL,
    room_id TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    due REAL NOT NULL,
    PRIMARY KEY (uid, room_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_due ON heads (due, item_id);
CREATE TABLE IF NOT EXISTS fingerprints (
    project TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (project, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
    key TEXT PRIMARY KEY,
    uid TEXT NOT NULL,
    last_sent REAL,
    pending INTEGER NOT NULL DEFAULT 0,
    pending_since REAL,
    due_at REAL,
    last_event TEXT,
    mention TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_due ON windows (due_at);
"""

_POOL_SIZE = 8
_COLUMNS = (
    "id, uid, room_id, event, count, mention, created_at, next_attempt_at, attempts, state, "
    "lease_until, reason, finished_at, since"
)


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


class SqliteBatch:
    """The :class:`syncd.store.contract.Batch` of one write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        ids = []
        for item in items:
            cursor = self._db.execute(
                "INSERT INTO outbox (uid, room_id, event, count, mention, created_at, "
                "next_attempt_at, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.uid,
                    item.room_id,
                    _json(item.event),
                    item.count,
                    _mentions_text(item.mentions),
                    now,
                    now,
                    item.since,
                ),
            )
            assert cursor.lastrowid is not None
            ids.append(cursor.lastrowid)
            self._db.execute(
                "INSERT INTO heads (uid, room_id, item_id, due) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (item.uid, item.room_id, cursor.lastrowid, now),
            )
        return ids

    def first_seen(self, project: str, fingerprint: str, now: float) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO fingerprints (project, fingerprint, first_seen) "
            "VALUES (?, ?, ?)",
            (project, fingerprint, now),
        )
        return cursor.rowcount == 1

    def window(self, key: str) -> Window:
        row = self._db.execute(
            "SELECT last_sent, pending, pending_since, mention FROM windows WHERE key = ?", (key,)
        ).fetchone()
        return _window(*row) if row else Window()

    def save_window(self, update: WindowUpdate) -> None:
        window = update.window
        self._db.execute(
            "INSERT INTO windows (key, uid, last_sent, pending, pending_since, due_at, "
            "last_event, mention) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_sent = excluded.last_sent, "
            "pending = excluded.pending, pending_since = excluded.pending_since, "
            "due_at = excluded.due_at, "
            "last_event = coalesce(excluded.last_event, windows.last_event), "
            "mention = excluded.mention",
            (
                update.key,
                update.uid,
                window.last_sent,
                window.pending,
                window.pending_since,
                update.due_at,
                None if update.last_event is None else _json(update.last_event),
                _mentions_text(window.mentions),
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


def _store_error(exc: sqlite3.Error) -> StoreError:
    """SQLite's own exceptions never leave this module. An operational error (locked,
    disk full, I/O) may pass; any other database error means the file is not an
    outbox that can be trusted."""
    if isinstance(exc, sqlite3.OperationalError):
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
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.clock = clock
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._calls: list[_Call] = []
        self._calls_lock = threading.Lock()
        with self._connection() as conn:
            self._check(conn)
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "since" not in columns:  # a file from before digests said since when
                conn.execute("ALTER TABLE outbox ADD COLUMN since REAL")
        with self._transaction() as db:
            _rebuild_heads(db)

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
        finally:
            if conn is not None:
                self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
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
        """One atomic batch of ingest or flush reads and writes."""
        with self._transaction() as db:
            yield SqliteBatch(db)

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
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
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
        in one commit (a group commit).
        """
        call = _Call(done, limit, lease, frozenset(skip))
        with self._calls_lock:
            self._calls.append(call)
        with self._write_lock:
            if not call.finished:
                with self._calls_lock:
                    calls, self._calls = self._calls, []
                self._serve(calls)
        if call.error is not None:
            raise call.error
        return call.items

    def _serve(self, calls: list[_Call]) -> None:
        now = self.clock()
        try:
            with self._locked_transaction() as db:
                for call in calls:
                    if call.done is not None:
                        self._settle(db, call.done, now)
                claimed = [_claim(db, call, now) for call in calls]
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
            self._settle(db, done, self.clock())

    @staticmethod
    def _settle(db: sqlite3.Connection, done: Settle, now: float) -> None:
        """Record a send's end, unless the item was cancelled while it was in flight.

        A cancelled item stays cancelled (a worker's late "retry later" must not
        revive it), except that a send which did go out is recorded as delivered.
        """
        if done.state == "pending":
            changed = db.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, reason = ?, "
                "lease_until = NULL, attempts = attempts - ? WHERE id = ? AND state = 'inflight'",
                (done.retry_at, done.reason, 0 if done.attempted else 1, done.item_id),
            ).rowcount
        else:
            changed = db.execute(
                "UPDATE outbox SET state = ?, reason = ?, finished_at = ?, lease_until = NULL "
                "WHERE id = ? AND state = 'inflight'",
                (done.state, done.reason, now, done.item_id),
            ).rowcount
            if not changed and done.state == "delivered":
                db.execute(
                    "UPDATE outbox SET state = 'delivered', reason = ?, finished_at = ? "
                    "WHERE id = ? AND state = 'cancelled'",
                    (done.reason, now, done.item_id),
                )
        if changed:
            row = db.execute(
                "SELECT uid, room_id FROM outbox WHERE id = ?", (done.item_id,)
            ).fetchone()
            _refresh_head(db, *row)

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

    def undelivered_uids(self) -> set[str]:
        """Integrations with items still to send: those with a room head."""
        rows = self._read("SELECT DISTINCT uid FROM heads")
        return {uid for (uid,) in rows}

    def expire(self, max_age: float) -> list[Expired]:
        """Dead-letter what has waited longer than ``max_age``, keeping the last reason;
        returns what expired, per room."""
        now = self.clock()
        with self._transaction() as db:
            rooms = db.execute(
                "SELECT uid, room_id, count(*), min(id) FROM outbox WHERE state = 'pending' "
                "AND created_at < ? GROUP BY uid, room_id",
                (now - max_age,),
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
                "WHERE state = 'pending' AND created_at < ?",
                (now, int(max_age), now - max_age),
            )
            for uid, room_id, _, _ in rooms:
                _refresh_head(db, uid, room_id)
            return expired

    def dead_letters(self) -> dict[tuple[str, str], int]:
        """Dead letters per integration and room."""
        rows = self._read(
            "SELECT uid, room_id, count(*) FROM outbox WHERE state = 'dead' GROUP BY uid, room_id"
        )
        return {(uid, room_id): count for uid, room_id, count in rows}

    def retry_dead(self, pick: DeadPick) -> list[Item]:
        """Dead letters queued again, each in its room's order (by id), as if just
        accepted: attempts from zero, and ``--max-age`` counted from now."""
        where, params = _dead_where(pick)
        now = self.clock()
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {where}", params).fetchall()
            items = [_item(r) for r in rows]
            db.executemany(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                "created_at = ?, finished_at = NULL, lease_until = NULL WHERE id = ?",
                [(now, now, item.id) for item in items],
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
        rows = self._read(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,))
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
            f"SELECT {_COLUMNS} FROM outbox {clause} ORDER BY id LIMIT ?", [*params, limit]
        )
        return [_item(r) for r in rows]

    def depth(self) -> dict[str, int]:
        """Undelivered items per integration."""
        rows = self._read(
            "SELECT uid, count(*) FROM outbox WHERE state IN ('pending', 'inflight') GROUP BY uid"
        )
        return dict(rows)

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        """When the next room head may be claimed: a pending head when it is due, one
        in flight when its lease runs out. Other items wait for their head."""
        with self._connection() as conn:
            for uid, due in conn.execute("SELECT uid, due FROM heads ORDER BY due"):
                if uid not in skip:
                    return float(due)
        return None


# A room's head is its oldest undelivered item. It is claimable when due: a pending
# head at its next attempt, one in flight when its lease runs out. The heads table
# keeps one row per room, so claiming and sleeping cost the same at any depth.
HEADS_SCAN = (
    "SELECT uid, room_id, min(id), "
    "CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) ELSE next_attempt_at END "
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
    db.execute(f"INSERT INTO heads (uid, room_id, item_id, due) {HEADS_SCAN}")


def _refresh_head(db: sqlite3.Connection, uid: str, room_id: str) -> None:
    row = db.execute(
        "SELECT id, CASE state WHEN 'inflight' THEN coalesce(lease_until, 0) "
        "ELSE next_attempt_at END FROM outbox "
        "WHERE uid = ? AND room_id = ? AND state IN ('pending', 'inflight') ORDER BY id LIMIT 1",
        (uid, room_id),
    ).fetchone()
    if row is None:
        db.execute("DELETE FROM heads WHERE uid = ? AND room_id = ?", (uid, room_id))
    else:
        db.execute(
            "INSERT INTO heads (uid, room_id, item_id, due) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (uid, room_id) DO UPDATE SET item_id = excluded.item_id, "
            "due = excluded.due",
            (uid, room_id, *row),
        )


def _claim(db: sqlite3.Connection, call: _Call, now: float) -> list[Item]:
    """Lease up to ``call.limit`` due heads, passing over the skipped integrations."""
    chosen: list[tuple[int, str, str]] = []
    if call.limit > 0:
        heads = db.execute(
            "SELECT item_id, uid, room_id FROM heads WHERE due <= ? ORDER BY due, item_id", (now,)
        )
        for item_id, uid, room_id in heads:
            if uid not in call.skip:
                chosen.append((item_id, uid, room_id))
                if len(chosen) == call.limit:
                    break
    if not chosen:
        return []
    lease_until = now + call.lease
    db.executemany(
        "UPDATE outbox SET state = 'inflight', lease_until = ?, attempts = attempts + 1 "
        "WHERE id = ?",
        [(lease_until, item_id) for item_id, _, _ in chosen],
    )
    db.executemany(
        "UPDATE heads SET due = ? WHERE uid = ? AND room_id = ?",
        [(lease_until, uid, room_id) for _, uid, room_id in chosen],
    )
    marks = ",".join("?" * len(chosen))
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE id IN ({marks})", [i for i, _, _ in chosen]
    ).fetchall()
    return sorted((_item(r) for r in rows), key=lambda i: (i.next_attempt_at, i.id))
