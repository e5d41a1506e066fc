"""The SQLite outbox: a real file, per-room order, leases, retries, dead letters."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Registry
from syncd.store.contract import (
    DeadPick,
    Item,
    NewItem,
    Settle,
    StoreError,
    StoreUnusable,
    Window,
    WindowUpdate,
)
from syncd.store.sqlite import Outbox
from tests.support.stores import (
    ack,
    claim,
    dead,
    events_consistent,
    heads_consistent,
    retry,
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
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"outbox", "fingerprints", "windows", "heads"} <= tables


def test_only_the_head_of_each_room_is_claimed(box: Outbox) -> None:
    put(box, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    claimed = claim(box, limit=10, lease=30)
    assert [i.event["n"] for i in claimed] == [1, 3, 4]
    assert claim(box, limit=10, lease=30) == []
    ack(box, claimed[0].id)
    (second,) = claim(box, limit=10, lease=30)
    assert second.event["n"] == 2
    assert second.attempts == 1


def test_retry_keeps_order_and_waits(box: Outbox, clock: Clock) -> None:
    put(box, ("a", "1", 1), ("a", "1", 2))
    (first,) = claim(box, limit=10, lease=30)
    retry(box, first.id, at=clock.now + 60, reason="HTTP 500")
    assert claim(box, limit=10, lease=30) == []  # head is waiting; item 2 must not overtake
    clock.now += 60
    (again,) = claim(box, limit=10, lease=30)
    assert (again.id, again.attempts, again.reason) == (first.id, 2, "HTTP 500")


def test_expired_lease_is_claimed_again(box: Outbox, clock: Clock) -> None:
    put(box, ("a", "1", 1))
    (first,) = claim(box, limit=10, lease=30)
    clock.now += 29
    assert claim(box, limit=10, lease=30) == []
    clock.now += 2
    (again,) = claim(box, limit=10, lease=30)
    assert again.id == first.id and again.attempts == 2


def test_recover_after_a_crash(tmp_path: Path, clock: Clock) -> None:
    box = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    put(box, ("a", "1", 1))
    claim(box, limit=1, lease=300)
    box.close()
    reopened = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    assert reopened.recover() == 1
    assert [i.state for i in reopened.items()] == ["pending"]


def test_dead_letter_after_max_age_keeps_the_reason(box: Outbox, clock: Clock) -> None:
    (item_id,) = put(box, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=clock.now + 10, reason="HTTP 503 Service Unavailable")
    clock.now += 24 * 3600 + 1
    (expired,) = box.expire(max_age=24 * 3600)
    assert (expired.uid, expired.room_id, expired.count) == ("a", "1", 1)
    assert expired.last_reason == "HTTP 503 Service Unavailable"
    dead = box.get(item_id)
    assert dead is not None and dead.state == "dead"
    assert dead.reason == "expired after 86400 s: HTTP 503 Service Unavailable"


def test_cancel_integration(box: Outbox) -> None:
    put(box, ("a", "1", 1), ("a", "2", 2), ("b", "1", 3))
    assert box.cancel_integration("a", "integration removed") == 2
    assert [(i.uid, i.state, i.reason) for i in box.items()] == [
        ("a", "cancelled", "integration removed"),
        ("a", "cancelled", "integration removed"),
        ("b", "pending", None),
    ]
    assert box.depth() == {"b": 1}


def test_fingerprints_and_windows_persist(tmp_path: Path, clock: Clock) -> None:
    box = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    with box.batch() as batch:
        assert not batch.known("p", "fp")
        batch.remember("p", "fp", clock.now)
        assert batch.known("p", "fp")
        assert not batch.known("other", "fp")
        batch.save_window(WindowUpdate("k", "a", Window(10.0, 3, 11.0), 70.0, {"e": 1}))
    box.close()
    again = Outbox(tmp_path / "o.db", clock=clock, monotonic=clock)
    with again.view() as view:
        assert view.known("p", "fp")
        assert view.window("k") == Window(10.0, 3, 11.0)
    (due,) = again.due_windows(now=70.0)
    assert (due.key, due.window.pending, due.last_event) == ("k", 3, {"e": 1})
    assert again.due_windows(now=69.0) == []


def test_mentions_are_kept_as_a_list_and_a_sent_window_forgets_them(box: Outbox) -> None:
    with box.batch() as batch:
        batch.enqueue(
            [NewItem("a", "1", {}, mentions=("@ops", "@pay")), NewItem("a", "1", {})], 0.0
        )
        pending = Window(10.0, 2, 11.0, ("@ops", "@pay"))
        batch.save_window(WindowUpdate("k", "a", pending, 70.0, {"e": 1}))
    assert [i.mentions for i in box.items()] == [("@ops", "@pay"), ()]
    with box.batch() as batch:
        assert batch.window("k") == pending
    (due,) = box.due_windows(now=70.0)
    assert due.window.mentions == ("@ops", "@pay")
    with box.batch() as batch:  # the window sends: what it aggregated is gone with it
        batch.save_window(WindowUpdate("k", "a", Window(last_sent=70.0), None))
        assert batch.window("k") == Window(last_sent=70.0)


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


def test_rollback_on_error_leaves_nothing(box: Outbox) -> None:
    with pytest.raises(RuntimeError), box.batch() as batch:
        batch.enqueue([NewItem("a", "1", {})], 0.0)
        raise RuntimeError("disk said no")
    assert box.items() == []


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


def test_a_failed_group_commit_fails_every_call_in_it(box: Outbox) -> None:
    put(box, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=30)
    conn = sqlite3.connect(box.path)
    conn.execute("DROP TABLE outbox")
    conn.close()
    with pytest.raises(StoreError):
        box.settle_and_claim(Settle(item.id, "delivered"), 1, 30)
    assert box._calls == []


def test_a_room_behind_a_waiting_head_is_not_due(box: Outbox, clock: Clock) -> None:
    put(box, ("a", "1", 1), ("a", "1", 2), ("a", "1", 3))
    (head,) = claim(box, limit=10, lease=30)
    retry(box, head.id, at=clock.now + 60, reason="HTTP 503")
    # The items behind the head were due long ago; only the head's time counts.
    assert box.next_due() == clock.now + 60
    clock.now += 60
    (again,) = claim(box, limit=10, lease=45)
    assert again.id == head.id
    assert box.next_due() == clock.now + 45  # in flight: claimable when the lease runs out


def test_skipped_integrations_are_passed_over(box: Outbox, clock: Clock) -> None:
    put(box, ("slow", "1", 1), ("slow", "2", 2), ("fast", "1", 3))
    (item,) = claim(box, limit=10, lease=30, skip={"slow"})
    assert item.uid == "fast"
    assert box.next_due(skip={"slow", "fast"}) is None
    assert box.next_due(skip={"fast"}) == clock.now
    assert {i.uid for i in claim(box, limit=10, lease=30)} == {"slow"}


def test_a_head_put_back_unsent_keeps_its_place_and_its_attempts(box: Outbox, clock: Clock) -> None:
    """A worker that claimed a head and then found its server full puts it back as
    it was: had it gone to the back of the queue, the rooms put back would wait
    behind every other room's whole backlog."""
    put(box, ("a", "1", 1))
    clock.now += 1
    put(box, ("b", "1", 2), ("b", "1", 3))
    (first,) = claim(box, limit=1, lease=30)
    assert first.event["n"] == 1
    clock.now += 5
    put_back = Settle(first.id, "pending", None, first.next_attempt_at, attempted=False)
    (again,) = box.settle_and_claim(put_back, 1, 30)
    assert again.id == first.id  # still before room b's older-than-now head
    assert again.attempts == 1


def test_heads_follow_every_kind_of_write(box: Outbox, clock: Clock) -> None:
    rng = random.Random(7)
    rooms = [(uid, room) for uid in "abc" for room in "12"]
    for _ in range(400):
        action = rng.randrange(8)
        if action <= 1:
            uid, room = rng.choice(rooms)
            put(box, (uid, room, rng.randrange(100)))
        elif action == 2:
            for item in claim(box, limit=rng.randrange(1, 4), lease=rng.choice([5, 30])):
                state = rng.choice(["delivered", "dead", "cancelled", "pending"])
                retry_at = clock.now + rng.randrange(0, 20) if state == "pending" else None
                box.settle(Settle(item.id, state, "r", retry_at))
        elif action == 3:
            claim(box, limit=2, lease=10)
        elif action == 4:
            box.cancel_integration(rng.choice("abc"), "removed")
        elif action == 5:
            box.expire(max_age=rng.choice([15, 40]))
        elif action == 6:
            box.retry_dead(DeadPick(uid=rng.choice("abc")))
        else:
            clock.now += rng.randrange(1, 10)
        assert heads_consistent(box.path)
    box.recover()
    assert heads_consistent(box.path)


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


def test_dead_letters_are_listed_counted_and_queued_again_in_order(
    box: Outbox, clock: Clock
) -> None:
    put(box, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    for item in claim(box, limit=10, lease=30):
        dead(box, item.id, "HTTP 401 Unauthorized")
    assert box.dead_letters() == {("a", "1"): 1, ("a", "2"): 1, ("b", "1"): 1}
    assert [i.event["n"] for i in box.items("dead", uid="a")] == [1, 3]
    assert [i.event["n"] for i in box.items("pending")] == [2]
    clock.now += 100
    retried = box.retry_dead(DeadPick(uid="a", room_id="1"))
    assert [i.event["n"] for i in retried] == [1]
    again = {i.event["n"]: i for i in claim(box, limit=10, lease=30)}
    assert sorted(again) == [1]  # room a/1 delivers 1 before 2 again; the others stay dead
    assert (again[1].attempts, again[1].created_at) == (1, clock.now)
    assert heads_consistent(box.path)
    assert [i.event["n"] for i in box.retry_dead(DeadPick(ids=(999,)))] == []


def test_an_expiry_is_logged_with_its_integration_room_and_last_error(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.db", clock=clock, monotonic=clock)
    put(box, ("shop", "42", 1), ("shop", "42", 2))
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=clock.now + 10, reason="ConnectionError: refused")
    clock.now += 3601
    chores = Housekeeping(box, Ingest(box, Registry(), clock=clock), max_age=3600)
    caplog.set_level(logging.WARNING, logger="syncd")
    chores.tick()
    assert [r.getMessage() for r in caplog.records] == [
        "shop room 42: 2 notification(s) expired undelivered after 3600 s "
        "(dead-lettered; last error: ConnectionError: refused)"
    ]


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


def test_kept_counts_match_a_full_scan_through_every_kind_of_write_and_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    """What /status and /metrics read: counts kept as items change, never a scan."""
    path = tmp_path / "outbox.db"
    box = Outbox(path, clock=clock, monotonic=clock)
    rng = random.Random(11)
    rooms = [(uid, room) for uid in "abc" for room in "12"]
    for step in range(400):
        action = rng.randrange(9)
        if action <= 1:
            put(box, *[(*rng.choice(rooms), n) for n in range(rng.randrange(1, 5))])
        elif action == 2:
            for item in claim(box, limit=rng.randrange(1, 4), lease=rng.choice([5, 30])):
                state = rng.choice(["delivered", "dead", "cancelled", "pending"])
                box.settle(
                    Settle(item.id, state, "r", clock.now + 3 if state == "pending" else None)
                )
        elif action == 3:
            box.cancel_integration(rng.choice("abc"), "integration removed")
        elif action == 4:
            box.expire(max_age=rng.choice([15, 40]))
        elif action == 5:
            box.retry_dead(DeadPick(uid=rng.choice("abc")))
        elif action == 6:
            box.revive(rng.choice("abc"), "integration removed", clock.now - 20)
        elif action == 7:
            box.prune_finished(older_than=rng.choice([0, 30]))
        else:
            clock.now += rng.randrange(1, 10)
        if step % 100 == 99:
            box.close()
            box = Outbox(path, clock=clock, monotonic=clock)
            box.recover()
        assert tallies_consistent(path), step
        assert events_consistent(path), step
    scan = {}
    for item in box.items():
        if item.state in ("pending", "inflight"):
            scan[item.uid] = scan.get(item.uid, 0) + 1
    assert box.depth() == scan
    dead_scan: dict[tuple[str, str], int] = {}
    for item in box.items("dead"):
        dead_scan[(item.uid, item.room_id)] = dead_scan.get((item.uid, item.room_id), 0) + 1
    assert box.dead_letters() == dead_scan


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


def test_old_fingerprints_and_idle_windows_are_forgotten(box: Outbox, clock: Clock) -> None:
    with box.batch() as batch:
        batch.remember("p", "old", clock.now)
        batch.save_window(WindowUpdate("idle", "a", Window(last_sent=clock.now), None, None, 60))
        waiting = Window(last_sent=clock.now, pending=2, pending_since=clock.now)
        batch.save_window(WindowUpdate("waiting", "a", waiting, clock.now + 60, {"e": 1}, 60))
    clock.now += 61
    with box.batch() as batch:
        batch.remember("p", "fresh", clock.now)
    assert box.forget_old(max_age=3600) == 1  # the idle window is over: the next event sends
    clock.now += 3600
    with box.batch() as batch:
        batch.remember("p", "fresh", clock.now)  # seen again: kept
    assert box.forget_old(max_age=3600) == 1
    with box.view() as view:
        assert (view.known("p", "old"), view.known("p", "fresh")) == (False, True)
        assert view.window("idle") == Window()
        assert view.window("waiting").pending == 2  # a window still holding events stays


def test_housekeeping_forgets_what_only_grows(box: Outbox, clock: Clock) -> None:
    with box.batch() as batch:
        for n in range(50):
            batch.remember("p", f"fp{n}", clock.now)
    clock.now += 2 * 3600
    Housekeeping(box, Ingest(box, Registry(), clock=clock), max_age=3600).tick()
    with box.view() as view:
        assert not any(view.known("p", f"fp{n}") for n in range(50))


def test_revived_items_are_pending_again_in_their_rooms_order(box: Outbox, clock: Clock) -> None:
    put(box, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    clock.now += 5
    assert box.cancel_integration("a", "integration removed") == 3
    since = clock.now
    clock.now += 5
    assert box.revive("a", "integration removed", since) == 3
    assert box.depth() == {"a": 3, "b": 1}
    assert sorted(i.event["n"] for i in claim(box, limit=10, lease=30)) == [1, 3, 4]
    assert heads_consistent(box.path)
    assert tallies_consistent(box.path)


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
