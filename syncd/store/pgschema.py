"""The PostgreSQL outbox's tables, and the versioned migrations that build them.

Kept apart from the queries (``postgresql``) for the reason ``tables`` is
apart from ``sqlite``: a migration is written once, for the databases that an
earlier syncd left, while the queries only see the current tables.

Unlike a SQLite file, one database serves several daemons, and they may start
together or run different releases during a rollout. So the schema carries a
version (``syncd_schema``, one row per migration applied), and every change is
a numbered migration applied in one transaction under an advisory lock: two
daemons starting together migrate once (the second waits, then finds nothing
to do), a migration stopped half-way leaves the database as it was, and a
daemon that finds a version newer than it knows refuses to start instead of
writing rows it does not understand. ``syncd store migrate`` runs the same
code ahead of a rollout; ``syncd store check`` reads the version only.

A migration only adds: a daemon of the release before it, on a database it
was applied to, refuses to start (the version is newer than it knows), but
one already running goes on, as it never touches what was added. (Migration
3 adds a function that does what that release's statements do, on the same
rows and locks in the same order, so the two releases' settles and claims
fence each other as a release's own do.)

Bookkeeping that the SQLite store keeps with triggers is kept here the same
way, by statement-level triggers that see each statement's changed rows at
once: the ``tallies`` (open and dead items per room) and the ``events`` rows'
reference counts. Inserts are counted by the one statement that inserts items.

Texts that may hold any character an event can carry (projects, fingerprints,
window keys, which join a uid and a fingerprint with a NUL) are ``bytea``:
PostgreSQL's ``text`` cannot hold NUL.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from syncd.store.contract import StoreUnusable

Conn = psycopg.Connection[TupleRow]

VERSION_TABLE = "syncd_schema"


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sql: str


_V1 = """
CREATE TABLE meta (
    key text PRIMARY KEY,
    value double precision NOT NULL
);
CREATE TABLE events (
    event_id bigint PRIMARY KEY,
    body text NOT NULL,
    refs integer NOT NULL
);
CREATE SEQUENCE event_ids AS bigint;
CREATE SEQUENCE item_ids AS bigint;
CREATE TABLE outbox (
    id bigint PRIMARY KEY,
    uid text NOT NULL,
    room_id text NOT NULL,
    event_id bigint NOT NULL,
    count integer NOT NULL DEFAULT 1,
    mention text,
    created_at double precision NOT NULL,
    next_attempt_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'inflight', 'delivered', 'dead', 'cancelled')),
    lease_until double precision,
    owner text,
    lease bigint NOT NULL DEFAULT 0,
    reason text,
    finished_at double precision,
    since double precision,
    ran_at double precision NOT NULL,
    waited_at double precision NOT NULL
);
CREATE INDEX outbox_open ON outbox (uid, room_id, id) WHERE state IN ('pending', 'inflight');
CREATE INDEX outbox_state ON outbox (state, id);
CREATE INDEX outbox_uid ON outbox (uid, state, id);
CREATE INDEX outbox_waiting ON outbox (ran_at) WHERE state = 'pending';
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE state IN ('delivered', 'cancelled');
CREATE TABLE heads (
    uid text NOT NULL,
    room_id text NOT NULL,
    item_id bigint NOT NULL,
    due double precision NOT NULL,
    set_at double precision NOT NULL,
    PRIMARY KEY (uid, room_id)
);
CREATE INDEX heads_due ON heads (due, item_id);
CREATE INDEX heads_set ON heads (set_at);
CREATE TABLE tallies (
    uid text NOT NULL,
    room_id text NOT NULL,
    kind text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (uid, room_id, kind)
);
CREATE TABLE fingerprints (
    project bytea NOT NULL,
    fingerprint bytea NOT NULL,
    first_seen double precision NOT NULL,
    seen_run double precision NOT NULL,
    PRIMARY KEY (project, fingerprint)
);
CREATE INDEX fingerprints_seen ON fingerprints (seen_run);
CREATE TABLE windows (
    key bytea PRIMARY KEY,
    uid text NOT NULL,
    last_sent double precision,
    pending integer NOT NULL DEFAULT 0,
    pending_since double precision,
    due_at double precision,
    last_event text,
    mention text,
    length double precision,
    expires_at double precision
);
CREATE INDEX windows_due ON windows (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX windows_sent ON windows (last_sent);
CREATE INDEX windows_idle ON windows (expires_at) WHERE due_at IS NULL;
CREATE INDEX windows_uid ON windows (uid);

-- An item's tally: 'open' while pending or in flight, 'dead' once dead-lettered.
CREATE FUNCTION syncd_kind(state text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN state IN ('pending', 'inflight') THEN 'open'
                WHEN state = 'dead' THEN 'dead' END
$$;

-- Rows are locked in one order (uid, room, kind), so two statements that move
-- items of the same rooms wait for each other instead of deadlocking.
CREATE FUNCTION syncd_items_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tallies AS t (uid, room_id, kind, n)
    SELECT uid, room_id, kind, sum(d) FROM (
        SELECT o.uid, o.room_id, syncd_kind(o.state) AS kind, -1 AS d
        FROM changed_old o JOIN changed_new c ON c.id = o.id
        WHERE syncd_kind(o.state) IS DISTINCT FROM syncd_kind(c.state)
        UNION ALL
        SELECT c.uid, c.room_id, syncd_kind(c.state), 1
        FROM changed_old o JOIN changed_new c ON c.id = o.id
        WHERE syncd_kind(o.state) IS DISTINCT FROM syncd_kind(c.state)
    ) moves
    WHERE kind IS NOT NULL
    GROUP BY uid, room_id, kind
    HAVING sum(d) <> 0
    ORDER BY uid, room_id, kind
    ON CONFLICT (uid, room_id, kind) DO UPDATE SET n = t.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE TRIGGER items_changed AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_items_changed();

-- An event is kept once for all the items it caused, and goes with the last.
CREATE FUNCTION syncd_items_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tallies AS t (uid, room_id, kind, n)
    SELECT uid, room_id, syncd_kind(state), -count(*) FROM deleted
    WHERE syncd_kind(state) IS NOT NULL
    GROUP BY uid, room_id, syncd_kind(state)
    ORDER BY 1, 2, 3
    ON CONFLICT (uid, room_id, kind) DO UPDATE SET n = t.n + excluded.n;
    UPDATE events e SET refs = e.refs - gone.n
    FROM (SELECT event_id, count(*) AS n FROM deleted GROUP BY event_id) gone
    WHERE e.event_id = gone.event_id;
    DELETE FROM events e USING (SELECT DISTINCT event_id FROM deleted) gone
    WHERE e.event_id = gone.event_id AND e.refs <= 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER items_deleted AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_items_deleted();
"""

# Each daemon's row, written as it applies a set and at every housekeeping tick;
# a member is live while its heartbeat (the server's clock, so hosts' clocks
# need not agree) is recent. ``uids``: the integrations its applied set has.
_V2 = """
CREATE TABLE members (
    id text PRIMARY KEY,
    host text NOT NULL,
    version text NOT NULL,
    revision text NOT NULL,
    uids text[] NOT NULL,
    started_at double precision NOT NULL,
    heartbeat double precision NOT NULL
);
CREATE INDEX members_heartbeat ON members (heartbeat);
"""


# The due room heads a claim takes: by index, skipping those another
# transaction holds. ``$1`` the time now, ``$2`` the integrations passed over,
# ``$3`` how many. Part of migration 3's text: never to be edited (a changed
# claim is a new migration).
DUE_HEADS = """SELECT uid, room_id, item_id FROM heads
WHERE due <= $1 AND NOT (uid = ANY($2))
ORDER BY due, item_id
LIMIT $3
FOR UPDATE SKIP LOCKED"""

# A worker's call, one statement: the settle of its last item, fenced (only
# while the item is still this claim's: in flight under this owner and
# generation, or cancelled since, when only "delivered" is recorded), then the
# next claim. One statement is one round trip and one transaction, where the
# same statements sent from the client cost a pipeline of five and a commit.
#
# The room's head is locked first, as every write takes a room's head before
# its items; each statement below sees what committed before it began (read
# committed, a fresh snapshot a statement), so the head's refresh sees what a
# batch that held the head committed meanwhile.
#
# The due heads are found by EXECUTE, so planned for their values at each
# call: a plan kept for any values may read every due head and sort them,
# not the first few by index. The rest reads and writes rows by key, whose
# plans are kept: planning the claim whole at each call cost more than the
# claim itself.
_V3 = f"""
CREATE FUNCTION syncd_settle_and_claim(
    settled bigint, generation bigint, outcome text, why text, retry_at double precision,
    unattempted integer, rest_until double precision, claimer text, clock double precision,
    until double precision, skipped text[], wanted integer
) RETURNS TABLE (
    lease bigint, id bigint, uid text, room_id text, body text, count integer, mention text,
    created_at double precision, next_attempt_at double precision, attempts integer,
    state text, lease_until double precision, reason text, finished_at double precision,
    since double precision
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    room_uid text;
    room text;
    head record;
BEGIN
    IF settled IS NOT NULL THEN
        SELECT o.uid, o.room_id INTO room_uid, room FROM outbox o WHERE o.id = settled;
        PERFORM FROM heads h WHERE h.uid = room_uid AND h.room_id = room FOR UPDATE;
        IF outcome = 'pending' THEN
            UPDATE outbox SET state = 'pending', next_attempt_at = retry_at, reason = why,
                lease_until = NULL, attempts = attempts - unattempted, waited_at = clock
            WHERE id = settled AND owner = claimer AND lease = generation AND state = 'inflight';
        ELSE
            UPDATE outbox SET state = outcome, reason = why, finished_at = clock, lease_until = NULL
            WHERE id = settled AND owner = claimer AND lease = generation
            AND (state = 'inflight' OR (state = 'cancelled' AND outcome = 'delivered'));
        END IF;
        -- What HipChat said holds whichever claim this was: no fence.
        IF rest_until IS NOT NULL THEN
            UPDATE outbox SET next_attempt_at = rest_until, waited_at = clock
            WHERE id = (
                SELECT min(o.id) FROM outbox o
                WHERE o.uid = room_uid AND o.room_id = room AND o.state = 'pending'
            ) AND next_attempt_at < rest_until;
        END IF;
        -- The room's head: its oldest undelivered item, due at its next attempt or
        -- when its lease runs out; none when the room has nothing left.
        WITH next AS (
            SELECT o.id, o.waited_at,
                CASE o.state WHEN 'inflight' THEN coalesce(o.lease_until, 0)
                ELSE o.next_attempt_at END AS due
            FROM outbox o
            WHERE o.uid = room_uid AND o.room_id = room AND o.state IN ('pending', 'inflight')
            ORDER BY o.id LIMIT 1
        ), gone AS (
            DELETE FROM heads h WHERE h.uid = room_uid AND h.room_id = room
            AND NOT EXISTS (SELECT FROM next)
        )
        INSERT INTO heads AS h (uid, room_id, item_id, due, set_at)
        SELECT room_uid, room, n.id, n.due, n.waited_at FROM next n
        ON CONFLICT (uid, room_id) DO UPDATE
        SET item_id = excluded.item_id, due = excluded.due, set_at = excluded.set_at;
    END IF;
    IF wanted > 0 THEN
        FOR head IN EXECUTE $due$
{DUE_HEADS}
$due$ USING clock, skipped, wanted LOOP
            UPDATE heads h SET due = until, set_at = clock
            WHERE h.uid = head.uid AND h.room_id = head.room_id;
            RETURN QUERY
            UPDATE outbox o SET state = 'inflight', lease_until = until,
                attempts = o.attempts + 1, waited_at = clock, owner = claimer,
                lease = o.lease + 1
            FROM events e WHERE o.id = head.item_id AND e.event_id = o.event_id
            RETURNING o.lease, o.id, o.uid, o.room_id, e.body, o.count, o.mention,
                o.created_at, o.next_attempt_at, o.attempts, o.state, o.lease_until,
                o.reason, o.finished_at, o.since;
        END LOOP;
    END IF;
END
$fn$;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the outbox: items, events, room heads, tallies, fingerprints, windows", _V1),
    Migration(2, "members: each daemon, its revision and integrations, and its heartbeat", _V2),
    Migration(3, "a worker's settle and next claim in one call", _V3),
)
LATEST = MIGRATIONS[-1].version


def lock_class(schema: str, kind: str) -> int:
    """The first key of syncd's advisory locks of one kind in one schema: advisory
    locks are per database, so two schemas (two clusters) never share one."""
    return _int4(f"syncd:{schema}:{kind}")


def lock_id(value: str | bytes) -> int:
    """The second key: a value hashed to PostgreSQL's int4. Two values that share
    one only wait for each other, which costs time, never correctness."""
    return _int4(value)


def _int4(value: str | bytes) -> int:
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return zlib.crc32(data) - (1 << 31)


@dataclass(frozen=True)
class SchemaState:
    """The version a database holds, and the latest this syncd knows."""

    found: int
    known: int = LATEST

    @property
    def newer(self) -> bool:
        return self.found > self.known

    @property
    def behind(self) -> bool:
        return self.found < self.known


def newer_message(state: SchemaState) -> str:
    return (
        f"the database holds syncd schema version {state.found}, newer than the "
        f"{state.known} this syncd knows: a newer syncd migrated it. Run that release "
        "(or a later one); this one would misread what the newer one writes"
    )


def schema_of(conn: Conn) -> str:
    """The schema syncd's tables live in: the first of the search path that exists."""
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise StoreUnusable(
            "no schema to use: none of the search path exists (create it, or name one "
            "with ?options=-csearch_path%3DNAME in the store URL)"
        )
    return str(row[0])


def found_version(conn: Conn) -> int:
    """The version applied: 0 for a database syncd never used."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
    return int(found[0]) if found else 0


def check(conn: Conn) -> SchemaState:
    """The version found, read under the migration lock so that a migration under
    way is waited for, not seen half-done."""
    with conn.transaction():
        _lock(conn)
        return SchemaState(found_version(conn))


def migrate(conn: Conn, *, by: str) -> tuple[int, int]:
    """Apply what is missing, in one transaction under the migration lock; returns
    the version found and the version left. Refuses a newer schema."""
    with conn.transaction():
        _lock(conn)
        found = found_version(conn)
        state = SchemaState(found)
        if state.newer:
            raise StoreUnusable(newer_message(state))
        if found == 0:
            conn.execute(
                f"CREATE TABLE {VERSION_TABLE} (version integer PRIMARY KEY, what text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)"
            )
        for migration in MIGRATIONS:
            if migration.version > found:
                conn.execute(migration.sql)
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, what, applied_by) VALUES (%s, %s, %s)",
                    (migration.version, migration.what, by),
                )
        return found, max(found, LATEST)


def _lock(conn: Conn) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, %s)", (lock_class(schema_of(conn), "migrate"), 0)
    )
