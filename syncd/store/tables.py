"""The SQLite outbox's tables, and how a file written by an earlier syncd is
brought up to them.

Kept apart from the queries (``sqlite``) because it changes for a different
reason: a new column is a migration written once, with the values old rows
get, while the queries only ever see the current tables.

Two kinds of bookkeeping live in the tables themselves rather than in code:

- ``heads``, one row per room with its oldest undelivered item, kept by the
  queries, so claiming costs the same at any depth;
- ``tallies``, the count of open (pending or in flight) and dead items per
  room, kept in the same transaction as the change they count: a scrape of
  ``/metrics`` or ``/status`` reads one row per room instead of grouping
  every item. Triggers count every change of state and every delete, so no
  code path (a future one included) can forget; inserts, which come in
  batches of thousands, are counted by the one statement that inserts items
  (``SqliteBatch.enqueue``), once per room and batch, since a trigger per row
  made a batch half again as slow. A file that predates them gets them from
  one full scan.
"""

from __future__ import annotations

import sqlite3

TABLES = """
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
    since REAL,
    ran_at REAL,
    waited_at REAL,
    event_id INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    refs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
    uid TEXT NOT NULL,
    room_id TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    due REAL NOT NULL,
    set_at REAL,
    PRIMARY KEY (uid, room_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    project TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen REAL NOT NULL,
    seen_run REAL,
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
    mention TEXT,
    length REAL,
    expires_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY,
    filler BLOB
);
"""

TALLIES = """
CREATE TABLE IF NOT EXISTS tallies (
    uid TEXT NOT NULL,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (uid, room_id, kind)
) WITHOUT ROWID;
"""

# An item's tally: 'open' while pending or in flight, 'dead' once dead-lettered;
# delivered and cancelled items are not counted.
_KIND_OLD = (
    "CASE WHEN old.state IN ('pending', 'inflight') THEN 'open' "
    "WHEN old.state = 'dead' THEN 'dead' END"
)
_KIND_NEW = _KIND_OLD.replace("old.", "new.")

TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS tally_delete AFTER DELETE ON outbox
WHEN {_KIND_OLD} IS NOT NULL
BEGIN
    UPDATE tallies SET n = n - 1
    WHERE uid = old.uid AND room_id = old.room_id AND kind = {_KIND_OLD};
    DELETE FROM tallies WHERE uid = old.uid AND room_id = old.room_id AND n <= 0;
END;
CREATE TRIGGER IF NOT EXISTS tally_update AFTER UPDATE OF state ON outbox
WHEN {_KIND_OLD} IS NOT {_KIND_NEW}
BEGIN
    UPDATE tallies SET n = n - 1
    WHERE uid = old.uid AND room_id = old.room_id AND kind = {_KIND_OLD};
    INSERT INTO tallies (uid, room_id, kind, n)
    SELECT new.uid, new.room_id, {_KIND_NEW}, 1 WHERE {_KIND_NEW} IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
    DELETE FROM tallies WHERE uid = old.uid AND room_id = old.room_id AND n <= 0;
END;
"""

# An event is kept once for every item it caused (``outbox.event`` is empty for
# those), and goes with the last of them.
EVENT_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS event_refs AFTER DELETE ON outbox
WHEN old.event_id IS NOT NULL
BEGIN
    UPDATE events SET refs = refs - 1 WHERE event_id = old.event_id;
    DELETE FROM events WHERE event_id = old.event_id AND refs <= 0;
END;
"""

# The counts as a full scan of the items finds them: what the triggers keep.
TALLIES_SCAN = (
    "SELECT uid, room_id, CASE WHEN state = 'dead' THEN 'dead' ELSE 'open' END AS kind, "
    "count(*) FROM outbox WHERE state IN ('pending', 'inflight', 'dead') "
    "GROUP BY uid, room_id, kind"
)

INDEXES = """
DROP INDEX IF EXISTS outbox_room;
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (uid, room_id, id)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS heads_due ON heads (due, item_id);
CREATE INDEX IF NOT EXISTS heads_set ON heads (set_at);
CREATE INDEX IF NOT EXISTS windows_due ON windows (due_at);
CREATE INDEX IF NOT EXISTS windows_sent ON windows (last_sent);
CREATE INDEX IF NOT EXISTS windows_idle ON windows (expires_at) WHERE due_at IS NULL;
CREATE INDEX IF NOT EXISTS fingerprints_seen ON fingerprints (seen_run);
"""

# Columns added since the first release, with what rows written before them get.
_ADDED: tuple[tuple[str, str, str], ...] = (
    ("outbox", "since", "REAL"),
    ("outbox", "ran_at", "REAL"),
    ("outbox", "waited_at", "REAL"),
    ("outbox", "event_id", "INTEGER"),
    ("heads", "set_at", "REAL"),
    ("fingerprints", "seen_run", "REAL"),
    ("windows", "length", "REAL"),
    ("windows", "expires_at", "REAL"),
)

# An idle window written before windows knew their length: kept this long after
# its last send, longer than any frequency worth throttling on.
LEGACY_WINDOW_LIFE = 30 * 24 * 3600.0


def create(conn: sqlite3.Connection, *, now: float, running: float) -> None:
    """The tables, columns, tallies, indexes and triggers, whatever the file held.

    Called inside a write transaction: a migration stopped half-way (a crash, a
    full disk) leaves the file as it was, never tallies created but not filled.
    """
    had_tallies = _exists(conn, "tallies")
    _run(conn, TABLES)
    added = _add_columns(conn)
    if added:
        _fill_added(conn, added, now=now, running=running)
    _run(conn, TALLIES)
    if not had_tallies:
        conn.execute(f"INSERT INTO tallies (uid, room_id, kind, n) {TALLIES_SCAN}")
    _run(conn, INDEXES + TRIGGERS + EVENT_TRIGGERS)
    conn.execute("DROP TRIGGER IF EXISTS tally_insert")


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` in the open transaction (``executescript``
    would commit first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _add_columns(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    added: set[tuple[str, str]] = set()
    for table, column, kind in _ADDED:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            added.add((table, column))
    return added


def _fill_added(
    conn: sqlite3.Connection, added: set[tuple[str, str]], *, now: float, running: float
) -> None:
    """Old rows: an item's age as the wall clock told it, a wait begun now, a
    fingerprint just seen, an idle window kept ``LEGACY_WINDOW_LIFE``."""
    if ("outbox", "ran_at") in added:
        conn.execute("UPDATE outbox SET ran_at = ? - (? - created_at)", (running, now))
    if ("outbox", "waited_at") in added:
        conn.execute("UPDATE outbox SET waited_at = min(next_attempt_at, ?)", (now,))
    if ("fingerprints", "seen_run") in added:
        conn.execute("UPDATE fingerprints SET seen_run = ?", (running,))
    if ("windows", "expires_at") in added:
        conn.execute(
            "UPDATE windows SET expires_at = coalesce(last_sent, ?) + ?",
            (now, LEGACY_WINDOW_LIFE),
        )
