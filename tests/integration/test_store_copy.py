"""``syncd store copy``: a single host's outbox moved into an unused PostgreSQL store."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.commands.store import copy
from syncd.errors import EXIT_OK, Failure
from syncd.service.statedir import StateDir, StateDirBusy
from syncd.store.contract import NewItem, Settle, Window, WindowUpdate
from syncd.store.copying import MOVED
from syncd.store.postgresql import PostgresOutbox
from syncd.store.sqlite import Outbox
from tests.integration.test_store_interface import Clock
from tests.support import postgres
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.stores import claim, dead

WAITING = Window(last_sent=990.0, pending=3, pending_since=995.0, mentions=("@ops", "@pay"))


def single_host(path: Path, clock: Clock) -> None:
    """An outbox as a stopped daemon leaves it: a room retried twice, one in flight
    at the stop, a dead letter, one delivered, a window holding events, and
    fingerprints known (one with a NUL in it)."""
    box = Outbox(path, clock=clock, monotonic=clock)
    with box.batch() as batch:
        batch.enqueue(
            [NewItem("a", room, {"n": n}) for room, n in (("1", 1), ("1", 2), ("2", 3), ("2", 4))]
            + [NewItem("b", "7", {"n": 5}, count=3, mentions=("@ops",), since=900.0)],
            clock(),
        )
        batch.remember("shop", "fp\0one", clock())
        batch.remember("shop", "fp two", clock())
        batch.save_window(WindowUpdate("b\0fp\0one", "b", WAITING, 1300.0, {"n": 6}, 300.0))
    first, second, third = claim(box, limit=3, lease=30)  # rooms a/1, a/2, b/7
    box.settle(Settle(first.id, "pending", "HTTP 503", retry_at=clock() + 60))
    clock.now += 5
    box.settle(Settle(second.id, "delivered"))
    dead(box, third.id, "HTTP 404 Not Found")
    claim(box, limit=3, lease=300)  # room a/2's second item: in flight at the stop
    clock.now += 61
    (again,) = claim(box, limit=1, lease=30)
    box.settle(Settle(again.id, "pending", "HTTP 502", retry_at=clock() + 120))
    box.close()


def test_a_single_hosts_outbox_moves_whole_and_in_order(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    path = tmp_path / "state" / "outbox.db"
    path.parent.mkdir()
    single_host(path, clock)
    before = {i.event["n"]: i for i in Outbox(path, clock=clock, monotonic=clock).items()}
    assert copy(f"sqlite:{path}", postgres_url) == EXIT_OK
    assert capsys.readouterr().out.startswith(
        "moved 3 notification(s) to send and 1 dead letter(s), 1 throttle window(s) and "
        "2 known fingerprint(s) from "
    )
    shared = PostgresOutbox(postgres_url, clock=clock, monotonic=clock, connections=2)
    try:
        moved = {i.event["n"]: i for i in shared.items()}
        assert sorted(moved) == [1, 2, 4, 5]
        for n in (1, 2, 5):
            was, now = before[n], moved[n]
            assert (now.uid, now.room_id, now.attempts, now.reason, now.state) == (
                was.uid,
                was.room_id,
                was.attempts,
                was.reason,
                was.state,
            ), n
            assert (now.created_at, now.next_attempt_at, now.count, now.mentions, now.since) == (
                was.created_at,
                was.next_attempt_at,
                was.count,
                was.mentions,
                was.since,
            ), n
        assert (before[4].state, moved[4].state) == ("inflight", "pending")
        assert shared.depth() == {"a": 3}
        assert shared.dead_letters() == {("b", "7"): 1}
        with shared.view() as view:
            assert view.known("shop", "fp\0one") and view.known("shop", "fp two")
            assert view.window("b\0fp\0one") == WAITING
        assert shared.running() == pytest.approx(clock() - 1000.0, abs=1)
        assert postgres.heads_consistent(postgres_url)
        assert postgres.tallies_consistent(postgres_url)
        assert postgres.events_consistent(postgres_url)
        clock.now += 120
        assert sorted(i.event["n"] for i in claim(shared, limit=5, lease=30)) == [1, 4]
    finally:
        shared.close()
    left = Outbox(path, clock=clock, monotonic=clock)
    assert {i.event["n"]: (i.state, i.reason) for i in left.items() if i.state != "delivered"} == {
        1: ("cancelled", MOVED),
        2: ("cancelled", MOVED),
        4: ("cancelled", MOVED),
        5: ("dead", "HTTP 404 Not Found"),
    }
    assert left.due_windows(now=1e9) == [] and left.depth() == {}


def test_a_target_in_use_or_not_empty_is_refused_and_nothing_moves(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    clock = Clock()
    path = tmp_path / "outbox.db"
    single_host(path, clock)
    daemon = PostgresOutbox(postgres_url, connections=1)
    with pytest.raises(Failure, match="in use"):
        copy(f"sqlite:{path}", postgres_url)
    with daemon.batch() as batch:
        batch.enqueue([NewItem("c", "1", {})], clock())
    daemon.close()
    with pytest.raises(Failure, match="not empty"):
        copy(f"sqlite:{path}", postgres_url)
    assert [i.event for i in PostgresOutbox(postgres_url, connections=1).items()] == [{}]
    source = Outbox(path, clock=clock, monotonic=clock)
    assert [i.state for i in source.items()] == [
        "pending",
        "pending",
        "delivered",
        "inflight",
        "dead",
    ]


def test_an_outbox_a_daemon_still_runs_on_is_not_copied(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    state = tmp_path / "state"
    running = StateDir(state)
    running.acquire()
    try:
        single_host(state / "outbox.db", Clock())
        with pytest.raises(StateDirBusy):
            copy(f"sqlite:{state / 'outbox.db'}", postgres_url)
    finally:
        running.release()
    assert postgres.execute(postgres_url, "SELECT to_regclass('outbox') IS NULL") == [(True,)]
