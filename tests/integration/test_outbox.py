"""The SQLite outbox: a real file, per-room order, leases, retries, dead letters."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Registry
from syncd.store.contract import (
    Item,
    NewItem,
    Settle,
    StoreError,
    StoreUnusable,
)
from syncd.store.sqlite import _REST_ROOM, Outbox
from tests.support.stores import (
    claim,
    dead,
    heads_consistent,
    tallies_consistent,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(tmp_path: Path, clock: Clock) -> Outbox:
    return Outbox(tmp_path / "outbox.db", clock=clock, monotonic=clock)


def put(box: Outbox, *items: tuple[str, str, int]) -> list[int]:
    with box.batch() as batch:
        return batch.enqueue([NewItem(uid, room, {"n": n}) for uid, room, n in items], box.clock())


def test_wal_mode_and_schema(box: Outbox) -> None:
    conn = sqlite3.connect(box.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with box._connection() as own:  # a bounded cache, bigger than the default
        assert own.execute("PRAGMA cache_size").fetchone()[0] == -16384
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"outbox", "fingerprints", "windows", "heads"} <= tables


def test_a_settle_finds_the_rooms_next_item_through_the_index_of_open_items(
    box: Outbox,
) -> None:
    """Every settle marks when the room's next item takes its turn: without the
    index of open items, each settle read every pending item of every room
    (60,000 at 1,000 rooms), and a lot of 300 settles took a second."""
    conn = sqlite3.connect(box.path)
    plan = " ".join(
        str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {_REST_ROOM}", (1, 1, "a", "1", 1))
    )
    assert "outbox_open" in plan
    assert "outbox_due" not in plan


def test_recover_after_a_crash(tmp_path: Path, clock: Clock) -> None:
    box = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    put(box, ("a", "1", 1))
    claim(box, limit=1, lease=300)
    box.close()
    reopened = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    assert reopened.recover() == 1
    assert [i.state for i in reopened.items()] == ["pending"]


# The tables as syncd wrote them when an item and a window held one mention text.
ONE_MENTION_TABLES = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL, room_id TEXT NOT NULL, event TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1, mention TEXT, created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending', lease_until REAL, reason TEXT, finished_at REAL,
    since REAL
);
CREATE TABLE fingerprints (
    project TEXT NOT NULL, fingerprint TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (project, fingerprint)
) WITHOUT ROWID;
CREATE TABLE windows (
    key TEXT PRIMARY KEY, uid TEXT NOT NULL, last_sent REAL, pending INTEGER NOT NULL DEFAULT 0,
    pending_since REAL, due_at REAL, last_event TEXT, mention TEXT
) WITHOUT ROWID;
"""


def test_an_outbox_written_with_one_mention_text_reads_as_lists(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)
    conn.executescript(ONE_MENTION_TABLES)
    conn.executemany(
        "INSERT INTO outbox (uid, room_id, event, mention, created_at, next_attempt_at) "
        "VALUES ('a', ?, '{}', ?, 0, 0)",
        [("1", "@payments"), ("2", "@payments @ops"), ("3", None)],
    )
    conn.executemany(
        "INSERT INTO windows (key, uid, last_sent, pending, pending_since, due_at, last_event, "
        "mention) VALUES (?, 'a', 10.0, ?, ?, 70.0, '{\"e\": 1}', ?)",
        [("waiting", 2, 11.0, "@payments @ops"), ("sent", 0, None, "@stale")],
    )
    conn.commit()
    conn.close()
    box = Outbox(path, clock=clock, monotonic=clock)
    assert [i.mentions for i in box.items()] == [("@payments",), ("@payments", "@ops"), ()]
    # A window that already sent kept its last mention text; it is not earned again.
    windows = {w.key: w.window.mentions for w in box.due_windows(now=70.0)}
    assert windows == {"waiting": ("@payments", "@ops"), "sent": ()}
    with box.batch() as batch:
        assert batch.window("sent").mentions == ()
        batch.enqueue([NewItem("a", "1", {}, mentions=("@ops",))], clock.now)
    assert [i.mentions for i in claim(box, limit=3, lease=30)] == [
        ("@payments",),
        ("@payments", "@ops"),
        (),
    ]
    assert box.items()[-1].mentions == ("@ops",)


class CountingClock(Clock):
    """Each write transaction reads the clock once: calls count commits."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


def test_calls_that_queue_behind_a_writer_share_one_commit(tmp_path: Path) -> None:
    clock = CountingClock()
    box = Outbox(tmp_path / "outbox.db", clock=clock)
    put(box, *[("a", str(room), room) for room in range(6)])
    first = claim(box, limit=3, lease=30)
    assert len(first) == 3
    results: dict[int, list[Item]] = {}
    with box.batch():
        threads = [
            threading.Thread(
                target=lambda n=n: results.__setitem__(
                    n, box.settle_and_claim(Settle(first[n].id, "delivered"), 1, 30)
                )
            )
            for n in range(3)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(box._calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(box._calls) == 3
        clock.calls = 0
    for thread in threads:
        thread.join(timeout=10)
    assert clock.calls == 1
    claimed = sorted(item.event["n"] for items in results.values() for item in items)
    assert claimed == [3, 4, 5]
    assert [i.state for i in box.items() if i.id in {f.id for f in first}] == ["delivered"] * 3


def _group_scene(box: Outbox) -> list[tuple[Settle | None, int, frozenset[str]]]:
    """Items in seven rooms, five in flight, and the calls of one group: every kind
    of settle (a room rested, a retry, a send that went out after its integration
    was cancelled, a retry after it was, a dead letter) and claims passing over
    different integrations."""
    put(box, ("a", "1", 1), ("a", "1", 2), ("b", "1", 3), ("b", "1", 4), ("c", "1", 5))
    put(box, ("d", "1", 6), ("e", "1", 7), ("e", "1", 8), ("f", "1", 9), ("f", "2", 10))
    put(box, ("b", "2", 11), ("a", "2", 12))
    flying = {item.event["n"]: item.id for item in claim(box, limit=5, lease=30)}
    assert sorted(flying) == [1, 3, 5, 6, 7]
    box.cancel_integration("c", "removed")
    box.cancel_integration("d", "removed")
    now = box.clock()
    return [
        (Settle(flying[1], "delivered", room_rest_until=now + 60), 1, frozenset()),
        (Settle(flying[3], "pending", "HTTP 500", retry_at=now + 30), 1, frozenset({"f"})),
        (Settle(flying[5], "delivered"), 2, frozenset({"a", "b"})),
        (Settle(flying[6], "pending", "HTTP 503", retry_at=now + 5), 0, frozenset()),
        (None, 1, frozenset({"a", "b", "f"})),
        (Settle(flying[7], "dead", "HTTP 404"), 3, frozenset()),
    ]


def _outcome(box: Outbox) -> tuple[object, ...]:
    with sqlite3.connect(box.path) as db:
        heads = db.execute("SELECT uid, room_id, item_id, due FROM heads ORDER BY 1, 2").fetchall()
    items = [
        (i.id, i.state, i.next_attempt_at, i.attempts, i.reason, i.lease_until) for i in box.items()
    ]
    return tuple(items), tuple(heads)


def test_a_group_commit_writes_what_its_calls_one_by_one_would(
    tmp_path: Path, clock: Clock
) -> None:
    """The calls of one group commit are written a statement per kind for all of
    them: the outcome, each call's claims and the heads are those of the group's
    settles one at a time and then its claims one at a time, in the order the
    calls queued."""
    grouped = Outbox(tmp_path / "grouped.db", clock=clock, monotonic=clock)
    calls = _group_scene(grouped)
    results: dict[int, list[Item]] = {}
    with grouped.batch():
        threads = [
            threading.Thread(
                target=lambda n=n, call=call: results.__setitem__(
                    n, grouped.settle_and_claim(call[0], call[1], 30, call[2])
                )
            )
            for n, call in enumerate(calls)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(grouped._calls) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.005)
        queued = [(call.done, call.limit, call.skip) for call in grouped._calls]
    for thread in threads:
        thread.join(timeout=10)
    order = [calls.index(call) for call in queued]
    one_by_one = Outbox(tmp_path / "one-by-one.db", clock=clock, monotonic=clock)
    assert _group_scene(one_by_one) == calls
    for n in order:
        if calls[n][0] is not None:
            one_by_one.settle(calls[n][0])
    alone = {n: claim(one_by_one, calls[n][1], 30, calls[n][2]) for n in order}
    assert {n: [i.id for i in items] for n, items in results.items()} == {
        n: [i.id for i in items] for n, items in alone.items()
    }
    assert _outcome(grouped) == _outcome(one_by_one)
    assert heads_consistent(grouped.path) and tallies_consistent(grouped.path)
    by_n = {i.event["n"]: i for i in grouped.items()}
    assert [by_n[n].state for n in (1, 3, 5, 6, 7)] == [
        "delivered",
        "pending",
        "delivered",  # went out after its integration was cancelled
        "cancelled",  # a retry does not revive it
        "dead",
    ]
    assert by_n[2].next_attempt_at == clock.now + 60  # the room rests
    assert by_n[3].next_attempt_at == clock.now + 30
    claimed = sorted(i.event["n"] for items in results.values() for i in items)
    assert claimed == [8, 9, 10, 11, 12]


def test_a_failed_group_commit_fails_every_call_in_it(box: Outbox) -> None:
    put(box, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=30)
    conn = sqlite3.connect(box.path)
    conn.execute("DROP TABLE outbox")
    conn.close()
    with pytest.raises(StoreError):
        box.settle_and_claim(Settle(item.id, "delivered"), 1, 30)
    assert box._calls == []


def test_a_file_written_before_the_heads_table_gets_one(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, clock=clock, monotonic=clock)
    put(box, ("a", "1", 1), ("a", "1", 2), ("b", "1", 3))
    box.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE heads")
    conn.commit()
    conn.close()
    reopened = Outbox(path, clock=clock, monotonic=clock)
    assert heads_consistent(reopened.path)
    assert sorted(i.event["n"] for i in claim(reopened, limit=10, lease=30)) == [1, 3]


def test_a_file_from_before_digest_times_gains_the_column(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outbox.db"
    put(Outbox(path, clock=clock, monotonic=clock), ("a", "1", 1))
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE outbox DROP COLUMN since")
    conn.commit()
    conn.close()
    reopened = Outbox(path, clock=clock, monotonic=clock)
    with reopened.batch() as batch:
        batch.enqueue([NewItem("a", "1", {"n": 2}, count=3, since=clock.now - 60)], clock.now)
    assert [(i.count, i.since) for i in reopened.items()] == [(1, None), (3, clock.now - 60)]


def test_stopping_housekeeping_waits_for_a_chore_under_way(box: Outbox, clock: Clock) -> None:
    """A daemon that shuts down while its last-known-good copy is being written
    waits for it, before it lets go of the state dir."""
    started, finished = threading.Event(), threading.Event()

    def chore() -> None:
        started.set()
        time.sleep(0.3)  # a copy being written: the wait under test
        finished.set()

    chores = Housekeeping(
        box, Ingest(box, Registry(), clock=clock), max_age=3600, interval=0.01, chores=[chore]
    )
    chores.start()
    assert started.wait(10)
    chores.stop(timeout=10)
    assert finished.is_set()


def test_a_file_from_before_kept_counts_gets_them_from_one_scan(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, clock=clock, monotonic=clock)
    put(box, ("a", "1", 1), ("a", "1", 2), ("b", "2", 3))
    (first, _) = claim(box, limit=2, lease=30)
    dead(box, first.id, "HTTP 404")
    box.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE tallies")
    again = Outbox(path, clock=clock, monotonic=clock)
    assert tallies_consistent(path)
    assert again.depth() == {"a": 1, "b": 1}
    assert again.dead_letters() == {("a", "1"): 1}


def test_a_failed_write_for_want_of_space_is_told_until_a_probe_fits(
    box: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert box.write_problem() is None and box.probe() is None
    full = sqlite3.OperationalError("database or disk is full")

    def refuse(conn: sqlite3.Connection) -> None:
        raise full

    monkeypatch.setattr("syncd.store.sqlite._commit", refuse)
    with pytest.raises(StoreError), box.batch() as batch:
        batch.enqueue([NewItem("a", "1", {})], 0.0)
    assert box.write_problem() == "database or disk is full"
    assert box.probe() == "database or disk is full"
    monkeypatch.undo()
    assert box.probe() is None
    assert box.write_problem() is None
    assert box.items() == []


def test_a_file_system_short_of_space_is_told_before_a_write_fails(
    tmp_path: Path, clock: Clock
) -> None:
    box = Outbox(tmp_path / "outbox.db", clock=clock, low_space=1 << 62)
    problem = box.probe()
    assert problem is not None and problem.endswith(
        f"bytes free on the state dir's file system, under the {1 << 62} it needs to take events in"
    )
    assert box.write_problem() == problem


def test_a_file_whose_schema_is_damaged_is_unusable_not_a_crash(
    tmp_path: Path, clock: Clock
) -> None:
    """SQLite's message about a damaged schema can quote the damage: bytes that are
    not UTF-8 once escaped the store as a UnicodeDecodeError."""
    path = tmp_path / "outbox.db"
    Outbox(path, clock=clock, monotonic=clock).close()
    damaged = bytearray(path.read_bytes())
    for offset in range(4096, len(damaged), 509):
        damaged[offset] = 0xAB
    path.write_bytes(bytes(damaged))
    with pytest.raises(StoreUnusable):
        Outbox(path, clock=clock, monotonic=clock)


def test_a_claim_of_more_items_than_a_statement_takes_parameters_for(box: Outbox) -> None:
    """Items are read back in parts: 1,200 claimed at once (a group is usually a
    handful) come back whole and in order."""
    put(box, *[("a", str(room), room) for room in range(1200)])
    claimed = claim(box, limit=1200, lease=30)
    assert [item.event["n"] for item in claimed] == list(range(1200))
    assert heads_consistent(box.path) and tallies_consistent(box.path)
