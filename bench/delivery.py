"""End-to-end delivery throughput: ingest -> rules -> outbox -> HipChat -> ack.

Run: python bench/delivery.py [--events 5000] [--rooms 8] [--integrations 4] [--repeat 3]
                              [--quick] [--one-process] [--profile]
                              [--rate-limits hipchat|server|none]
     python bench/delivery.py --latency [0.15] [--latency-rooms 1,10,100,1000] [--minutes 3]
     python bench/delivery.py --parts
     python bench/delivery.py --ingest [1000] [--events 20000]

The daemon (``syncd.service.daemon.Daemon``) runs in this process. The HipChat test
server (``syncd.testing.hipchat_server.HipChatServer``) and a
client that posts the events in batches to ``/v1/events`` over one keep-alive
connection, while delivery runs, share a child process, so that they do not take
the daemon's interpreter lock; ``--one-process`` runs them in this process too.
Each integration serves its own project with ``trigger: {event: trace}``, so
every event becomes one notification per room of its integration. Measured, for
``synchronous=FULL`` and ``NORMAL``:

- notifications delivered per second, from the first POST to the last message
  the HipChat server received (and every one of them received exactly once);
- ingest latency per POST (p50, p99) while the workers deliver;
- CPU time of the daemon's process per notification.

Peer: a naive sender that renders the same messages and posts each one with
``requests`` to the same kind of server from as many threads as the daemon has
workers: no queue, no durability, no ordering per room. The ratio syncd / naive
shows what durability costs.

``--rate-limits hipchat`` (the default) has the HipChat test server enforce HipChat's
limits: 30 messages a minute per room and 500 requests per 5 minutes per token, a 429
past either; ``server`` HipChat Server's, 100 requests per 5 minutes per token and a
403 past a budget; ``none`` no limit. Every room has a token of its own. The ceiling
of every figure is what HipChat allows the run: its notifications over the shortest
time in which the limits (fixed windows, as the server keeps them), one send in
flight per room and the server's latency let them all through. A run that ends as
early as HipChat allows is at 100% of it; ``steady/s`` is the limits' rate for long
(30 a minute per room). ``429s`` counts the refusals the server answered.

``--profile`` then runs cProfile on every daemon thread of one FULL run (at most
1,000 events) and prints the top 15 entries by cumulative and by own time.

``--latency [SECONDS]`` prints the latency matrix instead: every answer of the
HipChat test server is SECONDS late (0.15 by default), one room per integration,
1, 10, 100 and 1,000 rooms (``--latency-rooms``); each row shows the notifications
per second beside HipChat's ceiling for the run and syncd's own cap (one send in
flight per room, the most one server may have in flight, over the latency), the
daemon's CPU per notification, its share of a core once nothing is left to claim,
and the machine's load average as the row began and ended (the machine may be
shared). With rate limits each room gets what they allow it in ``--minutes`` (3),
so a row lasts that long at least; without, enough for ``--seconds`` at syncd's own
cap; ``--per-room N`` gives each room N instead (10,000 rooms' minute is 300,000).
From 1,000 rooms on, a row is also held to HipChat's rate for long and to the CPU
goal per notification.
``--ingest [ROOMS]`` prints the daemon's CPU per event taken in, and nothing else:
``--events`` events in POSTs of ``--batch``, each to one of ROOMS (1,000) integrations
of a room each, whose endpoint is a closed port, so that nothing is delivered;
the answer is part of it, the client is not (it runs in a child process).
``--parts`` prints the CPU per call of each step of one notification. With
``SYNCD_BENCH_SOURCE=DIR`` in the environment, the daemon measured is that
checkout's (the test server and the client stay this one's): the before of a
before-and-after.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import math
import multiprocessing
import os
import pstats
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import requests

ROOT = Path(__file__).resolve().parents[1]
# SYNCD_BENCH_SOURCE=DIR measures the daemon of another checkout (the before of a
# before-and-after); the HipChat test server and the client, in the child
# process, stay this checkout's.
SOURCE = Path(os.environ.get("SYNCD_BENCH_SOURCE", ROOT))
WORLD_MARK = "SYNCD_BENCH_WORLD"  # set for the child process only
sys.path.insert(0, str(ROOT if os.environ.get(WORLD_MARK) else SOURCE))

from host import machine  # noqa: E402
from layout import load  # noqa: E402

from syncd.testing.hipchat_server import HipChatServer  # noqa: E402

load_config_set = load("syncd.config.configset", "load_config_set")
Integration = load("syncd.config.model", "Integration")
DispatchConfig = load("syncd.delivery.dispatch", "DispatchConfig")
render_message = load("syncd.hipchat.render", "render_message")
notification_body = load("syncd.hipchat.wire", "notification_body")
notification_url = load("syncd.hipchat.wire", "notification_url")
Daemon = load("syncd.service.daemon", "Daemon")
DaemonConfig = load("syncd.service.daemon", "DaemonConfig")


def _loopback_reach() -> dict[str, Any]:
    """``reach=`` for a daemon or a load sending to the HipChat test server, plain http
    on loopback, which syncd refuses unless told; nothing for a checkout from before
    that rule (``SYNCD_BENCH_SOURCE``)."""
    try:
        reach = load("syncd.config.reach", "Reach")
    except (ModuleNotFoundError, KeyError):
        return {}
    return {"reach": reach(allow_http=True)} if "allow_http" in reach.__dataclass_fields__ else {}


LOOPBACK = _loopback_reach()


@contextmanager
def as_syncd_run() -> Iterator[None]:
    """This process's collector paced as ``syncd run`` paces its own, for as long
    as a daemon runs here; the naive peer runs at CPython's pace, as a script
    would. Nothing for a checkout from before the pace (``SYNCD_BENCH_SOURCE``)."""
    before = gc.get_threshold()
    try:
        pace = load("syncd.service.collector", "pace_collector")
    except (ModuleNotFoundError, KeyError):
        pace = None
    if pace is not None:
        pace()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def load_loopback(directory: Path) -> Any:
    """``load_config_set([directory])`` with :data:`LOOPBACK`'s policy."""
    if not LOOPBACK:
        return load_config_set([directory])
    options = load("syncd.config.semantics", "Options")
    return load_config_set([directory], options(**LOOPBACK))


GOAL = 1000.0  # notifications per second, on 2 cores
RateLimits = Literal["hipchat", "server", "none"]  # --rate-limits
FIRST_ROOM = 3000

INTEGRATION = """\
  - uid: bench-{i}
    project: bench-project-{i}
    name: bench {i} every error
    hipchat:
      endpoint: {endpoint}
      color: red
      rooms:
{rooms}
    display:
      attribute_list: [version, datacenter]
    actions:
      - {{action: submit, attribute: "*", regex: ".*"}}
    trigger: {{event: trace}}
"""

LINK = re.compile(r"https://errors\.example\.com/bench/(\d+)")
ROOM = "        - {{id: {room}, token: {{env: HIPCHAT_BENCH_ROOM_{room}_TOKEN}}}}"


@dataclass(frozen=True)
class Setup:
    events: int
    rooms: int
    integrations: int
    batch: int
    workers: int
    latency: float = 0.0  # seconds the HipChat test server waits before each answer
    rate_limits: RateLimits = "hipchat"  # the limits the HipChat test server enforces

    def room_ids(self, integration: int) -> list[int]:
        """The rooms of one integration: rooms are dealt round-robin."""
        return [FIRST_ROOM + r for r in range(self.rooms) if r % self.integrations == integration]

    @property
    def tokens(self) -> dict[str, str]:
        return {str(FIRST_ROOM + r): f"bench-token-{FIRST_ROOM + r}" for r in range(self.rooms)}

    @property
    def notifications(self) -> int:
        return sum(self.per_room())

    def per_room(self) -> list[int]:
        """Notifications each room gets: one per event of its integration."""
        return [
            len(range(r % self.integrations, self.events, self.integrations))
            for r in range(self.rooms)
        ]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# Integrations per config file: a file holds at most 1 MiB.
PER_FILE = 1000


def write_config(directory: Path, setup: Setup, endpoint: str) -> None:
    entries = []
    for i in range(setup.integrations):
        rooms = "\n".join(ROOM.format(room=r) for r in setup.room_ids(i))
        entries.append(INTEGRATION.format(i=i, endpoint=endpoint, rooms=rooms))
    for first in range(0, len(entries), PER_FILE):
        name = "bench.yaml" if first == 0 else f"bench-{first // PER_FILE}.yaml"
        chunk = "\n".join(entries[first : first + PER_FILE])
        (directory / name).write_text("version: 1\nintegrations:\n" + chunk)
    for room, token in setup.tokens.items():
        os.environ[f"HIPCHAT_BENCH_ROOM_{room}_TOKEN"] = token


def make_events(setup: Setup) -> list[dict[str, Any]]:
    return [
        {
            "project": f"bench-project-{n % setup.integrations}",
            "fingerprint": f"fp-{n % 50}",
            "timestamp": "2026-11-26T12:00:00Z",
            "classifiers": ["KeyError", f"Error{n % 7}"],
            "callstack": [f"app/module_{k}.py:{10 * k + n % 10} in handler_{k}" for k in range(5)],
            "attributes": {"n": str(n), "version": "1.4.2", "datacenter": "nyc"},
            "hostname": f"web-{n % 12:02}.example.com",
            "href": f"https://errors.example.com/bench/{n}",
        }
        for n in range(setup.events)
    ]


def _number(message: str) -> str:
    """The event's number, from the link the message ends with."""
    found = LINK.search(message)
    return found.group(1) if found else "?"


def expected_pairs(setup: Setup) -> Counter[tuple[str, str]]:
    rooms = [[str(room) for room in setup.room_ids(i)] for i in range(setup.integrations)]
    return Counter(
        (room, str(n)) for n in range(setup.events) for room in rooms[n % setup.integrations]
    )


@dataclass(frozen=True)
class Budgets:
    """The limits the HipChat test server enforces, as plain numbers: a budget per token
    and one per room, each per fixed window (``syncd.testing``'s ``Limits``)."""

    token: int
    token_window: float
    room: int
    room_window: float

    def per_room(self) -> float:
        """A room's rate for long, with a token of its own: the lesser budget's."""
        return min(self.token / self.token_window, self.room / self.room_window)

    def allowed_in(self, seconds: float) -> int:
        """Notifications one room may get within ``seconds`` of its first."""
        return min(
            self.room * math.ceil(seconds / self.room_window),
            self.token * math.ceil(seconds / self.token_window),
        )


# What the HipChat test server enforces for each --rate-limits (checked against the
# server's own when a run starts): HipChat's 500 requests per 5 minutes per token
# and 30 messages a minute per room; HipChat Server's 100 per 5 minutes per token.
BUDGETS: dict[RateLimits, Budgets | None] = {
    "hipchat": Budgets(500, 300.0, 30, 60.0),
    "server": Budgets(100, 300.0, 30, 60.0),
    "none": None,
}


def limits_text(mode: RateLimits) -> str:
    budgets = BUDGETS[mode]
    if budgets is None:
        return "--rate-limits none: no rate limits"
    return (
        f"--rate-limits {mode}: {budgets.room} messages per {budgets.room_window:g} s per room, "
        f"{budgets.token} requests per {budgets.token_window:g} s per token, a token per room"
    )


def fastest_finish(count: int, budgets: Budgets | None, latency: float) -> float:
    """Seconds from a room's first send to the answer of its ``count``-th, each sent
    the moment the previous answer is in and the limits allow it. The windows are
    fixed, each opened by the first request after the last one closed, as the
    HipChat test server keeps them."""
    if budgets is None:
        return count * latency
    limits = ((budgets.token, budgets.token_window), (budgets.room, budgets.room_window))
    used = [0, 0]
    ends = [0.0, 0.0]
    at = 0.0
    for _ in range(count):
        full = [
            ends[k] for k, (budget, _) in enumerate(limits) if ends[k] > at and used[k] >= budget
        ]
        at = max([at, *full])
        for k, (_, window) in enumerate(limits):
            if ends[k] <= at:
                used[k], ends[k] = 0, at + window
            used[k] += 1
        at += latency
    return at


@dataclass(frozen=True)
class Ceiling:
    """What HipChat allows one run: its notifications over the fastest finish its
    limits allow (None when they allow all at once), and their rate for long."""

    notifications: int
    seconds: float
    steady: float | None

    @property
    def rate(self) -> float | None:
        return self.notifications / self.seconds if self.seconds > 0 else None

    def share(self, run: Run) -> float | None:
        """The run's rate over the ceiling's: 100% when it ends as early as HipChat allows."""
        return self.seconds / run.seconds if self.seconds > 0 else None


def hipchat_ceiling(setup: Setup) -> Ceiling:
    budgets = BUDGETS[setup.rate_limits]
    fastest = max(fastest_finish(n, budgets, setup.latency) for n in set(setup.per_room()))
    steady = budgets.per_room() * setup.rooms if budgets is not None else None
    return Ceiling(setup.notifications, fastest, steady)


def rate_text(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def share_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@dataclass(frozen=True)
class Posted:
    """What the client saw: unix times of its first POST and last answer, each POST's latency."""

    started_at: float
    finished_at: float
    latencies: tuple[float, ...]
    error: str | None


class Client(threading.Thread):
    """Posts the events in batches over one keep-alive connection; times every POST."""

    def __init__(self, url: str, events: list[dict[str, Any]], batch: int) -> None:
        super().__init__(name="bench-client", daemon=True)
        self.url = url
        self.events = events
        self.batch = batch
        self.started_at = 0.0
        self.finished_at = 0.0
        self.latencies: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        with requests.Session() as session:
            self.started_at = time.time()
            for first in range(0, len(self.events), self.batch):
                chunk = self.events[first : first + self.batch]
                start = time.perf_counter()
                try:
                    response = session.post(self.url, json=chunk, timeout=60)
                except requests.RequestException as exc:
                    self.error = f"POST {first}: {type(exc).__name__}: {exc}"
                    return
                self.latencies.append(time.perf_counter() - start)
                if response.status_code != 202 or response.json()["accepted"] != len(chunk):
                    self.error = f"POST {first}: {response.status_code} {response.text[:300]}"
                    return
            self.finished_at = time.time()

    def result(self, timeout: float) -> Posted:
        self.join(timeout)
        error = self.error or ("timed out" if self.is_alive() else None)
        return Posted(self.started_at, self.finished_at, tuple(self.latencies), error)


class World:
    """What surrounds the daemon: the HipChat test server and the client posting events.

    This one runs in the calling process; :class:`RemoteWorld` runs one in a child.
    """

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.events = make_events(setup)
        self.server = HipChatServer(setup.tokens, limits=setup.rate_limits).start()
        if setup.latency:
            self.server.misbehave(latency=setup.latency)
        self.url = self.server.url
        self.client: Client | None = None

    def post(self, daemon_url: str) -> None:
        """Start posting every event to ``daemon_url`` from a client thread."""
        self.client = Client(f"{daemon_url}/v1/events", self.events, self.setup.batch)
        self.client.start()

    def posted(self, timeout: float) -> Posted:
        assert self.client is not None
        return self.client.result(timeout)

    def delivered(self) -> tuple[int, float]:
        """Messages received so far, and the unix time the last one arrived."""
        messages = self.server.messages
        return len(messages), max((m.time for m in messages), default=0.0)

    def received(self) -> Counter[tuple[str, str]]:
        """(room, event number) of every message received."""
        return Counter((m.room, _number(str(m.body["message"]))) for m in self.server.messages)

    def budgets(self) -> tuple[int, float, int, float] | None:
        """The limits the server enforces: per token and window, per room and window."""
        limits = self.server.limits
        if limits is None:
            return None
        return limits.rate, limits.rate_window, limits.flood, limits.flood_window

    def refusals(self) -> int:
        """Requests the server refused past a budget (429; HipChat Server's 403)."""
        return sum(1 for a in self.server.attempts if a.status in (429, 403))

    def close(self) -> None:
        self.server.close()


def _serve_world(conn: Connection, setup: Setup) -> None:
    """The child process of :class:`RemoteWorld`: runs a :class:`World`, answers calls."""
    logging.basicConfig(level=logging.WARNING)
    world = World(setup)
    conn.send(world.url)
    try:
        while True:
            name, args = conn.recv()
            if name == "close":
                break
            conn.send(getattr(world, name)(*args))
    finally:
        world.close()
        conn.close()


class RemoteWorld:
    """A :class:`World` in a child process, so its server and client do not share the
    daemon's interpreter (its GIL) and the daemon gets a core of its own."""

    def __init__(self, setup: Setup) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve_world, args=(child, setup), name="bench-world", daemon=True
        )
        os.environ[WORLD_MARK] = "1"
        try:
            self._process.start()
        finally:
            del os.environ[WORLD_MARK]
        child.close()
        try:
            if not self._conn.poll(60):
                raise EOFError
            self.url: str = self._conn.recv()
        except EOFError:
            self._process.kill()
            raise SystemExit("the HipChat test server process did not start") from None

    def _call(self, name: str, *args: object) -> Any:
        self._conn.send((name, args))
        return self._conn.recv()

    def post(self, daemon_url: str) -> None:
        self._call("post", daemon_url)

    def posted(self, timeout: float) -> Posted:
        result: Posted = self._call("posted", timeout)
        return result

    def delivered(self) -> tuple[int, float]:
        result: tuple[int, float] = self._call("delivered")
        return result

    def received(self) -> Counter[tuple[str, str]]:
        result: Counter[tuple[str, str]] = self._call("received")
        return result

    def budgets(self) -> tuple[int, float, int, float] | None:
        result: tuple[int, float, int, float] | None = self._call("budgets")
        return result

    def refusals(self) -> int:
        result: int = self._call("refusals")
        return result

    def close(self) -> None:
        with suppress(OSError):
            self._conn.send(("close", ()))
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


AnyWorld = World | RemoteWorld


@contextmanager
def world(setup: Setup, split: bool) -> Iterator[AnyWorld]:
    made: AnyWorld = RemoteWorld(setup) if split else World(setup)
    try:
        budgets = BUDGETS[setup.rate_limits]
        expected = None if budgets is None else tuple(vars(budgets).values())
        if made.budgets() != expected:
            raise SystemExit(
                f"the HipChat test server enforces {made.budgets()}, not the {expected} "
                f"of --rate-limits {setup.rate_limits}"
            )
        yield made
    finally:
        made.close()


def wait_delivered(where: AnyWorld, count: int, timeout: float, poll: float = 0.02) -> float:
    """Unix time the ``count``-th message arrived; polls (cheap) instead of a per-message
    wait. The time comes from the server, so ``poll`` does not change it; a longer one
    keeps this process's own CPU out of a slow run's figure."""
    deadline = time.monotonic() + timeout
    while True:
        received, last = where.delivered()
        if received >= count:
            return last
        if time.monotonic() > deadline:
            raise SystemExit(f"{received} of {count} messages arrived within {timeout:.0f} s")
        time.sleep(poll)


def check_exactly_once(where: AnyWorld, setup: Setup, label: str) -> None:
    """Every event reached every room of its integration once, nothing more."""
    seen, expected = where.received(), expected_pairs(setup)
    if seen != expected:
        missing = sum((expected - seen).values())
        extra = sum((seen - expected).values())
        raise SystemExit(f"{label}: {missing} notification(s) missing, {extra} unexpected")


@dataclass(frozen=True)
class Run:
    label: str
    notifications: int
    seconds: float
    cpu: float  # seconds of this process's CPU (user + system) during the run
    events: int = 0
    ingest_seconds: float | None = None
    latencies: tuple[float, ...] = ()
    refused: int = 0  # requests the HipChat test server refused past a budget

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds


def cpu_time() -> float:
    times = os.times()
    return times.user + times.system


def run_syncd(
    setup: Setup,
    synchronous: Literal["FULL", "NORMAL"],
    timeout: float,
    split: bool,
) -> Run:
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        world(setup, split) as around,
        as_syncd_run(),
    ):
        config_dir = Path(tmp) / "config"
        config_dir.mkdir()
        write_config(config_dir, setup, around.url)
        daemon = Daemon(
            DaemonConfig(
                config_dir,
                state_dir=Path(tmp) / "state",
                port=0,
                workers=setup.workers,
                synchronous=synchronous,
                retry_base=0.05,
                retry_cap=0.5,
                **LOOPBACK,
            )
        )
        outcome = daemon.start()
        try:
            if not outcome.ok:
                raise SystemExit(f"config rejected: {[str(d) for d in outcome.diagnostics]}")
            cpu = cpu_time()
            around.post(daemon.server.url)
            posted = around.posted(timeout)
            if posted.error:
                raise SystemExit(f"ingest failed: {posted.error}")
            last = wait_delivered(around, setup.notifications, timeout)
            cpu = cpu_time() - cpu
        finally:
            daemon.shutdown()
        check_exactly_once(around, setup, f"syncd {synchronous}")
        refused = around.refusals()
    return Run(
        f"syncd synchronous={synchronous}",
        setup.notifications,
        last - posted.started_at,
        cpu,
        setup.events,
        posted.finished_at - posted.started_at,
        posted.latencies,
        refused,
    )


def run_naive(setup: Setup, timeout: float, split: bool, senders: int) -> Run:
    """The peer: render and post each notification at once from ``senders`` threads,
    no queue, no durability."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, world(setup, split) as around:
        write_config(Path(tmp), setup, around.url)
        config = load_loopback(Path(tmp))
        if not config.valid:
            raise SystemExit(f"config rejected: {[str(d) for d in config.diagnostics]}")
        by_project = {i.project: i for i in config.integrations}
        work: list[tuple[dict[str, Any], Integration, str]] = [
            (event, by_project[event["project"]], room.id)
            for event in make_events(setup)
            for room in by_project[event["project"]].rooms
        ]
        tokens = setup.tokens
        position = iter(range(len(work)))
        lock = threading.Lock()
        errors: list[str] = []

        def send() -> None:
            with requests.Session() as session:
                while True:
                    with lock:
                        index = next(position, None)
                    if index is None:
                        return
                    event, integration, room = work[index]
                    body = notification_body(render_message(event, integration))
                    while True:
                        response = session.post(
                            notification_url(integration.hipchat.endpoint, room),
                            json=body,
                            headers={"Authorization": f"Bearer {tokens[room]}"},
                            timeout=10,
                        )
                        wait = limited_wait(response)
                        if wait is None:
                            break
                        time.sleep(wait)  # what the naive sender does with a refusal
                    if response.status_code != 204:
                        errors.append(f"{response.status_code} {response.text[:200]}")
                        return

        threads = [
            threading.Thread(target=send, name=f"bench-naive-{n}", daemon=True)
            for n in range(senders)
        ]
        cpu = cpu_time()
        start = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        if errors:
            raise SystemExit(f"naive sender failed: {errors[0]}")
        last = wait_delivered(around, setup.notifications, timeout)
        cpu = cpu_time() - cpu
        check_exactly_once(around, setup, "naive")
        refused = around.refusals()
    label = f"naive requests, {senders} threads"
    return Run(label, setup.notifications, last - start, cpu, setup.events, refused=refused)


def limited_wait(response: requests.Response) -> float | None:
    """Seconds the naive sender waits after a refusal past a budget: the Retry-After,
    else until the exhausted budget's reset (HipChat Server names no wait), at least
    1 s; None for any other answer."""
    if response.status_code not in (429, 403) or "rate limit" not in response.text:
        return None
    if "Retry-After" in response.headers:
        return max(1.0, float(response.headers["Retry-After"]))
    resets = [
        float(response.headers[f"{prefix}-Reset"])
        for prefix in ("X-Ratelimit", "X-FloodControl")
        if response.headers.get(f"{prefix}-Remaining") == "0"
    ]
    return max(1.0, max(resets, default=0.0) - time.time())


@contextmanager
def profiled(
    skip: Callable[[threading.Thread], bool], timer: Callable[[], float]
) -> Iterator[list[cProfile.Profile]]:
    """Profile every thread started inside the block, except those ``skip`` picks.

    cProfile sees only the thread that enables it, so each new thread gets its own
    profiler around ``Thread.run``; the caller merges them.
    """
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original: Callable[[threading.Thread], None] = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        if skip(thread):
            original(thread)
            return
        profile = cProfile.Profile(timer)
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original(thread)
        finally:
            profile.disable()

    setattr(threading.Thread, "run", run)  # noqa: B010 (mypy refuses a method assignment)
    try:
        yield profiles
    finally:
        setattr(threading.Thread, "run", original)  # noqa: B010


def not_the_daemon(thread: threading.Thread) -> bool:
    """The bench's own threads and the HipChat test server's are left out of the profile."""
    if thread.name.startswith("bench-") or thread.name.startswith("hipchat-test-server"):
        return True
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__self__", None)
    return type(owner).__module__ == "syncd.testing.hipchat_server"


def profile_run(setup: Setup, timeout: float, split: bool, clock: str, top: int) -> None:
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    with profiled(not_the_daemon, timer) as profiles:
        run = run_syncd(setup, "FULL", timeout, split)
    print(
        f"\nprofile ({clock} time): syncd synchronous=FULL, {setup.events} events, the daemon's "
        f"threads only ({len(profiles)} merged; {run.rate:.0f} notifications/s under the profiler)"
    )
    if clock == "cpu":
        print(
            "(a CPU clock costs a system call per profiler event, so functions called very "
            "often, like message.length, look bigger than they are)"
        )
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        what = "CPU time per thread" if clock == "cpu" else "wall time, idle waits included"
        print(f"top {top} by {order} ({what}, summed over threads):")
        print("\n".join(lines[start : start + top + 1]))


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median rate (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r.rate)[(len(runs) - 1) // 2]


def best_peer(peers: Sequence[list[Run]]) -> list[Run]:
    """The naive setting whose median run was fastest: the peer at its best."""
    return max(peers, key=lambda runs: median_run(runs).rate)


def print_table(results: list[list[Run]], peers: list[list[Run]], ceiling: Ceiling) -> None:
    header = [
        "run",
        "notifications",
        "notif/s",
        "min-max",
        "HipChat/s",
        "of HipChat",
        "429s",
        "vs naive",
        "CPU us/notif",
        "cores",
        "ingest ev/s",
        "POST p50 ms",
        "POST p99 ms",
    ]
    rows = [header]
    base = median_run(best_peer(peers)).rate
    for runs in [*results, *peers]:
        mid = median_run(runs)
        latencies = [x for r in runs for x in r.latencies]
        rates = [r.rate for r in runs]
        rows.append(
            [
                mid.label,
                str(mid.notifications),
                f"{mid.rate:.0f}",
                f"{min(rates):.0f}-{max(rates):.0f}",
                rate_text(ceiling.rate),
                share_text(ceiling.share(mid)),
                str(mid.refused),
                f"{mid.rate / base:.2f}x",
                f"{mid.cpu / mid.notifications * 1e6:.0f}",
                f"{mid.cpu / mid.seconds:.2f}",
                f"{mid.events / mid.ingest_seconds:.0f}" if mid.ingest_seconds else "-",
                f"{pct(latencies, 0.5) * 1000:.1f}" if latencies else "-",
                f"{pct(latencies, 0.99) * 1000:.1f}" if latencies else "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))


LEGEND = """
notif/s: notifications delivered per second, first POST to the last message received
(every one checked to arrive exactly once); the median run, min-max over the runs.
HipChat/s: the ceiling, what HipChat's limits (--rate-limits) allow this run: its
notifications over the shortest time they let them through ("-": all at once); of
HipChat: notif/s over it. 429s: requests the HipChat test server refused past a
budget (the median run). vs naive: notif/s over the naive peer's at its best
setting. CPU us/notif: CPU time (user + system) of the daemon's process per
notification, and cores: that CPU time over the wall time (with --one-process both
include the HipChat test server and the client).
ingest ev/s: events accepted per second by POST /v1/events (202 returned after the
commit). POST p50/p99: latency of one POST of a batch, measured while delivery runs
(all runs pooled).
naive: the same messages rendered and posted with requests from N threads
(--naive-threads, each a setting of its own, taking turns with the daemon's runs); no
queue, no durability, no per-room order; a thread refused past a budget waits what
the answer says and sends again."""


@dataclass(frozen=True)
class LatencyRow:
    rooms: int
    in_flight: int
    own: float  # syncd's own cap: its sends in flight over the latency
    hipchat: Ceiling
    run: Run
    idle_core: float  # share of a core the daemon used while nothing was claimable
    load: tuple[float, float]  # the machine's 1-minute load average as the row began, ended


def in_flight(rooms: int, workers: int) -> int:
    """Sends that can be in flight: one per room (its order), the most one server
    may hold (all the workers, for sources from before any bound per server)."""
    return min(rooms, per_server(workers))


def per_server(workers: int) -> int:
    share: int = getattr(DispatchConfig(workers=workers), "per_server", workers)
    return share


@dataclass(frozen=True)
class LatencyRun:
    """One row's setting: answers ``latency`` late, under ``rate_limits``, sized by
    ``minutes`` of what the limits allow, or ``seconds`` at syncd's own cap without."""

    workers: int
    latency: float
    rate_limits: RateLimits
    minutes: float
    seconds: float
    split: bool
    per_room: int | None = None  # notifications each room gets, if given


def latency_setup(rooms: int, how: LatencyRun) -> Setup:
    """One room per integration; each room gets ``per_room`` notifications if given,
    else what its limits allow in ``minutes``, or, without limits, enough to keep
    syncd at its own cap for ``seconds``."""
    budgets = BUDGETS[how.rate_limits]
    if how.per_room is not None:
        events = rooms * how.per_room
    elif budgets is not None:
        events = rooms * budgets.allowed_in(how.minutes * 60)
    else:
        events = max(2 * rooms, int(in_flight(rooms, how.workers) / how.latency * how.seconds))
    return Setup(events, rooms, rooms, 100, how.workers, how.latency, how.rate_limits)


def run_latency(rooms: int, how: LatencyRun) -> LatencyRow:
    flying = in_flight(rooms, how.workers)
    own = flying / how.latency
    setup = latency_setup(rooms, how)
    ceiling = hipchat_ceiling(setup)
    timeout = 3 * max(ceiling.seconds, setup.notifications / own) + 60
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        world(setup, how.split) as around,
        as_syncd_run(),
    ):
        config_dir = Path(tmp) / "config"
        config_dir.mkdir()
        write_config(config_dir, setup, around.url)
        daemon = Daemon(
            DaemonConfig(
                config_dir, state_dir=Path(tmp) / "state", port=0, workers=how.workers, **LOOPBACK
            )
        )
        if not daemon.start().ok:
            raise SystemExit("config rejected")
        try:
            cpu = cpu_time()
            around.post(daemon.server.url)
            posted = around.posted(timeout)
            last = wait_delivered(around, setup.notifications, timeout, poll=0.5)
            cpu = cpu_time() - cpu
            idle_from, idle_wall = cpu_time(), time.monotonic()
            time.sleep(IDLE_WINDOW)  # a measured window, not a wait for a condition
            idle = (cpu_time() - idle_from) / (time.monotonic() - idle_wall)
        finally:
            daemon.shutdown()
        check_exactly_once(around, setup, f"latency {rooms} rooms")
        refused = around.refusals()
    seconds = last - posted.started_at
    run = Run(f"{rooms} rooms", setup.notifications, seconds, cpu, setup.events, refused=refused)
    return LatencyRow(rooms, flying, own, ceiling, run, idle, (load_before, os.getloadavg()[0]))


IDLE_WINDOW = 3.0


def print_latency(rows: Sequence[LatencyRow], how: LatencyRun) -> None:
    header = [
        "rooms",
        "notifications",
        "HipChat/s",
        "steady/s",
        "notif/s",
        "of HipChat",
        "429s",
        "syncd cap/s",
        "CPU ms/notif",
        "idle core",
        "load",
    ]
    table = [header]
    for row in rows:
        table.append(
            [
                str(row.rooms),
                str(row.run.notifications),
                rate_text(row.hipchat.rate),
                rate_text(row.hipchat.steady),
                f"{row.run.rate:.1f}",
                share_text(row.hipchat.share(row.run)),
                str(row.run.refused),
                f"{row.own:.1f}",
                f"{row.run.cpu / row.run.notifications * 1000:.2f}",
                f"{row.idle_core:.1%}",
                f"{row.load[0]:.1f}-{row.load[1]:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    share = per_server(how.workers)
    latency = f"{how.latency * 1000:.0f} ms"
    print(
        f"""
Every answer of the HipChat test server waits {latency}; it enforces
{limits_text(how.rate_limits)}.
HipChat/s, the ceiling: the row's notifications over the shortest time HipChat's limits
let them through, one at a time per room (its order), each answer {latency} late; of
HipChat: notif/s over it (100%: done as early as HipChat allows). steady/s: the limits'
rate for long. 429s: requests refused past a budget. syncd cap/s: syncd's own, the most
sends one HipChat server may have in flight ({share}, with {how.workers} workers) over the
latency: min(rooms, {share}) / {how.latency} s.
notif/s: first POST to the last message received, every one checked to arrive exactly
once. CPU ms/notif: the daemon process's CPU per notification. idle core: its CPU over
{IDLE_WINDOW:.0f} s after the last delivery, nothing left to claim. load: the machine's
1-minute load average as the row began and as it ended (the run's own processes in it)."""
    )


def latency_matrix(args: argparse.Namespace, split: bool) -> None:
    rooms = [int(r) for r in args.latency_rooms.split(",")]
    how = LatencyRun(
        args.workers,
        args.latency,
        args.rate_limits,
        args.minutes,
        args.seconds,
        split,
        args.per_room,
    )
    print(f"machine: {machine()}")
    print(
        f"latency matrix: {how.workers} delivery workers, answers {how.latency * 1000:.0f} ms "
        f"late, HipChat test server {limits_text(how.rate_limits)}"
    )
    rows = [run_latency(r, how) for r in rooms]
    print()
    print_latency(rows, how)
    for row in rows:
        print_goals(row, how)


# From this many rooms on, a run is held to HipChat's rate for long (a burst at the
# start of every minute is more than 2 cores carry): 90% of it, at most RATE_GOAL
# (10,000 rooms are allowed 5,000/s), with a CPU bound per notification.
MANY_ROOMS = 1000
RATE_GOAL = 2000.0  # notifications per second, on 2 cores
CPU_GOAL = 0.5  # ms per notification


def print_goals(row: LatencyRow, how: LatencyRun) -> None:
    share = row.hipchat.share(row.run)
    cpu = row.run.cpu / row.run.notifications * 1000
    met = share is not None and share >= 0.9 and row.idle_core < 0.05 and not row.run.refused
    print(
        f"goal >= 90% of HipChat's ceiling (--rate-limits {how.rate_limits}), no 429, "
        f"< 5% of a core idle, {row.rooms} rooms: {share_text(share)} of "
        f"{rate_text(row.hipchat.rate, '/s')}, {row.run.refused} 429s, "
        f"{row.idle_core:.1%}: {'met' if met else 'NOT met'}"
    )
    steady = row.hipchat.steady
    if row.rooms < MANY_ROOMS or steady is None:
        return
    goal = min(0.9 * steady, RATE_GOAL)
    met = row.run.rate >= goal and cpu < CPU_GOAL
    print(
        f"goal >= {goal:,.0f}/s (HipChat allows {steady:,.0f}/s for long), < {CPU_GOAL} ms "
        f"CPU/notif, {row.rooms} rooms: {row.run.rate:,.0f}/s, {cpu:.2f} ms: "
        f"{'met' if met else 'NOT met'}"
    )


def parts(calls: int) -> None:
    """CPU per call of each step a notification goes through, in this thread: the
    event's schema check, rendering, the send to a HipChat test server answering at
    once, and the durable settle-and-claim of the outbox (synchronous=FULL)."""
    from syncd.events.validation import validate_events
    from syncd.hipchat.client import HipChatClient
    from syncd.hipchat.wire import RoomTarget
    from syncd.store.contract import NewItem, Settle
    from syncd.store.sqlite import Outbox

    setup = Setup(1, 1, 1, 1, 1, rate_limits="none")  # 500 sends to one room, no refusal
    event = make_events(replace(setup, events=1))[0]
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        config_dir = Path(tmp)
        world_ = World(setup)
        try:
            write_config(config_dir, setup, world_.url)
            (integration,) = load_loopback(config_dir).integrations
            room = str(FIRST_ROOM)
            target = RoomTarget(world_.url, room, setup.tokens[room])
            client = HipChatClient()
            message = render_message(event, integration)
            box = Outbox(config_dir / "outbox.db")
            with box.batch() as batch:
                batch.enqueue(
                    [NewItem("bench-0", str(n), event) for n in range(calls)], time.time()
                )
            claimed = box.settle_and_claim(None, 1, 60)
            steps: dict[str, Callable[[], object]] = {
                "event schema check": lambda: validate_events(event),
                "render": lambda: render_message(event, integration),
                "send (HipChat answers at once)": lambda: client.send(target, message),
            }
            figures = {name: per_call(step, calls) for name, step in steps.items()}

            def settle() -> None:
                nonlocal claimed
                claimed = box.settle_and_claim(Settle(claimed[0].id, "delivered"), 1, 60)

            figures["outbox settle and claim (FULL)"] = per_call(settle, calls - 5)
        finally:
            world_.close()
    for name, us in figures.items():
        print(f"  {name:34} {us:8.0f} us")


def ingest_alone(rooms: int, events: int, batch: int) -> None:
    """The daemon's CPU per event taken in, with nothing delivered (see the module
    docstring), three runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    setup = Setup(events, rooms, rooms, batch, 1, rate_limits="none")
    figures = []
    for _ in range(3):
        with (
            tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
            world(setup, True) as around,
            as_syncd_run(),
        ):
            config_dir = Path(tmp) / "config"
            config_dir.mkdir()
            write_config(config_dir, setup, closed)
            state = Path(tmp) / "state"
            daemon = Daemon(
                DaemonConfig(config_dir, state_dir=state, port=0, workers=1, **LOOPBACK)
            )
            if not daemon.start().ok:
                raise SystemExit("config rejected")
            try:
                cpu = cpu_time()
                around.post(daemon.server.url)
                posted = around.posted(600)
                cpu = cpu_time() - cpu
            finally:
                daemon.shutdown()
            if posted.error:
                raise SystemExit(f"ingest: {posted.error}")
            figures.append(cpu / events * 1e6)
    print(
        f"ingest alone, {events:,} events in POSTs of {batch} to {rooms:,} integrations "
        f"of a room each, nothing delivered: {statistics.median(figures):.0f} us of the "
        f"daemon's CPU per event (runs: {', '.join(f'{f:.0f}' for f in figures)})"
    )


def per_call(step: Callable[[], object], calls: int) -> float:
    """Microseconds of this thread's CPU per call, after a few unmeasured calls."""
    for _ in range(3):
        step()
    start = time.thread_time()
    for _ in range(calls):
        step()
    return (time.thread_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events to post")
    parser.add_argument("--rooms", type=int, default=8, help="rooms in all (K)")
    parser.add_argument("--integrations", type=int, default=4, help="rooms are dealt to these")
    parser.add_argument("--batch", type=int, default=100, help="events per POST")
    parser.add_argument(
        "--workers", type=int, default=DispatchConfig().workers, help="daemon delivery workers"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="per run, seconds")
    parser.add_argument(
        "--naive-threads",
        default="8,16,64",
        help="the naive peer's thread counts, each run in every round (default 8,16,64)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median)")
    parser.add_argument("--quick", action="store_true", help="1,000 events, 1 run of each")
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="run the HipChat test server and the client in the daemon's process too",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one FULL run of at most 1,000 events (top 15 entries)",
    )
    parser.add_argument(
        "--profile-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: each thread's CPU time (hot spots); wall: includes lock and I/O waits",
    )
    parser.add_argument(
        "--latency",
        type=float,
        nargs="?",
        const=0.15,
        help="the latency matrix instead: every answer this late (default 0.15 s)",
    )
    parser.add_argument("--latency-rooms", default="1,10,100,1000", help="rooms per row")
    parser.add_argument(
        "--seconds",
        type=float,
        default=8.0,
        help="latency, --rate-limits none: a row's length at syncd's own cap",
    )
    parser.add_argument(
        "--rate-limits",
        choices=tuple(BUDGETS),
        default="hipchat",
        help="the limits the HipChat test server enforces: HipChat's (default), "
        "HipChat Server's, or none",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="latency, with rate limits: each room gets what they allow it in this long",
    )
    parser.add_argument(
        "--per-room",
        type=int,
        help="latency: each room gets this many notifications instead (10,000 rooms' "
        "minute is 300,000 notifications)",
    )
    parser.add_argument(
        "--parts", action="store_true", help="CPU per call of each step of one notification"
    )
    parser.add_argument(
        "--ingest",
        type=int,
        nargs="?",
        const=1000,
        metavar="ROOMS",
        help="the daemon's CPU per event taken in, nothing delivered (1,000 rooms)",
    )
    args = parser.parse_args()
    if args.one_process and SOURCE != ROOT and args.rate_limits != "none":
        parser.error(
            "--one-process runs the SYNCD_BENCH_SOURCE checkout's HipChat test server, "
            "which may not enforce --rate-limits: drop --one-process"
        )
    if args.ingest is not None:
        print(f"machine: {machine()}")
        ingest_alone(args.ingest, args.events, args.batch)
        return
    if args.parts:
        print(f"machine: {machine()}")
        print(f"CPU per call, this thread ({SOURCE}):")
        parts(500)
        return
    if args.latency is not None:
        logging.basicConfig(level=logging.WARNING)
        latency_matrix(args, not args.one_process)
        return
    events = 1000 if args.quick else args.events
    repeat = 1 if args.quick else args.repeat
    if min(events, repeat, args.rooms, args.integrations, args.batch, args.workers) < 1:
        parser.error("--events, --repeat, --rooms, --integrations, --batch, --workers: >= 1")
    if args.integrations > args.rooms:
        parser.error("--integrations must not exceed --rooms (each needs a room)")
    setup = Setup(
        events, args.rooms, args.integrations, args.batch, args.workers, 0.0, args.rate_limits
    )
    ceiling = hipchat_ceiling(setup)
    if ceiling.seconds > args.timeout:
        parser.error(
            f"{limits_text(args.rate_limits)}: HipChat lets {setup.notifications:,} "
            f"notifications to {setup.rooms} rooms through in no less than "
            f"{ceiling.seconds:,.0f} s ({rate_text(ceiling.steady, '/s')} for long), past "
            f"--timeout {args.timeout:g} s; --rate-limits none measures syncd's own "
            "throughput, or give more --rooms or a longer --timeout"
        )
    split = not args.one_process
    # Permanent failures would be logged as warnings; nothing else is wanted on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    print(f"machine: {machine()}")
    print(
        f"{setup.events} events in POSTs of {setup.batch}, {setup.rooms} rooms across "
        f"{setup.integrations} integrations (trigger: trace) -> {setup.notifications} "
        f"notifications; {setup.workers} delivery workers"
    )
    print(
        f"layout: daemon in this process; HipChat test server ({limits_text(setup.rate_limits)}) "
        "and client " + ("in a child process" if split else "in this process too (--one-process)")
    )
    print(
        f"HipChat's ceiling for the run: {rate_text(ceiling.rate, '/s')} "
        f"(fastest finish {ceiling.seconds:.1f} s; {rate_text(ceiling.steady, '/s')} for long)"
    )
    print(f"{repeat} run(s) of each, interleaved; the median run is shown")
    full: list[Run] = []
    normal: list[Run] = []
    threads = naive_threads(parser, args.naive_threads)
    peers: list[list[Run]] = [[] for _ in threads]
    for _ in range(repeat):
        full.append(run_syncd(setup, "FULL", args.timeout, split))
        normal.append(run_syncd(setup, "NORMAL", args.timeout, split))
        for runs, count in zip(peers, threads, strict=True):
            runs.append(run_naive(setup, args.timeout, split, count))
    print()
    print_table([full, normal], peers, ceiling)
    print(LEGEND)
    print()
    for runs in (full, normal):
        mid = median_run(runs)
        verdict = "met" if mid.rate >= GOAL else "NOT met"
        goal = f"goal >= {GOAL:.0f} notifications/s on 2 cores (--rate-limits {setup.rate_limits})"
        print(f"{goal}, {mid.label}: {mid.rate:.0f}/s, {verdict}")
    print_peer_goal(median_run(full), median_run(best_peer(peers)))
    if args.profile:
        small = replace(setup, events=min(setup.events, 1000))
        profile_run(small, args.timeout, split, args.profile_clock, 15)


def naive_threads(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error("--naive-threads: thread counts of 1 or more, separated by commas")
    return counts


# Against the naive peer at its best setting: faster by this much, or this much
# cheaper in CPU per notification.
PEER_RATE_GOAL = 1.3
PEER_CPU_GOAL = 0.5


def print_peer_goal(syncd: Run, peer: Run) -> None:
    rate = syncd.rate / peer.rate
    cpu = (syncd.cpu / syncd.notifications) / (peer.cpu / peer.notifications)
    verdict = "met" if rate >= PEER_RATE_GOAL or cpu <= PEER_CPU_GOAL else "NOT met"
    print(
        f"goal against the naive peer at its best ({peer.label}): >= {PEER_RATE_GOAL}x its "
        f"rate or <= {PEER_CPU_GOAL}x its CPU per notification, {syncd.label}: "
        f"{rate:.2f}x the rate, {cpu:.2f}x the CPU, {verdict}"
    )


if __name__ == "__main__":
    main()
