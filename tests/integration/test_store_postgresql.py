"""Several daemons on one PostgreSQL outbox: what the contract suite cannot show
with one store at a time.

Two store objects on one database are two daemons; their clocks are one
injected clock, so a lease runs out when a test says so. Each test has a
database of its own (see ``tests.support.postgres``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from syncd.delivery.housekeeping import Housekeeping
from syncd.events.ingest import Ingest
from syncd.store import pgschema, postgresql
from syncd.store.contract import (
    NewItem,
    Settle,
    StoreError,
    StoreUnavailable,
    StoreUnusable,
)
from syncd.store.postgresql import PgBatch, PostgresOutbox, application_name
from tests.integration.test_store_interface import (
    Clock,
    group_registry,
    throttled_registry,
)
from tests.support import postgres
from tests.support.concurrency import at_once
from tests.support.events import event
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.stores import ack, claim
from tests.support.waiting import wait_for

Daemons = Callable[..., PostgresOutbox]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def daemon(postgres_url: str, clock: Clock) -> Iterator[Daemons]:  # noqa: F811
    """Opens a "daemon" (a store) on the test's database; all closed at the end."""
    opened: list[PostgresOutbox] = []

    def open_one(**options: Any) -> PostgresOutbox:
        options = {"clock": clock, "monotonic": clock, "connections": 3, **options}
        store = PostgresOutbox(postgres_url, **options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def put(store: PostgresOutbox, clock: Clock, *items: tuple[str, str, Any]) -> list[int]:
    with store.batch() as batch:
        return batch.enqueue([NewItem(u, r, {"n": n}) for u, r, n in items], clock())


@contextmanager
def traced(protocol: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Connections the stores open meanwhile write the messages they send and
    get to ``protocol``, one a line: who sent it (F the client, B the server),
    its length, its kind."""
    configure = postgresql._configure

    with protocol.open("w") as written:

        def tracing(conn: psycopg.Connection[Any]) -> None:
            configure(conn)
            conn.pgconn.trace(written.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        monkeypatch.setattr(postgresql, "_configure", tracing)
        yield


# Claims: one daemon at a time per room, in order.


def test_two_daemons_claiming_at_once_never_hold_one_room_twice(
    daemon: Daemons, clock: Clock
) -> None:
    first, second = daemon(), daemon()
    rooms = [str(r) for r in range(40)]
    put(first, clock, *[("a", room, k) for k in range(5) for room in rooms])
    guard = threading.Lock()
    in_flight: set[str] = set()
    claims: list[tuple[str, int]] = []  # (room, k) in the order the claims came back
    twice: list[str] = []

    def work(store: PostgresOutbox) -> None:
        """Claim one head at a time and deliver it; a room claimed while this test
        still has it in flight is a room held twice."""
        done: Settle | None = None
        holding: str | None = None
        idle = 0
        while idle < 3:
            with guard:
                in_flight.discard(holding or "")  # from here on its settle may commit
            items = store.settle_and_claim(done, 1, 30)
            done, holding = None, None
            if not items:
                idle += 1
                continue
            idle = 0
            (item,) = items
            with guard:
                if item.room_id in in_flight:
                    twice.append(item.room_id)
                in_flight.add(item.room_id)
                claims.append((item.room_id, item.event["n"]))
            done, holding = Settle(item.id, "delivered"), item.room_id

    at_once([lambda s=s: work(s) for s in (first, second) for _ in range(4)])
    assert twice == []
    assert sorted(claims) == sorted((room, k) for room in rooms for k in range(5))
    for room in rooms:
        assert [k for r, k in claims if r == room] == list(range(5)), room
    assert {(i.state, i.attempts) for i in first.items()} == {("delivered", 1)}


# How the server cuts a lot off as its second claim is written: it ends the
# connection, or it refuses the statement.
CUTS = {
    "ended": "PERFORM pg_terminate_backend(pg_backend_pid())",
    "refused": "RAISE EXCEPTION 'refused'",
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_lot_cut_off_midway_records_nothing_and_hands_every_call_the_error(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
    cut: str,
) -> None:
    """A lot's calls are one transaction: when the server ends the connection or
    refuses a statement between two of them, what the first wrote is rolled back
    with the rest, so no claim is left in flight that no worker knows of (its
    room would wait out the lease with no one sending), and every call carries
    the error, to be tried again."""
    store = daemon(connections=1)
    put(store, clock, ("a", "1", 1), ("a", "2", 2), ("a", "3", 3))
    (first,) = claim(store, limit=1, lease=30)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION cut_off() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {CUTS[cut]}; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE TRIGGER cut_off BEFORE UPDATE ON outbox FOR EACH ROW "
            f"WHEN (OLD.id = {first.id + 2} AND NEW.state = 'inflight') "
            "EXECUTE FUNCTION cut_off()"
        )
    lot = store.settle_and_claim_all([(Settle(first.id, "delivered"), 1), (None, 1)], 30)
    assert all(isinstance(error, StoreError) for error in lot), lot
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP TRIGGER cut_off ON outbox")
    states: list[dict[int, str]] = []
    wait_for(lambda: _read_states(store, states), timeout=10, what="the store reachable again")
    assert states[-1] == {first.id: "inflight", first.id + 1: "pending", first.id + 2: "pending"}
    # Tried again, the lot does what it would have done.
    again = store.settle_and_claim_all([(Settle(first.id, "delivered"), 1), (None, 1)], 30)
    assert [[item.id for item in items] for items in again] == [[first.id + 1], [first.id + 2]]


def test_a_lot_of_calls_is_one_transaction_and_one_round_trip(
    daemon: Daemons, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A commit is most of what the server spends on a call: the calls of a lot
    (the workers' settles and next claims handed in together) share one, and
    their statements go in one round trip: all of them before the first Sync
    (which commits them), no BEGIN or COMMIT of its own."""
    protocol = tmp_path / "protocol"
    with traced(protocol, monkeypatch):
        store = daemon(connections=1)
        put(store, clock, *[("a", room, n) for n in range(2) for room in "1234"])
        held = claim(store, limit=3, lease=30)
        before = protocol.stat().st_size
        lot = store.settle_and_claim_all(
            [(Settle(item.id, "delivered"), 1) for item in held] + [(None, 1)], 30
        )
        sent = [line.split("\t") for line in protocol.read_bytes()[before:].decode().splitlines()]
    kinds = [fields[2] for fields in sent if fields[0] == "F"]
    before_sync = kinds[: kinds.index("Sync")] if "Sync" in kinds else kinds
    transaction_blocks = [
        f for f in sent if f[0] == "F" and ("BEGIN" in f[-1] or "COMMIT" in f[-1])
    ]
    # The lock of the settled rooms' heads, then the four calls.
    assert (before_sync.count("Execute"), kinds.count("Execute"), transaction_blocks) == (5, 5, [])
    assert sorted(len(items) for items in lot if isinstance(items, list)) == [1, 1, 1, 1]


def test_a_lot_takes_its_rooms_in_the_order_batches_do(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    """Every write takes the heads of the rooms it moves in one order (uid, room),
    so two writes on the same rooms queue instead of deadlocking. A lot settles
    its calls' rooms in whatever order its workers asked: here it settles room 2
    and then room 1 while a batch (played by the test) holds room 1's head and
    then asks for room 2's. Taken in the workers' order, each waits for the
    other, and the server breaks the deadlock by failing one: events refused,
    or settles put off."""
    store = daemon(connections=2)
    put(store, clock, ("a", "1", 1), ("a", "2", 2))
    held = {item.room_id: item for item in claim(store, limit=2, lease=30)}
    lot: list[Any] = []
    with psycopg.connect(postgres_url) as batch:
        batch.execute("SET lock_timeout = '5s'")
        batch.execute("SELECT 1 FROM heads WHERE room_id = '1' FOR UPDATE")
        settling = threading.Thread(
            target=lambda: lot.extend(
                store.settle_and_claim_all(
                    [
                        (Settle(held["2"].id, "delivered"), 0),
                        (Settle(held["1"].id, "delivered"), 0),
                    ],
                    30,
                )
            )
        )
        settling.start()
        wait_for(lambda: lock_waits(postgres_url) > 0, what="the lot to wait for room 1")
        batch.execute("SELECT 1 FROM heads WHERE room_id = '2' FOR UPDATE")
        batch.commit()
    settling.join(10)
    assert lot == [[], []]
    assert {item.room_id: item.state for item in store.items()} == {
        "1": "delivered",
        "2": "delivered",
    }


def _read_states(store: PostgresOutbox, into: list[dict[int, str]]) -> bool:
    try:
        into.append({item.id: item.state for item in store.items()})
    except StoreError:
        return False
    return True


def test_a_workers_settle_and_next_claim_cost_one_statement_and_one_round_trip(
    daemon: Daemons, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the daemon spends per notification is mostly what it spends per
    statement and per round trip to the server: a worker's call (its last
    item settled, the next claimed) is one of each, whatever the settle."""
    protocol = tmp_path / "protocol"
    with traced(protocol, monkeypatch):
        store = daemon(connections=1)
        put(store, clock, *[("a", room, n) for n in range(2) for room in "123"])
        (first,) = claim(store, limit=1, lease=30)
        ends = [
            Settle(first.id, "delivered"),
            Settle(first.id + 1, "pending", "busy", clock.now + 60, attempted=False),
            Settle(first.id + 2, "dead", "gone", room_rest_until=clock.now + 40),
        ]
        for end in ends:
            before = protocol.stat().st_size
            (claimed,) = store.settle_and_claim(end, 1, 30)
            sent = protocol.read_bytes()[before:].decode().splitlines()
            # Each line: who sent it (F the client, B the server), its length, its
            # kind. The client's are written as sent; a Sync (or a simple Query)
            # asks for the server's answer: a round trip.
            sent_kinds = [line.split("\t")[2] for line in sent if line.startswith("F\t")]
            statements = [k for k in sent_kinds if k in ("Execute", "Query")]
            round_trips = [k for k in sent_kinds if k in ("Sync", "Query")]
            assert (len(statements), len(round_trips)) == (1, 1), (end.state, sent)
            assert claimed.id == end.item_id + 1
    states = {i.id: (i.state, i.attempts) for i in store.items()}
    assert states[first.id] == ("delivered", 1)
    assert states[first.id + 1] == ("pending", 0)
    assert states[first.id + 2] == ("dead", 1)


def test_a_rooms_items_from_two_daemons_are_delivered_in_the_order_their_batches_committed(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids come from a sequence, drawn before the commit. Here one batch has drawn
    its ids and stalls before it extends the room (a descheduled thread) while
    another daemon's batch for the same room runs: it must wait for the first,
    or it commits first with the later ids, its first item becomes the head,
    and the first batch's items, older by id, go out between its two."""
    first, second = daemon(), daemon()
    extend = PgBatch._extend_rooms
    stalled: list[threading.Thread] = []

    def stall(batch: PgBatch, *args: Any) -> Any:
        if not stalled:
            later = (("a", "1", "y1"), ("a", "1", "y2"))
            other = threading.Thread(target=put, args=(second, clock, *later))
            stalled.append(other)
            other.start()
            wait_for(
                lambda: not other.is_alive() or lock_waits(postgres_url) > 0,
                what="the other batch to commit or to wait",
            )
        return extend(batch, *args)

    monkeypatch.setattr(PgBatch, "_extend_rooms", stall)
    put(first, clock, ("a", "1", "x1"), ("a", "1", "x2"))
    stalled[0].join(10)
    monkeypatch.undo()
    sent = []
    while items := claim(first, limit=1, lease=30):
        sent.append(items[0].event["n"])
        ack(first, items[0].id)
    assert sent == ["x1", "x2", "y1", "y2"]


def test_a_settle_waits_for_items_being_queued_behind_it_instead_of_dropping_the_head(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    """The head is the last item of its room in flight; items for the room are
    being committed on another daemon. Dropping the head then would leave them
    with none: never claimed."""
    sending, taking = daemon(), daemon()
    put(sending, clock, ("a", "1", 1))
    (item,) = claim(sending, limit=1, lease=30)
    settled = threading.Thread(target=ack, args=(sending, item.id))
    with taking.batch() as batch:
        batch.enqueue([NewItem("a", "1", {"n": 2})], clock())
        settled.start()
        wait_for(
            lambda: not settled.is_alive() or lock_waits(postgres_url) > 0,
            what="the settle to end or to wait",
        )
    settled.join(10)
    assert postgres.heads_consistent(postgres_url)
    (behind,) = claim(taking, limit=1, lease=30)
    assert behind.event["n"] == 2


def lock_waits(url: str) -> int:
    rows = postgres.execute(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'",
    )
    return int(rows[0][0])


@pytest.mark.slow
def test_a_claim_of_the_due_heads_reads_the_items_table_by_key_only(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    """Finding the due heads costs the same with 10 items waiting or a million: the
    heads (one per room) are read by index, and their items by primary key.

    A worker's call runs its statements inside the database, the due heads
    planned for their values at each call, the rest with plans kept for any
    values once a few calls were made; so each statement is explained as it
    ran (``auto_explain``), in a call made after those few."""
    store = daemon()
    with store.batch() as batch:
        batch.enqueue(
            [NewItem("a", str(room), {"n": k}) for k in range(20) for room in range(5000)],
            clock(),
        )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        # The control: a question the items table has no index for is a full scan at
        # this size, so the plans below are the indexes' doing, not the table's size.
        assert scans(conn, "SELECT * FROM outbox WHERE next_attempt_at <= 2000 LIMIT 10") == {
            ("Seq Scan", "outbox")
        }
        ran = explained_calls(conn, clock, calls=8)
        next_due = scans(
            conn,
            "SELECT due FROM heads WHERE NOT (uid = ANY(%s::text[])) ORDER BY due LIMIT 1",
            ([],),
        )
        counts = scans(
            conn,
            "SELECT uid, sum(n)::bigint FROM tallies WHERE kind = 'open' AND n > 0 GROUP BY uid",
        )
    due_heads = [nodes for text, nodes in ran if text.strip() == pgschema.DUE_HEADS]
    assert len(due_heads) == 1, ran
    assert ("Index Scan", "heads_due") in due_heads[0], due_heads
    assert not {node for node in due_heads[0] if node[0] == "Sort"}, due_heads
    read = set().union(*(nodes for _, nodes in ran))
    assert ("Index Scan", "outbox_pkey") in read, ran
    assert not {node for node in read if node[0] == "Seq Scan"} & {
        ("Seq Scan", "outbox"),
        ("Seq Scan", "heads"),
        ("Seq Scan", "events"),
    }, ran
    assert ("Index Scan", "heads_due") in next_due, next_due
    assert not {node for node in counts if node[1] == "outbox"}, counts


def explained_calls(
    conn: psycopg.Connection[Any], clock: Clock, calls: int
) -> list[tuple[str, set[tuple[str, str]]]]:
    """The statements the last of ``calls`` worker's calls ran (each call settles
    the item the one before claimed), each with how its plan read each table."""
    notices: list[str] = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting in ("min_duration = 0", "nested_statements = on", "level = notice"):
        conn.execute(f"SET auto_explain.log_{setting}".encode())
    conn.execute("SET auto_explain.log_format = json")
    held: tuple[int, int] | None = None
    for _ in range(calls):
        notices.clear()
        settled, generation = held or (None, None)
        row = conn.execute(
            "SELECT lease, id FROM syncd_settle_and_claim(%s, %s, 'delivered', NULL, NULL, 0, "
            "NULL, 'worker', %s, %s, '{}', 1)",
            (settled, generation, clock(), clock() + 30),
        ).fetchone()
        assert row is not None
        held = (row[1], row[0])
    conn.execute("SET auto_explain.log_min_duration = -1")
    ran = []
    for notice in notices:
        explained = json.loads(notice[notice.index("{") :])
        ran.append((explained["Query Text"], nodes(explained["Plan"])))
    return ran


def scans(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> set[tuple[str, str]]:
    """How a statement's plan reads each table: (node type, table or index)."""
    (plan,) = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}".encode(), params).fetchone()  # type: ignore[misc]
    return {node for node in nodes(plan[0]["Plan"]) if node[1]}


def nodes(plan: dict[str, Any]) -> set[tuple[str, str]]:
    """A plan's nodes: (node type, the table or index it reads, or "")."""
    found: set[tuple[str, str]] = set()
    todo = [plan]
    while todo:
        node = todo.pop()
        found.add((node["Node Type"], node.get("Relation Name", "")))
        if "Index Name" in node:
            found.add((node["Node Type"], node["Index Name"]))
        todo.extend(node.get("Plans", []))
    return found


# Fenced settles, and recovery by lease expiry only.


@pytest.mark.parametrize("late", ["delivered", "dead", "cancelled", "pending"])
def test_a_daemon_whose_lease_ran_out_cannot_settle_the_item_another_now_holds(
    daemon: Daemons, clock: Clock, late: str
) -> None:
    stalled, other = daemon(), daemon()
    put(stalled, clock, ("a", "1", 1), ("a", "1", 2))
    (item,) = claim(stalled, limit=1, lease=30)
    clock.now += 31  # stalled: its lease ran out
    (again,) = claim(other, limit=1, lease=30)
    assert (again.id, again.attempts) == (item.id, 2)
    retry_at = clock.now + 60 if late == "pending" else None
    assert stalled.settle_and_claim(Settle(item.id, late, "late", retry_at), 1, 30) == []  # type: ignore[arg-type]
    now = other.get(item.id)
    assert now is not None and (now.state, now.attempts, now.reason) == ("inflight", 2, None)
    assert claim(other, limit=1, lease=30) == []  # the room is still held: item 2 waits
    ack(other, item.id)
    (second,) = claim(other, limit=1, lease=30)
    assert second.event["n"] == 2
    settled = other.get(item.id)
    assert settled is not None and settled.state == "delivered"


def test_a_daemon_whose_lease_ran_out_still_settles_an_item_no_one_took_since(
    daemon: Daemons, clock: Clock
) -> None:
    slow, other = daemon(), daemon()
    put(slow, clock, ("a", "1", 1))
    (item,) = claim(slow, limit=1, lease=30)
    clock.now += 31
    ack(slow, item.id)
    done = other.get(item.id)
    assert done is not None and done.state == "delivered"
    assert claim(other, limit=1, lease=30) == []


def test_a_daemon_starting_takes_nothing_a_live_daemon_holds(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    live = daemon()
    put(live, clock, ("a", "1", 1), ("a", "2", 2), ("b", "1", 3))
    held = claim(live, limit=2, lease=300)
    starting = daemon()
    assert starting.recover() == 0
    (other,) = claim(starting, limit=10, lease=300)
    assert other.event["n"] == 3
    ack(starting, other.id)
    assert {(i.id, i.state) for i in starting.items("inflight")} >= {
        (h.id, "inflight") for h in held
    }
    clock.now += 301  # the live daemon died: its leases run out
    assert starting.recover() == 2
    assert sorted(i.id for i in claim(starting, limit=10, lease=30)) == sorted(h.id for h in held)
    assert postgres.heads_consistent(postgres_url)


def test_a_daemon_that_stops_hands_its_rooms_on_at_once(daemon: Daemons, clock: Clock) -> None:
    stopping, other = daemon(), daemon()
    put(stopping, clock, ("a", "1", 1))
    (item,) = claim(stopping, limit=1, lease=300)
    stopping.close()
    (again,) = claim(other, limit=1, lease=30)
    assert (again.id, again.attempts) == (item.id, 2)


# Ingest: each fingerprint and each window decided once across daemons.


def test_the_same_new_fingerprint_on_two_daemons_at_once_is_queued_once(
    daemon: Daemons, clock: Clock
) -> None:
    registry = group_registry()
    stores = [daemon(), daemon()]
    ingests = [Ingest(store, registry, clock=clock) for store in stores for _ in range(3)]
    for round_ in range(15):
        new = event("shop", f"fp{round_}")
        queued = at_once([lambda i=i, e=new: i.submit([e]).notifications for i in ingests])
        assert sorted(queued) == [0] * (len(ingests) - 1) + [1], round_


def test_a_frequency_window_sends_one_digest_whichever_daemons_took_its_events(
    daemon: Daemons, clock: Clock
) -> None:
    registry = throttled_registry()
    stores = [daemon(), daemon()]
    ingests = [Ingest(store, registry, clock=clock) for store in stores]
    assert ingests[0].submit([event("shop", "f")]).notifications == 1
    clock.now += 10
    takers = [Ingest(store, registry, clock=clock) for store in stores for _ in range(10)]
    calls = [lambda i=i: i.submit([event("shop", "f")]).notifications for i in takers]
    assert at_once(calls) == [0] * 20  # all held in the window
    clock.now += 300
    chores = [
        Housekeeping(s, i, max_age=86_400, clock=clock, monotonic=clock)
        for s, i in zip(stores, ingests, strict=True)
    ]
    at_once([c.tick for c in chores])
    at_once([c.tick for c in chores])
    digests = [i for i in stores[0].items() if i.count > 1]
    assert [d.count for d in digests] == [20]
    assert len(stores[0].items()) == 2


def test_a_batch_that_failed_on_one_daemon_left_nothing_the_other_sees(
    daemon: Daemons, clock: Clock
) -> None:
    first, second = daemon(), daemon()
    with pytest.raises(RuntimeError), first.batch() as batch:
        batch.remember("p", "fp", clock.now)
        batch.enqueue([NewItem("a", "1", {})], clock.now)
        raise RuntimeError("the request was refused half-way")
    with second.view() as view:
        assert not view.known("p", "fp")
    assert second.items() == [] and second.depth() == {}


# Chores: one daemon at a time, moving on when it dies.


def expirable(store: PostgresOutbox, clock: Clock, room: str) -> None:
    put(store, clock, ("a", room, 1))
    clock.now += 100


def test_each_chore_runs_on_one_daemon_and_moves_on_when_that_daemon_dies(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    first, second = daemon(), daemon()
    expirable(first, clock, "1")
    assert [e.room_id for e in first.expire(50)] == ["1"]
    expirable(first, clock, "2")
    assert second.expire(50) == []  # the first daemon runs expiry
    assert second.due_windows(clock.now + 1e6) == []
    assert "expire" in first.chores_held() and "expire" not in second.chores_held()
    killed = postgres.terminate(postgres_url, application_name(first.owner))
    assert killed >= 1
    assert [e.room_id for e in retried(lambda: second.expire(50))] == ["2"]
    retried(lambda: expirable(first, clock, "3"))
    assert retried(lambda: first.expire(50)) == []  # back, it finds the chore taken
    assert [e.room_id for e in second.expire(50)] == ["3"]


def test_a_stopped_daemon_leaves_its_chores_to_the_others(daemon: Daemons, clock: Clock) -> None:
    first, second = daemon(), daemon()
    assert first.expire(50) == []
    expirable(first, clock, "1")
    assert second.expire(50) == []
    first.close()
    # The locks go as the server ends the first daemon's session, which may be a
    # moment after its close returned: the other daemon's next try takes them.
    expired: list[Any] = []

    def taken_over() -> bool:
        expired.extend(second.expire(50))
        return bool(expired)

    wait_for(taken_over, what="the chore taken over")
    assert [e.room_id for e in expired] == ["1"]


def retried(call: Callable[[], Any], within: float = 10.0) -> Any:
    """A call made again after the server dropped the connection it used: calls fail
    at once for a short hold, then a fresh connection is taken."""
    answer: list[Any] = []

    def once() -> bool:
        try:
            answer.append(call())
        except StoreUnavailable:
            return False
        return True

    wait_for(once, timeout=within, what="the call on a fresh connection")
    return answer[-1]


# The running clock, shared.


def test_the_running_clock_goes_on_from_the_longest_running_daemon(
    daemon: Daemons, clock: Clock
) -> None:
    """--max-age counts the time the store was open: with two daemons, the time at
    least one of them was. A daemon that started later adopts the longer count
    when it saves its own, never the other way round."""
    old_mono, new_mono = Clock(0.0), Clock(0.0)
    old = daemon(monotonic=old_mono)
    old_mono.now += 5000
    assert old.probe() is None
    new = daemon(monotonic=new_mono)
    assert new.running() == pytest.approx(5000)
    old_mono.now += 1000
    assert old.probe() is None
    new_mono.now += 10
    assert new.probe() is None
    assert new.running() == pytest.approx(6000)
    assert old.probe() is None
    assert old.running() == pytest.approx(6000)


# Schema versions: migrated once, a newer one refused.


def test_daemons_starting_together_migrate_once(postgres_url: str) -> None:  # noqa: F811
    opened = at_once([lambda: PostgresOutbox(postgres_url, connections=1) for _ in range(4)])
    for store in opened:
        store.close()
    rows = postgres.execute(postgres_url, "SELECT version FROM syncd_schema ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in pgschema.MIGRATIONS]


def test_a_schema_newer_than_this_syncd_knows_refuses_to_start(postgres_url: str) -> None:  # noqa: F811
    PostgresOutbox(postgres_url, connections=1).close()
    newer = pgschema.LATEST + 1
    postgres.execute(
        postgres_url,
        "INSERT INTO syncd_schema (version, what, applied_by) VALUES (%s, 'later', 'test')",
        (newer,),
    )
    with pytest.raises(StoreUnusable) as refused:
        PostgresOutbox(postgres_url, connections=1)
    assert f"syncd schema version {newer}, newer than the {pgschema.LATEST}" in str(refused.value)


def test_a_store_that_may_not_migrate_refuses_a_schema_behind(postgres_url: str) -> None:  # noqa: F811
    with pytest.raises(StoreUnusable, match="run syncd store migrate"):
        PostgresOutbox(postgres_url, connections=1, migrate=False)
    PostgresOutbox(postgres_url, connections=1).close()
    PostgresOutbox(postgres_url, connections=1, migrate=False).close()


# Errors: the contract's, never psycopg's.


def test_no_server_is_unavailable_and_the_password_is_not_told() -> None:
    postgres.require_server()
    with pytest.raises(StoreUnavailable) as error:
        PostgresOutbox("postgresql://syncd:hunter2@127.0.0.1:1/syncd", connections=1)
    assert "hunter2" not in str(error.value)


def test_a_database_that_does_not_exist_is_told_as_the_servers_words() -> None:
    url = postgres.with_database(postgres.require_server(), "syncd_no_such_database")
    with pytest.raises(StoreError, match='database "syncd_no_such_database" does not exist'):
        PostgresOutbox(url, connections=1)


def test_connections_the_server_ended_fail_a_call_then_are_replaced(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
    clock: Clock,
) -> None:
    store = daemon()
    put(store, clock, ("a", "1", 1))
    postgres.terminate(postgres_url)
    outcomes: list[Any] = []

    def replaced() -> bool:
        try:
            outcomes.append(store.depth())
        except StoreError as exc:  # the contract's error, never psycopg's
            outcomes.append(type(exc))
        return bool(outcomes[-1] == {"a": 1})

    wait_for(replaced, timeout=10, what="a fresh connection once the short hold is over")
    assert outcomes[0] is StoreUnavailable, outcomes
    assert all(o in (StoreUnavailable, {"a": 1}) for o in outcomes), outcomes
    assert outcomes[-1] == {"a": 1}


def test_a_table_gone_from_under_the_store_is_unusable(
    postgres_url: str,  # noqa: F811
    daemon: Daemons,
) -> None:
    store = daemon()
    postgres.execute(postgres_url, "DROP TABLE tallies")
    with pytest.raises(StoreUnusable, match="tallies"):
        store.depth()


def test_every_connection_says_which_daemon_it_is(postgres_url: str, daemon: Daemons) -> None:  # noqa: F811
    store = daemon(owner="host-a:42:cafe")
    store.expire(60)
    names = postgres.execute(
        postgres_url,
        "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()",
    )
    assert names == [("syncd host-a:42:cafe",)]
    assert application_name("h" * 80 + ":42:cafe").endswith("h:42:cafe")
    assert len(application_name("h" * 80 + ":42:cafe").encode()) <= 63
