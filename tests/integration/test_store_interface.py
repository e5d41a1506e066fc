"""The ``Store`` contract, one suite for every implementation.

Each test of a promise in ``syncd.store.contract`` runs against the SQLite
outbox and the PostgreSQL one alike (``kind``), through the protocol only;
what is particular to one store (SQLite's files and migrations, PostgreSQL's
several daemons) is tested beside it. A dictionary store at the end shows that
ingest needs nothing beyond the protocol.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg
import pytest

from syncd.config.configset import load_config_set
from syncd.config.model import integration_from_data
from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import (
    DeadPick,
    Item,
    NewItem,
    Settle,
    Store,
    StoredWindow,
    Window,
    WindowUpdate,
)
from syncd.store.postgresql import PostgresOutbox
from syncd.store.sqlite import Outbox
from tests.support import postgres, stores
from tests.support.concurrency import at_once
from tests.support.events import event
from tests.support.stores import ack, claim, dead, retry

DAY = 86_400.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Kind:
    """One implementation: opens stores on one place (a file, a database), as many
    times as a test restarts or adds daemons, and checks their bookkeeping."""

    name = ""

    def __init__(self) -> None:
        self.opened: list[Store] = []

    def open(self, clock: Callable[[], float], monotonic: Callable[[], float] | None = None) -> Any:
        store = self._open(clock, monotonic or clock)
        self.opened.append(store)
        return store

    def _open(self, clock: Callable[[], float], monotonic: Callable[[], float]) -> Store:
        raise NotImplementedError

    def consistent(self) -> bool:
        """Heads, tallies and events say what a full scan of the items says."""
        raise NotImplementedError

    def close(self) -> None:
        for store in self.opened:
            store.close()


class Sqlite(Kind):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _open(self, clock: Callable[[], float], monotonic: Callable[[], float]) -> Store:
        return Outbox(self.path, clock=clock, monotonic=monotonic)

    def consistent(self) -> bool:
        return (
            stores.heads_consistent(self.path)
            and stores.tallies_consistent(self.path)
            and stores.events_consistent(self.path)
        )


class Postgres(Kind):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._admin: psycopg.Connection[Any] | None = None

    def _open(self, clock: Callable[[], float], monotonic: Callable[[], float]) -> Store:
        return PostgresOutbox(self.url, clock=clock, monotonic=monotonic, connections=3)

    def consistent(self) -> bool:
        if self._admin is None:
            self._admin = psycopg.connect(self.url, autocommit=True)
        return (
            postgres.heads_consistent(self._admin)
            and postgres.tallies_consistent(self._admin)
            and postgres.events_consistent(self._admin)
        )

    def close(self) -> None:
        super().close()
        if self._admin is not None:
            self._admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    with _kind(request.param, tmp_path) as found:
        yield found


@contextmanager
def _kind(name: str, tmp_path: Path) -> Iterator[Kind]:
    if name == "sqlite":
        found: Kind = Sqlite(tmp_path / "outbox.db")
        try:
            yield found
        finally:
            found.close()
        return
    with postgres.database() as url:
        found = Postgres(url)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(kind: Kind, clock: Clock) -> Any:
    return kind.open(clock)


def put(box: Store, clock: Clock, *items: tuple[str, str, int]) -> list[int]:
    with box.batch() as batch:
        return batch.enqueue([NewItem(uid, room, {"n": n}) for uid, room, n in items], clock())


def numbers(items: Sequence[Item]) -> list[int]:
    return [i.event["n"] for i in items]


# Leased claims: a room's head only, in order, at least once.


def test_only_the_head_of_each_room_is_claimed(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    claimed = claim(box, limit=10, lease=30)
    assert numbers(claimed) == [1, 3, 4]
    assert claim(box, limit=10, lease=30) == []
    ack(box, claimed[0].id)
    (second,) = claim(box, limit=10, lease=30)
    assert second.event["n"] == 2
    assert second.attempts == 1


def test_a_batch_counts_the_rooms_it_gave_a_head(box: Store, clock: Clock) -> None:
    """What a worker is woken for: items behind a room's head (pending, in flight or
    queued earlier in the same batch) are not claimable and count for nothing."""

    def new_heads(*items: tuple[str, str, int]) -> int:
        with box.batch() as batch:
            batch.enqueue([NewItem(uid, room, {"n": n}) for uid, room, n in items], clock())
            return batch.new_heads

    assert new_heads(("a", "1", 1), ("a", "1", 2), ("a", "2", 3)) == 2
    assert new_heads(("a", "1", 4), ("b", "1", 5)) == 1
    claimed = claim(box, limit=10, lease=30)
    assert new_heads(("a", "1", 6)) == 0  # its head is in flight
    while claimed:
        for item in claimed:
            ack(box, item.id)
        claimed = claim(box, limit=10, lease=30)
    assert new_heads(("a", "1", 7), ("a", "2", 8)) == 2  # delivered rooms start again
    with box.batch() as batch:
        assert batch.new_heads == 0


def test_calls_handed_in_together_are_served_as_one_after_another(box: Store, clock: Clock) -> None:
    """A lot of workers' settles and claims: each settle recorded, each call given
    its own heads, no head given twice, and a room freed by a settle in the lot
    claimable by a call in it."""
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4), ("b", "2", 5))
    first, second = claim(box, limit=2, lease=30)
    lots = box.settle_and_claim_all(
        [
            (Settle(first.id, "delivered"), 1),
            (Settle(second.id, "pending", "HTTP 500", clock.now + 60), 1),
            (None, 1),
            (None, 1),
            (None, 0),
        ],
        30,
    )
    assert [len(items) for items in lots] == [1, 1, 1, 0, 0]
    given = [item for items in lots for item in items]
    assert sorted(numbers(given)) == [2, 4, 5]
    assert len({(item.uid, item.room_id) for item in given}) == 3
    stored = {item.id: item for item in box.items()}
    assert stored[first.id].state == "delivered"
    assert (stored[second.id].state, stored[second.id].reason) == ("pending", "HTTP 500")
    assert box.settle_and_claim_all([(None, 5)], 30, skip={"b"}) == [[]]
    assert box.settle_and_claim_all([], 30) == []


def test_retry_keeps_order_and_waits(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1), ("a", "1", 2))
    (first,) = claim(box, limit=10, lease=30)
    retry(box, first.id, at=clock.now + 60, reason="HTTP 500")
    assert claim(box, limit=10, lease=30) == []  # head is waiting; item 2 must not overtake
    clock.now += 60
    (again,) = claim(box, limit=10, lease=30)
    assert (again.id, again.attempts, again.reason) == (first.id, 2, "HTTP 500")


def test_expired_lease_is_claimed_again(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1))
    (first,) = claim(box, limit=10, lease=30)
    clock.now += 29
    assert claim(box, limit=10, lease=30) == []
    clock.now += 2
    (again,) = claim(box, limit=10, lease=30)
    assert again.id == first.id and again.attempts == 2


def test_items_in_flight_at_a_crash_are_pending_again_once_their_lease_ran_out(
    kind: Kind, clock: Clock
) -> None:
    """A crash: the store is never closed. The next start recovers what was in
    flight; a shared store waits for the lease (it cannot tell a crash from a
    daemon still sending), a single-host one need not."""
    crashed = kind.open(clock)
    put(crashed, clock, ("a", "1", 1))
    claim(crashed, limit=1, lease=300)
    clock.now += 301
    reopened = kind.open(clock)
    assert reopened.recover() == 1
    assert [i.state for i in reopened.items()] == ["pending"]
    assert numbers(claim(reopened, limit=1, lease=30)) == [1]
    assert kind.consistent()


def test_a_room_behind_a_waiting_head_is_not_due(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "1", 3))
    (head,) = claim(box, limit=10, lease=30)
    retry(box, head.id, at=clock.now + 60, reason="HTTP 503")
    # The items behind the head were due long ago; only the head's time counts.
    assert box.next_due() == clock.now + 60
    clock.now += 60
    (again,) = claim(box, limit=10, lease=45)
    assert again.id == head.id
    assert box.next_due() == clock.now + 45  # in flight: claimable when the lease runs out


def test_a_room_whose_minute_is_spent_waits_whichever_daemon_claims_it_next(
    kind: Kind, clock: Clock
) -> None:
    """HipChat said the room takes nothing more before its reset: the delivered
    settle says so, and the room's next item waits in the shared queue, so a
    daemon whose own client never heard the answer does not spend a 429 on it."""
    first, second = kind.open(clock), kind.open(clock)
    put(first, clock, ("a", "1", 1), ("a", "1", 2), ("a", "1", 3), ("b", "1", 4))
    (head,) = claim(first, limit=1, lease=30)
    first.settle(Settle(head.id, "delivered", room_rest_until=clock.now + 40))
    (other_room,) = claim(second, limit=10, lease=30)
    assert other_room.event["n"] == 4
    ack(second, other_room.id)
    assert second.next_due(skip={"b"}) == clock.now + 40
    clock.now += 40
    (next_one,) = claim(second, limit=10, lease=30)
    assert (next_one.event["n"], next_one.attempts) == (2, 1)
    assert kind.consistent()


@pytest.mark.parametrize("ended", ["delivered", "dead", "cancelled"])
def test_a_rooms_next_item_takes_its_turn_behind_the_rooms_already_waiting(
    kind: Kind, clock: Clock, ended: str
) -> None:
    """A room's next item counts its turn from when the one before it ended, not
    from when it was queued: with fewer sends than rooms, a room with a deep
    backlog was otherwise claimed before every room that had waited meanwhile (a
    minute's window reopening for a thousand rooms), until it ran dry."""
    box = kind.open(clock)
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "1", 3))
    clock.now += 10
    put(box, clock, ("b", "1", 4))
    (head,) = claim(box, limit=1, lease=30)
    assert head.event["n"] == 1
    clock.now += 1
    box.settle(Settle(head.id, ended))  # type: ignore[arg-type]
    (turn,) = claim(box, limit=1, lease=30)
    assert turn.event["n"] == 4
    (after,) = claim(box, limit=1, lease=30)
    assert (after.event["n"], after.attempts) == (2, 1)
    assert kind.consistent()


def test_skipped_integrations_are_passed_over(box: Store, clock: Clock) -> None:
    put(box, clock, ("slow", "1", 1), ("slow", "2", 2), ("fast", "1", 3))
    (item,) = claim(box, limit=10, lease=30, skip={"slow"})
    assert item.uid == "fast"
    assert box.next_due(skip={"slow", "fast"}) is None
    assert box.next_due(skip={"fast"}) == clock.now
    assert {i.uid for i in claim(box, limit=10, lease=30)} == {"slow"}


def test_a_head_put_back_unsent_keeps_its_place_and_its_attempts(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1))
    clock.now += 1
    put(box, clock, ("b", "1", 2), ("b", "1", 3))
    (first,) = claim(box, limit=1, lease=30)
    assert first.event["n"] == 1
    clock.now += 5
    put_back = Settle(first.id, "pending", None, first.next_attempt_at, attempted=False)
    (again,) = box.settle_and_claim(put_back, 1, 30)
    assert again.id == first.id  # still before room b's older-than-now head
    assert again.attempts == 1


def test_heads_follow_every_kind_of_write(kind: Kind, box: Store, clock: Clock) -> None:
    rng = random.Random(7)
    rooms = [(uid, room) for uid in "abc" for room in "12"]
    for step in range(300):
        action = rng.randrange(8)
        if action <= 1:
            uid, room = rng.choice(rooms)
            put(box, clock, (uid, room, rng.randrange(100)))
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
        assert kind.consistent(), step
    box.recover()
    assert kind.consistent()


# Settles that respect cancellation.


def test_a_settle_after_a_cancel_keeps_it_cancelled_unless_it_was_delivered(
    box: Store, clock: Clock
) -> None:
    put(box, clock, ("a", "1", 1), ("a", "2", 2), ("a", "3", 3))
    first, second, third = claim(box, limit=3, lease=30)
    assert box.cancel_integration("a", "integration removed") == 3
    retry(box, first.id, at=clock.now + 5, reason="HTTP 503")
    dead(box, second.id, "HTTP 404")
    ack(box, third.id)
    states = {i.id: (i.state, i.reason) for i in box.items()}
    assert states == {
        first.id: ("cancelled", "integration removed"),
        second.id: ("cancelled", "integration removed"),
        third.id: ("delivered", None),
    }
    assert box.depth() == {}
    assert claim(box, limit=3, lease=30) == []


def test_cancel_integration(box: Store, clock: Clock) -> None:
    put(box, clock, ("a", "1", 1), ("a", "2", 2), ("b", "1", 3))
    assert box.cancel_integration("a", "integration removed") == 2
    assert [(i.uid, i.state, i.reason) for i in box.items()] == [
        ("a", "cancelled", "integration removed"),
        ("a", "cancelled", "integration removed"),
        ("b", "pending", None),
    ]
    assert box.depth() == {"b": 1}


def test_revived_items_are_pending_again_in_their_rooms_order(
    kind: Kind, box: Store, clock: Clock
) -> None:
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    clock.now += 5
    assert box.cancel_integration("a", "integration removed") == 3
    since = clock.now
    clock.now += 5
    assert box.revive("a", "integration removed", since) == 3
    assert box.depth() == {"a": 3, "b": 1}
    assert sorted(numbers(claim(box, limit=10, lease=30))) == [1, 3, 4]
    assert kind.consistent()


# Dead letters and expiry.


def test_dead_letter_after_max_age_keeps_the_reason(box: Store, clock: Clock) -> None:
    (item_id,) = put(box, clock, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=clock.now + 10, reason="HTTP 503 Service Unavailable")
    clock.now += DAY + 1
    (expired,) = box.expire(max_age=DAY)
    assert (expired.uid, expired.room_id, expired.count) == ("a", "1", 1)
    assert expired.last_reason == "HTTP 503 Service Unavailable"
    gone = box.get(item_id)
    assert gone is not None and gone.state == "dead"
    assert gone.reason == "expired after 86400 s: HTTP 503 Service Unavailable"


def test_dead_letters_are_listed_counted_and_queued_again_in_order(
    kind: Kind, box: Store, clock: Clock
) -> None:
    put(box, clock, ("a", "1", 1), ("a", "1", 2), ("a", "2", 3), ("b", "1", 4))
    for item in claim(box, limit=10, lease=30):
        dead(box, item.id, "HTTP 401 Unauthorized")
    assert box.dead_letters() == {("a", "1"): 1, ("a", "2"): 1, ("b", "1"): 1}
    assert numbers(box.items("dead", uid="a")) == [1, 3]
    assert numbers(box.items("pending")) == [2]
    clock.now += 100
    retried = box.retry_dead(DeadPick(uid="a", room_id="1"))
    assert numbers(retried) == [1]
    again = {i.event["n"]: i for i in claim(box, limit=10, lease=30)}
    assert sorted(again) == [1]  # room a/1 delivers 1 before 2 again; the others stay dead
    assert (again[1].attempts, again[1].created_at) == (1, clock.now)
    assert kind.consistent()
    assert box.retry_dead(DeadPick(ids=(999,))) == []


def test_an_expiry_is_logged_with_its_integration_room_and_last_error(
    box: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    put(box, clock, ("shop", "42", 1), ("shop", "42", 2))
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


# Counts kept, not counted.


def test_kept_counts_match_a_full_scan_through_every_kind_of_write_and_a_restart(
    kind: Kind, clock: Clock
) -> None:
    box = kind.open(clock)
    rng = random.Random(11)
    rooms = [(uid, room) for uid in "abc" for room in "12"]
    for step in range(300):
        action = rng.randrange(9)
        if action <= 1:
            put(box, clock, *[(*rng.choice(rooms), n) for n in range(rng.randrange(1, 5))])
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
            box = kind.open(clock)
            box.recover()
        assert kind.consistent(), step
    scan: dict[str, int] = {}
    for item in box.items():
        if item.state in ("pending", "inflight"):
            scan[item.uid] = scan.get(item.uid, 0) + 1
    assert box.depth() == scan
    dead_scan: dict[tuple[str, str], int] = {}
    for item in box.items("dead"):
        dead_scan[(item.uid, item.room_id)] = dead_scan.get((item.uid, item.room_id), 0) + 1
    assert box.dead_letters() == dead_scan


# Atomic batches: what the rules read and wrote, all or nothing, one at a time.


def test_fingerprints_and_windows_persist(kind: Kind, clock: Clock) -> None:
    box = kind.open(clock)
    with box.batch() as batch:
        assert not batch.known("p", "fp")
        batch.remember("p", "fp", clock.now)
        assert batch.known("p", "fp")
        assert not batch.known("other", "fp")
        batch.save_window(WindowUpdate("k", "a", Window(10.0, 3, 11.0), 70.0, {"e": 1}))
    box.close()
    again = kind.open(clock)
    with again.view() as view:
        assert view.known("p", "fp")
        assert view.window("k") == Window(10.0, 3, 11.0)
    (due,) = again.due_windows(now=70.0)
    assert (due.key, due.window.pending, due.last_event) == ("k", 3, {"e": 1})
    assert again.due_windows(now=69.0) == []


def test_mentions_are_kept_as_a_list_and_a_sent_window_forgets_them(
    box: Store, clock: Clock
) -> None:
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


def test_any_text_an_event_or_a_config_carries_is_kept_as_it_was(box: Store, clock: Clock) -> None:
    """Fingerprints and projects come from senders, window keys join a uid and a
    fingerprint with a NUL, and a room id is whatever the YAML said."""
    fingerprint, project, room = "fp\0\\0 é", "pro\0ject", "room\0\\0\\"
    key = f"a\0{fingerprint}"
    body = {"fingerprint": fingerprint, "n": 1}
    with box.batch() as batch:
        assert not batch.known(project, fingerprint)
        batch.remember(project, fingerprint, clock.now)
        batch.save_window(WindowUpdate(key, "a", Window(10.0, 1, 11.0), 70.0, body))
        batch.enqueue([NewItem("a", room, body)], clock.now)
    with box.view() as view:
        assert view.known(project, fingerprint)
        assert not view.known(project, "fp")
        assert view.window(key) == Window(10.0, 1, 11.0)
    (due,) = box.due_windows(now=70.0)
    assert (due.key, due.last_event) == (key, body)
    (item,) = claim(box, limit=1, lease=30)
    assert (item.room_id, item.event) == (room, body)
    dead(box, item.id, "HTTP 400: bad\0byte")
    assert box.dead_letters() == {("a", room): 1}
    assert numbers(box.retry_dead(DeadPick(uid="a", room_id=room))) == [1]


def test_rollback_on_error_leaves_nothing(box: Store, clock: Clock) -> None:
    with pytest.raises(RuntimeError), box.batch() as batch:
        batch.enqueue([NewItem("a", "1", {})], 0.0)
        batch.remember("p", "fp", clock.now)
        raise RuntimeError("disk said no")
    assert box.items() == []
    with box.view() as view:
        assert not view.known("p", "fp")


def group_registry() -> Registry:
    """One integration notifying each new fingerprint of project shop, in room 1."""
    return registry_of({"uid": "new", "project": "shop", "name": "new"})


def registry_of(fields: dict[str, Any]) -> Registry:
    integration = integration_from_data(
        {
            **fields,
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": "1", "token": {"env": "HIPCHAT_T"}}],
            },
        }
    )
    registry = Registry()
    notifier = Notifier(integration, MappingProxyType({"1": "token"}))
    registry.snapshot = Snapshot(MappingProxyType({integration.uid: notifier}), "test")
    return registry


def test_a_new_fingerprint_taken_by_many_threads_at_once_is_queued_once(
    box: Store, clock: Clock
) -> None:
    registry = group_registry()
    ingests = [Ingest(box, registry, clock=clock) for _ in range(6)]
    for round_ in range(5):
        new = event("shop", f"fp{round_}")
        queued = at_once([lambda i=i, e=new: i.submit([e]).notifications for i in ingests])
        assert sorted(queued) == [0] * (len(ingests) - 1) + [1], round_
    assert len(box.items()) == 5


# Time the daemon ran, and waits a step of the wall clock made longer.


@pytest.fixture
def wall() -> Clock:
    return Clock(1_764_158_400.0)


@pytest.fixture
def mono() -> Clock:
    return Clock(50.0)


def upkeep(box: Store, wall: Clock, mono: Clock, registry: Registry | None = None) -> Housekeeping:
    ingest = Ingest(box, registry or Registry(), clock=wall)
    return Housekeeping(box, ingest, max_age=DAY, clock=wall, monotonic=mono)


def throttled_registry() -> Registry:
    return registry_of(
        {
            "uid": "slow",
            "project": "shop",
            "name": "slow",
            "trigger": {"event": "trace", "frequency": "5m"},
        }
    )


def test_a_window_open_when_the_clock_steps_back_a_day_sends_its_digest_on_time(
    kind: Kind, wall: Clock, mono: Clock
) -> None:
    box = kind.open(wall, mono)
    chores = upkeep(box, wall, mono, throttled_registry())
    ingest = chores.ingest
    assert ingest.submit([event("shop", "f")]).notifications == 1
    wall.now += 10
    assert ingest.submit([event("shop", "f")]).notifications == 0  # held for 5 minutes
    wall.now -= DAY
    chores.tick()
    wall.now += 299
    chores.tick()
    assert len(box.items()) == 1, "the digest went early"
    wall.now += 2
    chores.tick()
    digest = box.items()[-1]
    assert (digest.count, len(box.items())) == (1, 2), "the digest waited for the day"


def test_a_retry_set_before_a_step_back_waits_its_own_length(
    kind: Kind, wall: Clock, mono: Clock
) -> None:
    box = kind.open(wall, mono)
    put(box, wall, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=wall.now + 60, reason="HTTP 503")
    wall.now -= DAY
    assert box.cut_waits() == 1
    assert kind.consistent()
    wall.now += 59
    assert claim(box, limit=1, lease=30) == []
    wall.now += 1
    (again,) = claim(box, limit=1, lease=30)
    assert (again.id, again.next_attempt_at) == (item.id, wall.now)


def test_a_lease_taken_before_a_step_back_runs_out_on_time(
    kind: Kind, wall: Clock, mono: Clock
) -> None:
    box = kind.open(wall, mono)
    put(box, wall, ("a", "1", 1))
    (item,) = claim(box, limit=1, lease=120)
    wall.now -= DAY
    upkeep(box, wall, mono).tick()
    wall.now += 119
    assert claim(box, limit=1, lease=120) == []
    wall.now += 2
    (again,) = claim(box, limit=1, lease=120)
    assert again.id == item.id
    box.settle(Settle(again.id, "delivered"))
    assert kind.consistent()


def test_nothing_is_cut_when_the_clock_only_moves_on(kind: Kind, wall: Clock, mono: Clock) -> None:
    box = kind.open(wall, mono)
    put(box, wall, ("a", "1", 1), ("a", "1", 2))
    (item,) = claim(box, limit=1, lease=30)
    retry(box, item.id, at=wall.now + 60, reason="HTTP 503")
    wall.now += 5
    assert box.cut_waits() == 0


def test_a_step_forward_of_two_days_expires_nothing(kind: Kind, wall: Clock, mono: Clock) -> None:
    box = kind.open(wall, mono)
    put(box, wall, ("a", "1", 1), ("a", "1", 2), ("a", "1", 3))
    wall.now += 2 * DAY
    mono.now += 5
    upkeep(box, wall, mono).tick()
    assert [i.state for i in box.items()] == ["pending"] * 3
    mono.now += DAY
    assert [(e.uid, e.count) for e in box.expire(DAY)] == [("a", 3)]


def test_max_age_counts_the_time_the_daemon_ran_across_restarts(kind: Kind, wall: Clock) -> None:
    first_mono = Clock(1000.0)
    first = kind.open(wall, first_mono)
    put(first, wall, ("a", "1", 1))
    first_mono.now += 0.6 * DAY
    first.close()
    wall.now += 30 * DAY  # stopped a month: not counted
    again_mono = Clock(7.0)  # a new process, a new monotonic origin
    again = kind.open(wall, again_mono)
    assert again.expire(DAY) == []
    again_mono.now += 0.5 * DAY
    (expired,) = again.expire(DAY)
    assert expired.count == 1


def test_old_fingerprints_and_idle_windows_are_forgotten(box: Store, clock: Clock) -> None:
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


def test_housekeeping_forgets_what_only_grows(box: Store, clock: Clock) -> None:
    with box.batch() as batch:
        for n in range(50):
            batch.remember("p", f"fp{n}", clock.now)
    clock.now += 2 * 3600
    Housekeeping(box, Ingest(box, Registry(), clock=clock), max_age=3600).tick()
    with box.view() as view:
        assert not any(view.known("p", f"fp{n}") for n in range(50))


# Ingest needs nothing beyond the protocol: a dictionary will do.


class MemoryBatch:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.new_heads = 0  # no rooms here: every item is claimable at once

    def known(self, project: str, fingerprint: str) -> bool:
        return (project, fingerprint) in self.store.seen

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        self.store.seen.add((project, fingerprint))

    def window(self, key: str) -> Window:
        stored = self.store.windows.get(key)
        return stored.window if stored else Window()

    def save_window(self, update: WindowUpdate) -> None:
        old = self.store.windows.get(update.key)
        last_event = update.last_event or (old.last_event if old else None)
        self.store.windows[update.key] = StoredWindow(
            update.key, update.uid, update.window, last_event
        )
        self.store.due[update.key] = update.due_at

    def drop_window(self, key: str) -> None:
        self.store.windows.pop(key, None)
        self.store.due.pop(key, None)

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        self.new_heads += len(items)
        ids = []
        for new in items:
            item_id = len(self.store.queue) + 1
            self.store.queue.append(
                Item(
                    item_id,
                    new.uid,
                    new.room_id,
                    new.event,
                    new.count,
                    new.mentions,
                    now,
                    now,
                    0,
                    "pending",
                )
            )
            ids.append(item_id)
        return ids


class MemoryStore:
    """Just enough of the interface for ingest and flushing; no threads, no durability."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.windows: dict[str, StoredWindow] = {}
        self.due: dict[str, float | None] = {}
        self.queue: list[Item] = []

    @contextmanager
    def batch(self) -> Iterator[MemoryBatch]:
        yield MemoryBatch(self)

    @contextmanager
    def view(self) -> Iterator[MemoryBatch]:
        yield MemoryBatch(self)

    def due_windows(self, now: float) -> list[StoredWindow]:
        return [self.windows[k] for k, at in self.due.items() if at is not None and at <= now]


CONFIG = """\
version: 1
integrations:
  - uid: throttled
    project: shop
    name: throttled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - {id: 1, token: {env: HIPCHAT_T}}
        - {id: 2, token: {env: HIPCHAT_T}}
    actions:
      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}
    trigger: {event: trace, frequency: 1m}
"""


def test_ingest_and_flush_run_on_a_store_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(CONFIG)
    registry = Registry(resolver=lambda ref: "token")
    outcome = registry.apply(load_config_set([tmp_path]), "test")
    assert outcome.ok, outcome.diagnostics
    now = [1000.0]
    store = MemoryStore()
    ingest = Ingest(store, registry, clock=lambda: now[0])  # type: ignore[arg-type]
    event = {"project": "shop", "fingerprint": "fp", "timestamp": "2026-11-26T12:00:00Z"}

    paid = {**event, "attributes": {"team": "pay"}}

    assert ingest.submit([event]).notifications == 2
    assert ingest.submit([paid, event]).notifications == 0
    assert ingest.flush_due() == 0
    now[0] += 60
    assert ingest.flush_due() == 2
    assert [(i.room_id, i.count, i.mentions) for i in store.queue] == [
        ("1", 1, ()),
        ("2", 1, ()),
        ("1", 2, ("@pay",)),
        ("2", 2, ("@pay",)),
    ]
