"""Several daemons on one PostgreSQL: what adding daemons adds, what the shared
store costs against SQLite, and what a claim costs as the queue grows.

Run: python bench/cluster.py [--quick] [--only scale,store,claim] [--rounds 5]
                             [--workers 16] [--window 12] [--depths 10000,1000000]
                             [--store-workers 64] [--claims 300]

Every daemon is a real ``syncd run`` (a child process); the HipChat test server
runs in this process with no rate limits (``limits="none"``, what
``syncd hipchat-server --rate-limits none`` serves), so HipChat's own limit
(30 a minute per room) does not cap a figure: each figure is syncd's and
PostgreSQL's. Each run gets a fresh database on the server (``SYNCD_BENCH_POSTGRES``,
by default the machine's at 127.0.0.1:5432), dropped afterwards.

The machine is small and shared, so each figure comes with the load average
(1 minute) taken as it was measured, and the ratios are taken within rounds:
each round runs every variant once, in an order that turns from round to
round, and a goal is judged on the median of the rounds' ratios.

- **scale**: the HipChat test server answers every request 150 ms late; every
  event goes to 1,000 rooms (ten integrations of 100). 1, 2 and 3 daemons with
  the same ``--workers`` share one database; events are posted round-robin to
  them, enough that none runs dry. The rate is the notifications the server
  received over ``--window`` seconds once the posts are in and the daemons
  busy; each room's are checked to come once and in order. Goals: 2 daemons
  >= 1.8x one, 3 daemons >= 2.5x one. The peer is one daemon. ``--workers``
  is 16 here, not the daemon's default: the three daemons, PostgreSQL and the
  HipChat server share this machine's cores, and at the default three daemons
  would want more CPU than two cores have (the store part's CPU per
  notification says how much), so the figure would be the machine's, not
  what a daemon adds. The CPU the daemons and PostgreSQL used is printed
  beside each rate.
- **store**: no delay; one daemon (default ``--workers``) on PostgreSQL against
  the same daemon on its SQLite outbox (``synchronous=FULL``), 3,000
  notifications to 100 rooms, from the first POST to the last message, every
  one checked to arrive once and in order. Goal: PostgreSQL >= 60% of SQLite.
  Also: the daemon's CPU per notification, the CPU of the PostgreSQL backends
  serving it (from /proc: the server runs on this machine) per notification,
  and its transactions per notification (``pg_stat_database``, the daemon's
  whole life, housekeeping included). The peer is the SQLite daemon.
- **claim**: the store alone (no daemon): two databases holding 10,000 and
  1,000,000 waiting items over 1,000 rooms, each claim-and-settle (one
  item claimed, delivered, the next claimed: what a worker does) timed in
  this process. Goal: the deeper queue within 1.5x of the shallow one. The
  peer is the shallow queue.

``--quick`` runs one round of each, a shorter window and a 100,000-item queue
instead of 1,000,000 (about a minute; the full run about 8).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402
from host import machine  # noqa: E402

from syncd.delivery.dispatch import DispatchConfig  # noqa: E402
from syncd.store.contract import NewItem, Settle  # noqa: E402
from syncd.store.postgresql import PostgresOutbox  # noqa: E402
from syncd.testing import HipChatServer  # noqa: E402
from tests.support.configs import room_tokens, token_env, trace_config  # noqa: E402
from tests.support.events import numbered_events  # noqa: E402
from tests.support.postgres import with_database  # noqa: E402
from tests.support.processes import Proc, cpu_seconds, spawn, terminate, wait_listening  # noqa: E402

SERVER = os.environ.get("SYNCD_BENCH_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/postgres"
LATENCY = 0.15
SCALE_ROOMS = 1000
SCALE_DAEMONS = (1, 2, 3)
SCALE_GOALS = {2: 1.8, 3: 2.5}
WARM_UP = 2.0  # seconds between the last post and the window, for the daemons to fill up
STORE_ROOMS = 100
STORE_EVENTS = 30  # each to every room: 3,000 notifications
STORE_GOAL = 0.60
CLAIM_ROOMS = 1000
CLAIM_GOAL = 1.5
FILL_BATCH = 10_000
FIRST_ROOM = 7000
ROOMS_PER_INTEGRATION = 100


def write_config(directory: Path, endpoint: str, rooms: Sequence[str]) -> Path:
    """Every event of project ``shop`` to every room: an integration per 100 rooms
    (the most one may have), each ``trigger: {event: trace}``."""
    directory.mkdir()
    for first in range(0, len(rooms), ROOMS_PER_INTEGRATION):
        part = rooms[first : first + ROOMS_PER_INTEGRATION]
        text = trace_config(endpoint, part, uid=f"bench-{first}")
        (directory / f"bench-{first}.yaml").write_text(
            text.replace("name: every error", f"name: every error to rooms {part[0]}-{part[-1]}")
        )
    return directory


def load() -> float:
    return os.getloadavg()[0]


def ratio_verdict(value: float, goal: float, above: bool = True) -> str:
    met = value >= goal if above else value <= goal
    return "met" if met else "NOT met"


# a database of each run's own


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on the server, dropped afterwards with whatever is connected."""
    name = f"syncd_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(SERVER, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.OperationalError as exc:
        raise SystemExit(f"no PostgreSQL at {SERVER} (set SYNCD_BENCH_POSTGRES): {exc}") from None
    try:
        yield with_database(SERVER, name)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds used so far by each server process serving the database
    ``url`` names (this query's own left out)."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    found: dict[int, float] = {}
    for (pid,) in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except (OSError, LookupError, ValueError):
            continue  # gone meanwhile
    return found


def backend_cpu_since(url: str, before: dict[int, float]) -> float:
    now = backend_cpu(url)
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())


def transactions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def server_settings() -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        shown = []
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections"):
            row = conn.execute(f"SHOW {name}".encode()).fetchone()
            shown.append(f"{name}={row[0] if row else '?'}")
    where = SERVER.rpartition("@")[2].rpartition("/")[0]
    return f"PostgreSQL {version[0] if version else '?'} at {where} ({', '.join(shown)})"


# daemons


@dataclass(frozen=True)
class Fleet:
    """Daemons started on one config, each with its state dir."""

    procs: tuple[Proc, ...]

    def stop(self) -> None:
        for proc in self.procs:
            terminate(proc)

    def cpu(self) -> float:
        return sum(cpu_seconds(proc.popen.pid) for proc in self.procs)


def has_members(proc: Proc, count: int) -> bool:
    cluster = proc.status().get("cluster") or {}
    return len(cluster.get("members", [])) == count


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def fleet(
    count: int, config: Path, top: Path, tokens: dict[str, str], extra: Sequence[str]
) -> Iterator[Fleet]:
    started: list[Proc] = []
    try:
        for n in range(count):
            state = top / f"state-{n}"
            started.append(spawn(config, state, *extra, env=token_env(tokens)))
        for proc in started:
            wait_listening(proc)
        running = Fleet(tuple(started))
        if "--store" in extra:
            for proc in started:
                wait(partial(has_members, proc, count), 60, f"{count} members")
        yield running
    finally:
        for proc in started:
            terminate(proc)


def post(proc: Proc, events: list[dict[str, Any]]) -> None:
    answer = requests.post(proc.url + "/v1/events", json=events, timeout=120)
    if answer.status_code != 202:
        raise SystemExit(f"POST answered {answer.status_code}: {answer.text[:300]}")


def event_number(message: Any) -> int:
    return int(str(message.body["message"]).rsplit("n: ", 1)[1])


def check_rooms(hipchat: HipChatServer, rooms: Sequence[str], events: int | None) -> None:
    """Each room's messages, in the order received: each event once and in order
    (all of them when ``events`` is given; else a prefix)."""
    by_room: dict[str, list[int]] = {room: [] for room in rooms}
    for message in hipchat.messages:
        by_room[message.room].append(event_number(message))
    for room, got in by_room.items():
        expected = list(range(events if events is not None else len(got)))
        if got != expected:
            counts = Counter(got)
            twice = sorted(n for n, c in counts.items() if c > 1)
            raise SystemExit(f"room {room}: {len(got)} messages, twice {twice[:10]}, {got[:20]}")


# scale: 1, 2, 3 daemons, HipChat 150 ms late


@dataclass(frozen=True)
class ScaleRun:
    daemons: int
    delivered: int
    seconds: float
    daemon_cpu: float  # the daemons' CPU over the window, seconds
    pg_cpu: float  # the database's backends' CPU over the window
    load: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds


def scale_run(daemons: int, workers: int, window: float) -> ScaleRun:
    rooms = [str(FIRST_ROOM + r) for r in range(SCALE_ROOMS)]
    tokens = room_tokens(*rooms)
    # Enough for three daemons at their cap for the window, twice over.
    in_flight = daemons * per_server(workers)
    events = max(4, int(2 * in_flight / LATENCY * (window + WARM_UP) / SCALE_ROOMS) + 1)
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="syncd-bench-")))
        hipchat = stack.enter_context(HipChatServer(tokens, limits="none"))
        hipchat.misbehave(latency=LATENCY)
        config = write_config(top / "config", hipchat.url, rooms)
        extra = ("--store", url, "--workers", str(workers))
        running = stack.enter_context(fleet(daemons, config, top, tokens, extra))
        for n in range(events):
            post(running.procs[n % daemons], numbered_events(n, 1))
        opened = time.time() + WARM_UP
        time.sleep(WARM_UP)  # the daemons fill their sends; measured from here
        cpu, pg = running.cpu(), backend_cpu(url)
        time.sleep(window)  # the measured window itself
        closed = time.time()
        cpu, pg_cpu = running.cpu() - cpu, backend_cpu_since(url, pg)
        figure_load = load()
        times = [m.time for m in hipchat.messages]
        delivered = sum(1 for t in times if opened <= t < closed)
        if len(times) >= events * SCALE_ROOMS:
            raise SystemExit("the daemons ran dry before the window closed: post more events")
        check_rooms(hipchat, rooms, None)
    return ScaleRun(daemons, delivered, closed - opened, cpu, pg_cpu, figure_load)


def per_server(workers: int) -> int:
    """Sends one daemon may have in flight to one HipChat server, as its dispatcher
    counts them."""
    share: int = DispatchConfig(workers=workers).per_server
    return share


def turned(items: Sequence[Any], round_no: int) -> list[Any]:
    """The variants in the order of this round: turned by one each round."""
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]


def scale(args: argparse.Namespace) -> None:
    workers = args.workers
    print(
        f"\n== scale: 1, 2, 3 daemons on one PostgreSQL, HipChat answering {LATENCY * 1000:.0f} ms "
        f"late, {SCALE_ROOMS:,} rooms, --workers {workers} each"
    )
    share = per_server(workers)
    print(
        f"each daemon holds at most {share} sends in flight to one HipChat server: its cap "
        f"is {share / LATENCY:.0f}/s; no rate limits (HipChat's 30 a minute per room would "
        f"cap {SCALE_ROOMS:,} rooms at {SCALE_ROOMS / 2:.0f}/s)"
    )
    print(f"{args.rounds} rounds; window {args.window:g} s after a {WARM_UP:g} s warm-up")
    rounds: list[dict[int, ScaleRun]] = []
    for round_no in range(args.rounds):
        runs = {n: scale_run(n, workers, args.window) for n in turned(SCALE_DAEMONS, round_no)}
        rounds.append(runs)
        print(f"  round {round_no + 1}: " + "; ".join(scale_text(runs[n]) for n in SCALE_DAEMONS))
    print()
    print("daemons  notif/s (median)  of cap  vs one (median of rounds)  daemons CPU  PG CPU")
    for n in SCALE_DAEMONS:
        of_n = [r[n] for r in rounds]
        rate = statistics.median(run.rate for run in of_n)
        ratio = statistics.median(r[n].rate / r[1].rate for r in rounds)
        core = statistics.median((run.daemon_cpu / run.seconds) for run in of_n)
        pg = statistics.median((run.pg_cpu / run.seconds) for run in of_n)
        print(
            f"{n:7}  {rate:16.1f}  {rate / (n * share / LATENCY):6.0%}  {ratio:25.2f}x  "
            f"{core:9.0%} of a core  {pg:.0%}"
        )
    print(SCALE_LEGEND)
    for n, goal in SCALE_GOALS.items():
        ratio = statistics.median(r[n].rate / r[1].rate for r in rounds)
        print(
            f"goal {n} daemons >= {goal}x one daemon's rate: {ratio:.2f}x "
            f"(rounds: {', '.join(f'{r[n].rate / r[1].rate:.2f}' for r in rounds)}), "
            f"{ratio_verdict(ratio, goal)}"
        )


def scale_text(run: ScaleRun) -> str:
    return f"{run.daemons}: {run.rate:.1f}/s (load {run.load:.2f})"


SCALE_LEGEND = """
notif/s: messages the HipChat test server received in the window, per second (the
median round); of cap: over the daemons' sends in flight / 150 ms. vs one: the rate over
one daemon's of the same round, median of the rounds. daemons CPU, PG CPU: the CPU the
daemons, and the PostgreSQL backends serving the run's database, used in the window,
as a share of one core (the median round).
"""


# store: one daemon, PostgreSQL against SQLite, no delay


@dataclass(frozen=True)
class StoreRun:
    store: str
    notifications: int
    seconds: float
    daemon_cpu: float
    pg_cpu: float | None
    transactions: int | None
    load: float

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds


def store_run(kind: str, workers: int) -> StoreRun:
    rooms = [str(FIRST_ROOM + r) for r in range(STORE_ROOMS)]
    tokens = room_tokens(*rooms)
    total = STORE_EVENTS * STORE_ROOMS
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database()) if kind == "postgresql" else None
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="syncd-bench-")))
        hipchat = stack.enter_context(HipChatServer(tokens, limits="none"))
        config = write_config(top / "config", hipchat.url, rooms)
        extra = ("--workers", str(workers), *(("--store", url) if url else ()))
        running = stack.enter_context(fleet(1, config, top, tokens, extra))
        (proc,) = running.procs
        pg = backend_cpu(url) if url else {}
        cpu = running.cpu()
        started = time.time()
        for first in range(0, STORE_EVENTS, 10):
            post(proc, numbered_events(first, min(10, STORE_EVENTS - first)))
        hipchat.wait_for_messages(total, timeout=600)
        last = max(m.time for m in hipchat.messages)
        cpu = running.cpu() - cpu
        pg_cpu = backend_cpu_since(url, pg) if url else None
        figure_load = load()
        running.stop()
        check_rooms(hipchat, rooms, STORE_EVENTS)
        done = transactions(url) if url else None
    return StoreRun(kind, total, last - started, cpu, pg_cpu, done, figure_load)


def store(args: argparse.Namespace) -> None:
    print(
        f"\n== store: one daemon (--workers {args.store_workers}), no delay, {STORE_EVENTS} "
        f"events to {STORE_ROOMS} rooms = {STORE_EVENTS * STORE_ROOMS:,} notifications; PostgreSQL "
        "against the SQLite outbox (synchronous=FULL)"
    )
    rounds: list[dict[str, StoreRun]] = []
    for round_no in range(args.rounds):
        runs = {
            k: store_run(k, args.store_workers) for k in turned(("sqlite", "postgresql"), round_no)
        }
        rounds.append(runs)
        print(
            f"  round {round_no + 1}: "
            + "; ".join(
                f"{k} {runs[k].rate:.0f}/s (load {runs[k].load:.2f})"
                for k in ("sqlite", "postgresql")
            )
        )
    print()
    print(
        "store       notif/s (median)  daemon CPU ms/notif  1 core / daemon CPU  "
        "PG CPU ms/notif  PG xact/notif"
    )
    bound: dict[str, float] = {}
    for kind in ("sqlite", "postgresql"):
        of_kind = [r[kind] for r in rounds]
        rate = statistics.median(run.rate for run in of_kind)
        cpu = statistics.median(run.daemon_cpu / run.notifications * 1000 for run in of_kind)
        bound[kind] = 1000 / cpu
        pg = [r.pg_cpu / r.notifications * 1000 for r in of_kind if r.pg_cpu is not None]
        xact = [r.transactions / r.notifications for r in of_kind if r.transactions]
        print(
            f"{kind:10}  {rate:16.0f}  {cpu:19.2f}  {bound[kind]:17.0f}/s  "
            f"{statistics.median(pg) if pg else float('nan'):15.2f}  "
            f"{statistics.median(xact) if xact else float('nan'):13.2f}"
        )
    print(STORE_LEGEND.format(share=bound["postgresql"] / bound["sqlite"]))
    ratios = [r["postgresql"].rate / r["sqlite"].rate for r in rounds]
    ratio = statistics.median(ratios)
    print(
        f"\ngoal PostgreSQL >= {STORE_GOAL:.0%} of SQLite: {ratio:.0%} "
        f"(rounds: {', '.join(f'{x:.0%}' for x in ratios)}), {ratio_verdict(ratio, STORE_GOAL)}"
    )


STORE_LEGEND = """
notif/s: first POST to the last message, every one checked to arrive once and in order.
daemon CPU: the daemon process's CPU (user + system) per notification; 1 core / daemon
CPU: the most one daemon could deliver with a core to itself and the database elsewhere
(PostgreSQL's share of that: {share:.0%}). PG CPU: the CPU of the PostgreSQL backends
serving the run's database, per notification (this machine's server: it shares the two
cores with the daemon and the HipChat test server). PG xact: transactions the database
counted over the daemon's life (start, housekeeping and stop included) per notification."""


# claim: the store alone, 10,000 against 1,000,000 waiting items


def fill(url: str, depth: int) -> PostgresOutbox:
    """An outbox holding ``depth`` pending items over the rooms, all due."""
    box = PostgresOutbox(url)
    event = numbered_events(0, 1)[0]  # one event for all: each is stored once
    for first in range(0, depth, FILL_BATCH):
        items = [
            NewItem("bench", str(FIRST_ROOM + n % CLAIM_ROOMS), event)
            for n in range(first, min(depth, first + FILL_BATCH))
        ]
        with box.batch() as batch:
            batch.enqueue(items, time.time())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by then
    return box


@dataclass(frozen=True)
class Timed:
    """One round of claim-and-settles on one queue, per claim-and-settle."""

    seconds: float  # wall time, from the call to its return
    client_cpu: float  # this thread's CPU (syncd's store code and psycopg)
    server_cpu: float  # the database's backends' CPU
    load: float


class Claimer:
    """A worker's loop on one store: settle the last item delivered, claim the next."""

    def __init__(self, box: PostgresOutbox, url: str) -> None:
        self.box = box
        self.url = url
        self.settled: Settle | None = None

    def time(self, claims: int) -> Timed:
        server = backend_cpu(self.url)
        client = time.thread_time()
        started = time.perf_counter()
        for _ in range(claims):
            (item,) = self.box.settle_and_claim(self.settled, 1, 60.0)
            self.settled = Settle(item.id, "delivered")
        seconds = time.perf_counter() - started
        client = time.thread_time() - client
        server_cpu = backend_cpu_since(self.url, server)
        return Timed(seconds / claims, client / claims, server_cpu / claims, load())


def claim(args: argparse.Namespace) -> None:
    depths = [int(d) for d in args.depths.split(",")]
    print(
        f"\n== claim: the store alone, {' and '.join(f'{d:,}' for d in depths)} waiting items "
        f"over {CLAIM_ROOMS:,} rooms; one claim-and-settle at a time, as a worker does "
        "(one statement: one transaction, one round trip on loopback); "
        f"{args.claim_rounds} rounds of {args.claims} per queue"
    )
    with ExitStack() as stack:
        claimers = []
        for depth in depths:
            url = stack.enter_context(fresh_database())
            filled = time.monotonic()
            box = fill(url, depth)
            stack.callback(box.close)
            print(f"  {depth:,} items queued in {time.monotonic() - filled:.1f} s")
            claimers.append(Claimer(box, url))
        for claimer in claimers:
            claimer.time(50)  # warm: connections, caches
        rounds: list[list[Timed]] = []
        for round_no in range(args.claim_rounds):
            order = turned(list(range(len(depths))), round_no)
            timed = {i: claimers[i].time(args.claims) for i in order}
            rounds.append([timed[i] for i in range(len(depths))])
            print(
                f"  round {round_no + 1}: "
                + "; ".join(
                    f"{d:,}: {t.seconds * 1000:.3f} ms (load {t.load:.2f})"
                    for d, t in zip(depths, rounds[-1], strict=True)
                )
            )
    print()
    print("     items  ms per claim-and-settle  vs first  client CPU ms  PostgreSQL CPU ms")
    for i, depth in enumerate(depths):
        per = statistics.median(r[i].seconds for r in rounds) * 1000
        ratio = statistics.median(r[i].seconds / r[0].seconds for r in rounds)
        client = statistics.median(r[i].client_cpu for r in rounds) * 1000
        server = statistics.median(r[i].server_cpu for r in rounds) * 1000
        print(f"{depth:>10,}  {per:23.3f}  {ratio:7.2f}x  {client:13.3f}  {server:17.3f}")
    print(CLAIM_LEGEND)
    ratio = statistics.median(r[-1].seconds / r[0].seconds for r in rounds)
    print(
        f"\ngoal claim at {depths[-1]:,} within {CLAIM_GOAL}x of {depths[0]:,}: {ratio:.2f}x "
        f"(rounds: {', '.join(f'{r[-1].seconds / r[0].seconds:.2f}' for r in rounds)}), "
        f"{ratio_verdict(ratio, CLAIM_GOAL, above=False)}"
    )


CLAIM_LEGEND = """
ms per claim-and-settle: wall time of one call (settle the last item delivered and claim
the next, in one transaction), median of the rounds; vs first: over the first queue's in
the same round, median of the rounds. client CPU: this thread's CPU per call (syncd's
store code and psycopg); PostgreSQL CPU: the backend's per call (from /proc)."""


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {
    "scale": scale,
    "store": store,
    "claim": claim,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run: scale,store,claim")
    parser.add_argument("--rounds", type=int, help="rounds of scale and store (5; quick 1)")
    parser.add_argument("--workers", type=int, default=16, help="scale: --workers per daemon")
    parser.add_argument(
        "--store-workers", type=int, default=64, help="store: --workers of the daemon"
    )
    parser.add_argument("--window", type=float, help="scale: seconds measured (12; quick 6)")
    parser.add_argument("--depths", help="claim: queue depths (10000,1000000; quick 10000,100000)")
    parser.add_argument("--claims", type=int, default=300, help="claim: claims timed per round")
    args = parser.parse_args()
    parts = args.only.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {', '.join(PARTS)}")
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.window = args.window or (6.0 if args.quick else 12.0)
    args.depths = args.depths or ("10000,100000" if args.quick else "10000,1000000")
    args.claim_rounds = 3 if args.quick else 8
    print(f"machine: {machine()}")
    print(server_settings())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for part in parts:
        PARTS[part](args)


if __name__ == "__main__":
    main()
