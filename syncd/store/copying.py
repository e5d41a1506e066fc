"""Moving one host's SQLite outbox into a PostgreSQL store, for a move to several
daemons: what was still to send, the dead letters, and what the rules remember.

Pending items (and those in flight at the last stop) keep their order, attempts,
retry times, reasons and age; dead letters stay dead letters; throttle windows
keep what they aggregated and fingerprints stay known, so the move neither
drops a digest nor notifies every known error group as new again. The running
clock comes along, since ages are counted on it.

The target must be unused: an empty outbox, and no daemon connected to it. The
copy is one transaction there, under locks that keep daemons out while it
runs; only once it committed are the moved items cancelled in the SQLite file
("moved to a PostgreSQL store"), so a daemon started on that file by mistake
sends nothing twice. A copy that fails changes neither.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from syncd.store import pgschema
from syncd.store.contract import StoreError, StoreUnavailable, StoreUnusable
from syncd.store.postgresql import (
    HEADS_SCAN,
    TALLIES_SCAN,
    Conn,
    conninfo,
    store_error,
    stored_room,
)
from syncd.store.sqlite import Outbox

MOVED = "moved to a PostgreSQL store"

_ITEMS = (
    "SELECT o.id, o.uid, o.room_id, o.event_id, coalesce(e.body, o.event), o.count, o.mention, "
    "o.created_at, o.next_attempt_at, o.attempts, "
    "CASE o.state WHEN 'inflight' THEN 'pending' ELSE o.state END, o.reason, o.finished_at, "
    "o.since, o.ran_at, o.waited_at "
    "FROM outbox o LEFT JOIN events e USING (event_id) "
    "WHERE o.state IN ('pending', 'inflight', 'dead') ORDER BY o.id"
)
_WINDOWS = (
    "SELECT key, uid, last_sent, pending, pending_since, due_at, last_event, mention, length, "
    "expires_at FROM windows"
)
_FINGERPRINTS = "SELECT project, fingerprint, first_seen, seen_run FROM fingerprints"


@dataclass(frozen=True)
class Copied:
    pending: int
    dead: int
    windows: int
    fingerprints: int


@dataclass(frozen=True)
class _Source:
    items: list[Any]
    windows: list[Any]
    fingerprints: list[Any]
    ran: float


def copy_outbox(source: Path, url: str, password: str | None = None) -> Copied:
    """Copy ``source`` into the empty store at ``url``, then cancel what moved in
    ``source``. Raises the store errors: :class:`StoreUnusable` when the target is
    in use (or not a store), :class:`StoreUnavailable` when it is out of reach."""
    if not source.is_file():
        raise StoreUnusable(f"no outbox at {source}")
    Outbox(source).close()  # brought up to date, and checked, as a daemon would
    found = _read(source)
    info, secrets = conninfo(url, password)
    try:
        with psycopg.connect(info, autocommit=True) as conn:
            pgschema.migrate(conn, by="syncd store copy")
            with conn.transaction():
                _refuse_if_used(conn)
                _write(conn, found)
    except psycopg.Error as exc:
        raise store_error(exc, secrets) from None
    moved = [row[0] for row in found.items if row[10] != "dead"]
    _cancel_moved(source, moved, [row[0] for row in found.windows])
    dead = len(found.items) - len(moved)
    return Copied(len(moved), dead, len(found.windows), len(found.fingerprints))


def _read(source: Path) -> _Source:
    """Everything to copy, read in one transaction."""
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.execute("BEGIN")
        ran = db.execute("SELECT value FROM meta WHERE key = 'ran'").fetchone()
        return _Source(
            db.execute(_ITEMS).fetchall(),
            db.execute(_WINDOWS).fetchall(),
            db.execute(_FINGERPRINTS).fetchall(),
            float(ran[0]) if ran else 0.0,
        )


def _refuse_if_used(conn: Conn) -> None:
    """Daemons kept out for the copy, and none there before it: the tables are
    locked (without waiting: a daemon holding one means the store is in use),
    no daemon is connected, and the outbox holds nothing yet."""
    try:
        conn.execute(
            "LOCK TABLE outbox, heads, windows, fingerprints, meta IN EXCLUSIVE MODE NOWAIT"
        )
    except psycopg.errors.LockNotAvailable:
        raise StoreUnusable("the target store is in use by a daemon: stop them all first") from None
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name LIKE 'syncd %'"
    ).fetchone()
    if row is not None and row[0]:
        raise StoreUnusable(
            f"the target store is in use: {row[0]} connection(s) of syncd daemons are open "
            "to it; stop them first"
        )
    held = conn.execute(
        "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM windows) "
        "+ (SELECT count(*) FROM fingerprints)"
    ).fetchone()
    if held is not None and held[0]:
        raise StoreUnusable("the target store is not empty: copy into a store no daemon has used")


def _write(conn: Conn, found: _Source) -> None:
    conn.execute(
        "INSERT INTO meta AS m (key, value) VALUES ('ran', %s) ON CONFLICT (key) "
        "DO UPDATE SET value = greatest(m.value, excluded.value)",
        (found.ran,),
    )
    _write_items(conn, found.items)
    conn.execute(
        "INSERT INTO windows (key, uid, last_sent, pending, pending_since, due_at, last_event, "
        "mention, length, expires_at) "
        "SELECT * FROM unnest(%s::bytea[], %s::text[], %s::float8[], %s::int[], %s::float8[], "
        "%s::float8[], %s::text[], %s::text[], %s::float8[], %s::float8[])",
        _columns(found.windows, 10, keys=(0,)),
    )
    conn.execute(
        "INSERT INTO fingerprints (project, fingerprint, first_seen, seen_run) "
        "SELECT p, f, s, coalesce(r, %s) FROM unnest(%s::bytea[], %s::bytea[], %s::float8[], "
        "%s::float8[]) AS t(p, f, s, r)",
        (found.ran, *_columns(found.fingerprints, 4, keys=(0, 1))),
    )
    conn.execute(f"INSERT INTO heads (uid, room_id, item_id, due, set_at) {HEADS_SCAN}")
    conn.execute(f"INSERT INTO tallies (uid, room_id, kind, n) {TALLIES_SCAN}")


def _write_items(conn: Conn, items: Sequence[Any]) -> None:
    """Items with new ids in the old ids' order (so each room's order holds), each
    event once, referred to by as many items as it was."""
    if not items:
        return
    # An item from before events were kept apart holds its own: a key of its own.
    keys = [row[3] if row[3] is not None else f"item {row[0]}" for row in items]
    bodies = dict(zip(keys, (row[4] for row in items), strict=True))
    refs = Counter(keys)
    drawn = conn.execute(
        "SELECT array(SELECT nextval('item_ids') FROM generate_series(1, %s)), "
        "array(SELECT nextval('event_ids') FROM generate_series(1, %s))",
        (len(items), len(bodies)),
    ).fetchone()
    assert drawn is not None
    event_ids = dict(zip(bodies, sorted(drawn[1]), strict=True))
    conn.execute(
        "INSERT INTO events (event_id, body, refs) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::int[])",
        (list(event_ids.values()), list(bodies.values()), [refs[key] for key in bodies]),
    )
    rows = [
        (new, row[1], stored_room(row[2]), event_ids[key], *row[5:])
        for new, row, key in zip(sorted(drawn[0]), items, keys, strict=True)
    ]
    conn.execute(
        "INSERT INTO outbox (id, uid, room_id, event_id, count, mention, created_at, "
        "next_attempt_at, attempts, state, reason, finished_at, since, ran_at, waited_at) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::int[], "
        "%s::text[], %s::float8[], %s::float8[], %s::int[], %s::text[], %s::text[], "
        "%s::float8[], %s::float8[], %s::float8[], %s::float8[])",
        _columns(rows, 15),
    )


def _columns(
    rows: Sequence[Sequence[Any]], width: int, keys: tuple[int, ...] = ()
) -> tuple[list[Any], ...]:
    """Rows as one list per column, for ``unnest``; the ``keys`` columns as bytes."""
    columns: list[list[Any]] = [[row[n] for row in rows] for n in range(width)]
    for index in keys:
        columns[index] = [str(v).encode("utf-8", "surrogatepass") for v in columns[index]]
    return tuple(columns)


def _cancel_moved(source: Path, items: Sequence[int], windows: Sequence[str]) -> None:
    """What moved is cancelled in the SQLite file, and its windows forgotten there;
    the next open rebuilds the rooms' heads. Dead letters stay: dead in both."""
    try:
        with contextlib.closing(sqlite3.connect(source, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE outbox SET state = 'cancelled', reason = ?, lease_until = NULL "
                "WHERE id = ? AND state IN ('pending', 'inflight')",
                [(MOVED, item_id) for item_id in items],
            )
            db.executemany("DELETE FROM windows WHERE key = ?", [(key,) for key in windows])
            db.execute("COMMIT")
        Outbox(source).close()
    except (sqlite3.Error, StoreError) as exc:
        raise StoreUnavailable(
            f"copied, but the items could not be marked moved in {source} ({exc}): do not "
            "start a daemon on it, or it sends them again"
        ) from None
