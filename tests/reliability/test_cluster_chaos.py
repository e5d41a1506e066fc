"""Three ``syncd run`` daemons on one PostgreSQL, under fire while they deliver.

A private PostgreSQL (restarting the machine's would end other tests'
connections), the HipChat test server answering every request 150 ms late,
200 rooms each served by an integration of its own, and a 201st room for the
digests of an integration with a 2 s frequency window. Events are posted
round-robin to the daemons, one per room per post, each carrying its
sequence number in its room; the digest integration's events ride along.
While the posts go on, a random daemon is killed with SIGKILL every 3 s and
started again on its state dir, every syncd connection is ended once with
``pg_terminate_backend``, and the server is restarted once.

Then: nothing accepted is lost (the queue holds nothing undelivered, and the
server got every room's every number); no room got a number before a smaller
one; a number was delivered twice only if a killed daemon held its lease
(counted in the database once the killed daemon's connections are gone) or it
was in flight when the connections went; each window's digest was queued
once and their counts add up to the digest events posted; every chore is
held (its lock taken, and its work done under it, since the restart dropped
every lock) by a live daemon; and each daemon's ``/status`` shows the three.

A post and a fault never overlap (a lock), so every post's outcome is known:
202, or 503 and posted again; a lost answer would make a duplicate event
that is no fault of delivery. A daemon that finds the database away as it
starts exits (a usage error, for its supervisor to retry); it is started
again, as a supervisor would. The faults' times and targets come from a
seeded random generator; the times they ran at are printed.

Scaled down from 20,000 events to 30 per room (6,000), and the kills to the
first 15 s of delivery (five), with 16 workers a daemon. The daemons run with
``--lease 10 --send-timeout 5`` rather than the default 120 s lease: the rooms
a killed daemon held wait 10 s for another daemon, not two minutes, and the
test takes some 50 to 70 s in all rather than 150 s. Each event costs
some 9 ms of CPU in syncd and PostgreSQL together: 20,000 would take 180 s of
CPU from the other tests of a busy CI machine.
``SYNCD_CHAOS_EVENTS_PER_ROOM=100`` runs the full 20,000.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from syncd.store.pgschema import lock_class
from syncd.store.postgresql import _CHORES, MEMBER_TTL, application_name
from syncd.testing import HipChatServer
from tests.support import postgres
from tests.support.configs import token_env, write_files
from tests.support.events import event
from tests.support.pgserver import PgServer, private_server
from tests.support.processes import FAST_RETRY, Proc, kill9, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

ROOMS = tuple(str(4000 + n) for n in range(200))
DIGEST_ROOM = "5000"
TOKENS = {room: f"chaos-token-{room}" for room in (*ROOMS, DIGEST_ROOM)}
DAEMONS = 3
WORKERS = 16
LATENCY = 0.15
PER_ROOM = int(os.environ.get("SYNCD_CHAOS_EVENTS_PER_ROOM") or 30)
POST_EVERY = 0.5  # one event per room per post
DIGESTS_PER_POST = 3
FREQUENCY = 2  # seconds: the digest integration's window
KILL_EVERY = 3.0
KILLS = 5
TERMINATE_AT = 4.5  # seconds into the faults, between two kills
RESTART_AT = 10.5
LEASE = 10.0  # how long a killed daemon's rooms wait for another (--lease)
SEND_TIMEOUT = 5.0  # less than the lease, as syncd run requires
LEASE_FLAGS = ("--lease", f"{LEASE:g}", "--send-timeout", f"{SEND_TIMEOUT:g}")
START_TRIES = 5
SEED = 20261203
SEQ = re.compile(r"seq: (\d+)")
MORE = re.compile(r"and (\d+) more occurrences? of this error")
DIGEST_UID = "chaos-digest"

Key = tuple[str, int]  # (room, sequence number)


def _integration(uid: str, endpoint: str, room: str, trigger: str) -> str:
    return f"""\
  - uid: {uid}
    project: {uid}
    name: {uid}
    trigger: {trigger}
    display: {{callstack: false, include_hostname: false, attribute_list: [seq]}}
    hipchat:
      endpoint: {endpoint}
      message_format: text
      rooms:
        - {{id: {room}, token: {{env: HIPCHAT_TOKEN_{room}}}}}
"""


def _config(endpoint: str) -> str:
    rooms = [_integration(f"chaos-{room}", endpoint, room, "{event: trace}") for room in ROOMS]
    digest = _integration(
        DIGEST_UID, endpoint, DIGEST_ROOM, f"{{event: trace, frequency: {FREQUENCY}s}}"
    )
    return "version: 1\nintegrations:\n" + "".join(rooms) + digest


def _post_body(seq: int) -> list[dict[str, Any]]:
    """Number ``seq`` for every room, and the next digest events."""
    rooms = [
        event(f"chaos-{room}", f"fp-{seq % 5}", attributes={"seq": str(seq)}) for room in ROOMS
    ]
    first = seq * DIGESTS_PER_POST
    digests = [
        event(DIGEST_UID, "digest", attributes={"seq": str(n)})
        for n in range(first, first + DIGESTS_PER_POST)
    ]
    return rooms + digests


def _seq(message: str) -> int:
    found = SEQ.search(message)
    assert found, message
    return int(found.group(1))


def _every(seconds: float, predicate: Callable[[], bool]) -> Callable[[], bool]:
    """``predicate`` asked at most once per ``seconds``: a poll that reads the
    database or the whole record of the server stays cheap."""
    asked = [0.0]

    def poll() -> bool:
        now = time.monotonic()
        if now - asked[0] < seconds:
            return False
        asked[0] = now
        return predicate()

    return poll


@dataclass(frozen=True)
class Disruption:
    """What one fault did: when, and the items whose lease it may have cost."""

    what: str
    at: float  # seconds into the faults
    leased: tuple[int, ...]  # outbox ids


class Cluster:
    """The daemons, one per slot: a slot is empty between a kill and the restart.
    ``quiet`` is held by a post and by a fault, so that the two never overlap."""

    def __init__(self, tmp_path: Path, config: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.url = url
        self.quiet = threading.Lock()
        self.procs: list[Proc | None] = [None] * DAEMONS
        self.owners: list[str] = [""] * DAEMONS
        self.started: list[Proc] = []
        self.dead: list[str] = []  # the owners killed
        self.joining: list[threading.Thread] = []
        self.failures: list[BaseException] = []
        self._turn = itertools.count()

    def _spawn(self, slot: int) -> Proc:
        state = self.tmp_path / f"state-{slot}"
        args = (*FAST_RETRY, *LEASE_FLAGS, "--store", self.url, "--workers", str(WORKERS))
        proc = spawn(self.config, state, *args, env=token_env(TOKENS))
        self.started.append(proc)
        return proc

    def start(self) -> None:
        """Start every slot's daemon, together; each is in once it knows its member id."""
        for slot, proc in [(slot, self._spawn(slot)) for slot in range(DAEMONS)]:
            self._admit(slot, proc)

    def restart(self, slot: int) -> None:
        """Start the slot's daemon again, waiting for it on a thread: the faults keep
        their times meanwhile."""
        proc = self._spawn(slot)
        thread = threading.Thread(target=self._join, args=(slot, proc), daemon=True)
        thread.start()
        self.joining.append(thread)

    def _join(self, slot: int, proc: Proc) -> None:
        try:
            self._admit(slot, proc)
        except BaseException as exc:  # pytest.fail raises a BaseException
            self.failures.append(exc)

    def _admit(self, slot: int, proc: Proc) -> None:
        """In once listening with its member row. A daemon that found the database
        away as it started exits (a usage error, for its supervisor to retry): so
        does this, a few times."""
        for _ in range(START_TRIES):
            wait_for(partial(_listening_or_gone, proc), timeout=60, what="the daemon to listen")
            if proc.popen.poll() is None:
                break
            assert "cannot use the store" in proc.log, proc.log[-3000:]
            proc = self._spawn(slot)
        wait_listening(proc)
        owner: list[str] = []
        wait_for(lambda: _own_id(proc, owner), timeout=60, what="its member row")
        self.owners[slot] = owner[0]
        self.procs[slot] = proc

    def settle(self) -> None:
        """Wait for the daemons started again; what failed there is raised here."""
        for thread in self.joining:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a daemon started again never came in"
        if self.failures:
            raise self.failures[0]

    def live(self) -> list[int]:
        return [slot for slot, proc in enumerate(self.procs) if proc is not None]

    def next_live(self) -> Proc | None:
        live = [proc for proc in self.procs if proc is not None]
        return live[next(self._turn) % len(live)] if live else None

    def kill(self, slot: int) -> tuple[int, ...]:
        """SIGKILL, then, once the server has ended its connections, the items still
        leased to it: nothing it did can change after that, so these, and only
        these, may be sent again when their leases run out."""
        proc, owner = self.procs[slot], self.owners[slot]
        assert proc is not None
        kill9(proc)
        self.procs[slot] = None
        self.owners[slot] = ""
        self.dead.append(owner)
        name = application_name(owner)
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        wait_for(
            lambda: postgres.execute(self.url, query, (name,))[0][0] == 0,
            timeout=60,
            what="the killed daemon's backends to end",
        )
        rows = postgres.execute(
            self.url, "SELECT id FROM outbox WHERE state = 'inflight' AND owner = %s", (owner,)
        )
        return tuple(item for (item,) in rows)

    def stop(self) -> None:
        for thread in self.joining:
            thread.join(timeout=120)
        for proc in self.started:
            if proc.popen.poll() is None:
                try:
                    terminate(proc, timeout=20)
                except Exception:  # killed by terminate; the test's outcome stands
                    proc.stop()

    def logs(self) -> str:
        """The end of each daemon's log; each whole in a file beside the state dirs."""
        for n, proc in enumerate(self.started):
            (self.tmp_path / f"daemon-{n}.log").write_text(proc.log)
        tails = "\n".join(f"--- daemon {n}\n{p.log[-3000:]}" for n, p in enumerate(self.started))
        return f"{tails}\n(whole logs: {self.tmp_path}/daemon-*.log)"


def _listening_or_gone(proc: Proc) -> bool:
    listening = any("listening on" in line for line in list(proc.lines))
    return listening or proc.popen.poll() is not None


def _reached(moment: float, stop: threading.Event | None = None) -> Callable[[], bool]:
    """Whether the monotonic clock reached ``moment`` (or ``stop`` is set)."""
    return lambda: (stop is not None and stop.is_set()) or time.monotonic() >= moment


def _own_id(proc: Proc, found: list[str]) -> bool:
    """The daemon's member id, from its ``/status`` (the owner of its leases)."""
    if proc.popen.poll() is not None:
        pytest.fail(f"the daemon exited: {proc.log[-3000:]}")
    try:
        cluster = proc.status().get("cluster") or {}
    except requests.RequestException:
        return False
    found.extend(m["id"] for m in cluster.get("members", []) if m.get("self"))
    return bool(found)


class Poster:
    """Posts ``PER_ROOM`` times, every ``POST_EVERY`` seconds, to the live daemons in
    turn; a 503 is posted again (to the next daemon). Runs on a thread of its own;
    what failed there is raised by :meth:`join`."""

    def __init__(self, cluster: Cluster, stop: threading.Event) -> None:
        self.cluster = cluster
        self.stop = stop
        self.began = 0.0
        self.posted = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for seq in range(PER_ROOM):
                moment = self.began + seq * POST_EVERY
                wait_for(_reached(moment, self.stop), timeout=600, what="the next post's time")
                if self.stop.is_set():
                    return
                body = _post_body(seq)
                wait_for(partial(self._taken, body), timeout=120, what=f"post {seq} taken")
                self.posted = seq + 1
        except BaseException as exc:  # pytest.fail raises a BaseException
            self.failure = exc

    def _taken(self, body: list[dict[str, Any]]) -> bool:
        with self.cluster.quiet:
            proc = self.cluster.next_live()
            if proc is None:
                return False
            answer = requests.post(proc.url + "/v1/events", json=body, timeout=60)
        if answer.status_code == 503:
            return self.stop.is_set()
        assert answer.status_code == 202, answer.text
        return True

    def join(self, thread: threading.Thread) -> None:
        thread.join(timeout=300)
        assert not thread.is_alive(), "the poster did not finish"
        if self.failure is not None:
            raise self.failure


def _in_flight(url: str, dead: list[str]) -> tuple[int, ...]:
    """The items the daemons still running hold (a killed one's are counted at its
    kill); a daemon starting may hold some before it is in."""
    rows = postgres.execute(
        url, "SELECT id FROM outbox WHERE state = 'inflight' AND owner <> ALL(%s)", (dead,)
    )
    return tuple(item for (item,) in rows)


def _terminate_all(url: str) -> None:
    """Every syncd connection ended by the server."""
    rows = postgres.execute(
        url, "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'syncd %%'"
    )
    pids = [pid for (pid,) in rows]
    assert pids, "no syncd connection to end"
    postgres.execute(
        url, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS t(pid)", (pids,)
    )
    wait_for(
        lambda: (
            not postgres.execute(
                url, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s::int[])", (pids,)
            )
        ),
        timeout=30,
        what="the terminated backends to exit",
    )


def _faults(cluster: Cluster, server: PgServer, rng: random.Random) -> list[Disruption]:
    """The kills, the termination and the restart, each at its time, none during a
    post; a killed daemon is started again at once."""
    plan = sorted(
        [(KILL_EVERY * (n + 1), "kill") for n in range(KILLS)]
        + [(TERMINATE_AT, "terminate"), (RESTART_AT, "restart")]
    )
    began = time.monotonic()
    done: list[Disruption] = []
    for at, what in plan:
        wait_for(_reached(began + at), timeout=600, what=f"{what} at {at}")
        # One daemon at least goes on delivering: a kill waits for a restart if need be.
        wait_for(lambda: len(cluster.live()) >= 2, timeout=120, what="two live daemons")
        slot = rng.choice(cluster.live())
        with cluster.quiet:
            if what == "kill":
                leased = cluster.kill(slot)
            else:
                leased = _in_flight(cluster.url, cluster.dead)
                if what == "terminate":
                    _terminate_all(cluster.url)
                else:
                    server.restart()
        done.append(Disruption(what, round(time.monotonic() - began, 1), leased))
        if what == "kill":
            cluster.restart(slot)
    return done


def _undelivered(url: str) -> bool:
    ((open_items, waiting),) = postgres.execute(
        url,
        "SELECT (SELECT count(*) FROM outbox WHERE state <> 'delivered'), "
        "(SELECT count(*) FROM windows WHERE pending > 0)",
    )
    return bool(open_items or waiting)


def _received(hipchat: HipChatServer) -> dict[str, list[int]]:
    """Each room's numbers in the order they arrived."""
    got: dict[str, list[int]] = {room: [] for room in TOKENS}
    for message in hipchat.messages:
        got[message.room].append(_seq(str(message.body["message"])))
    return got


def _keys(url: str, ids: list[int]) -> dict[int, Key]:
    """Outbox ids to the room and number of the event each sends."""
    rows = postgres.execute(
        url,
        "SELECT o.id, o.room_id, (e.body::jsonb -> 'attributes' ->> 'seq')::int FROM outbox o "
        "JOIN events e ON e.event_id = o.event_id WHERE o.id = ANY(%s::bigint[])",
        (sorted(set(ids)),),
    )
    return {item: (room, seq) for item, room, seq in rows}


def _inversions(numbers: list[int]) -> int:
    first = list(dict.fromkeys(numbers))
    return sum(1 for a, b in itertools.pairwise(first) if b < a)


def _check_rooms(got: dict[str, list[int]]) -> dict[str, int]:
    lost = {room: sorted(set(range(PER_ROOM)) - set(got[room])) for room in ROOMS}
    lost = {room: missing for room, missing in lost.items() if missing}
    inversions = {room: _inversions(got[room]) for room in ROOMS}
    extra = {room: sorted(set(got[room]) - set(range(PER_ROOM))) for room in ROOMS}
    assert not lost, f"lost: {lost}"
    assert not any(extra.values()), f"numbers never posted: {extra}"
    assert sum(inversions.values()) == 0, {r: got[r] for r, n in inversions.items() if n}
    return {"lost": 0, "inversions": 0}


def _extra(got: dict[str, list[int]]) -> dict[Key, int]:
    """How many times more than once each (room, number) arrived."""
    counted = Counter((room, n) for room, numbers in got.items() for n in numbers)
    return {key: count - 1 for key, count in counted.items() if count > 1}


def _leased(disruptions: list[Disruption], kills: bool) -> list[int]:
    return [item for d in disruptions if (d.what == "kill") == kills for item in d.leased]


def _evidence(url: str, keys: set[Key], hipchat: HipChatServer) -> list[object]:
    """For each (room, number): its outbox rows, and when each copy arrived."""
    found: list[object] = []
    for room, seq in sorted(keys):
        rows = postgres.execute(
            url,
            "SELECT o.id, o.state, o.owner, o.lease, o.attempts FROM outbox o "
            "JOIN events e ON e.event_id = o.event_id "
            "WHERE o.room_id = %s AND (e.body::jsonb -> 'attributes' ->> 'seq')::int = %s",
            (room, seq),
        )
        arrived = [
            round(m.time, 3)
            for m in hipchat.messages_for(room)
            if _seq(str(m.body["message"])) == seq
        ]
        found.append({"room": room, "seq": seq, "rows": rows, "arrived": arrived})
    return found


def _check_duplicates(
    url: str, got: dict[str, list[int]], disruptions: list[Disruption], hipchat: HipChatServer
) -> dict[str, int]:
    """Each extra delivery was of an item a killed daemon still held, or one in
    flight when the connections went; at most one per such lease."""
    extra = _extra(got)
    kills, others = _leased(disruptions, kills=True), _leased(disruptions, kills=False)
    keys = _keys(url, kills + others)
    leases = Counter(keys[item] for item in kills + others)
    by_kills = {keys[item] for item in kills}
    unexplained = set(extra) - set(leases)
    assert not unexplained, f"sent again with no lease lost: {_evidence(url, unexplained, hipchat)}"
    assert all(count <= leases[key] for key, count in extra.items()), (extra, leases)
    return {
        "duplicates": sum(extra.values()),
        "of_items_a_killed_daemon_held": sum(extra.get(key, 0) for key in by_kills),
        "leased_at_kills": len(kills),
        "in_flight_at_database_faults": len(others),
    }


def _check_digests(url: str, got: list[int], hipchat: HipChatServer, posted: int) -> dict[str, int]:
    """Each window's digest queued once: the counts of the digest integration's
    items add up to the events posted, one item per last event; and the server got
    each, saying the count the item holds."""
    rows = postgres.execute(
        url,
        "SELECT (e.body::jsonb -> 'attributes' ->> 'seq')::int, o.count FROM outbox o "
        "JOIN events e ON e.event_id = o.event_id WHERE o.uid = %s",
        (DIGEST_UID,),
    )
    queued = Counter(seq for seq, _ in rows)
    assert all(n == 1 for n in queued.values()), f"a digest queued twice: {queued}"
    counts = dict(rows)
    assert sum(counts.values()) == posted * DIGESTS_PER_POST, counts
    windows = sum(1 for c in counts.values() if c > 1)
    assert windows >= 3, f"too few windows aggregated to test their digests: {counts}"
    assert set(got) == set(counts), (sorted(got), sorted(counts))
    for message in hipchat.messages_for(DIGEST_ROOM):
        text = str(message.body["message"])
        more = MORE.search(text)
        assert counts[_seq(text)] == (int(more.group(1)) + 1 if more else 1), text
    return {"digests": len(counts), "windows_flushed": windows}


def _chores_held(url: str, owners: list[str]) -> set[str]:
    """The chores whose lock a live daemon's connection holds (session locks, taken
    only when the chore runs, and dropped by the restart)."""
    key = lock_class("public", "chore") & 0xFFFFFFFF
    rows = postgres.execute(
        url,
        "SELECT l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted "
        "AND l.classid::bigint = %s AND a.application_name = ANY(%s)",
        (key, [application_name(o) for o in owners]),
    )
    names = {number: name for name, number in _CHORES.items()}
    return {names[objid] for (objid,) in rows if objid in names}


def _members(proc: Proc) -> set[str]:
    cluster = proc.status().get("cluster") or {}
    return {m["id"] for m in cluster.get("members", [])}


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with private_server() as server:
        yield server


@pytest.mark.slow
def test_three_daemons_lose_nothing_through_kills_and_a_database_restart(
    tmp_path: Path, pg: PgServer
) -> None:
    rng = random.Random(SEED)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE syncd")
    url = pg.database_url("syncd")
    with HipChatServer(TOKENS, limits=None) as hipchat:
        hipchat.misbehave(latency=LATENCY)
        config = write_files(tmp_path / "config", ("chaos.yaml", _config(hipchat.url)))
        cluster = Cluster(tmp_path, config, url)
        stop = threading.Event()
        poster = Poster(cluster, stop)
        thread = threading.Thread(target=poster.run, name="poster", daemon=True)
        faults: list[Disruption] = []
        began = time.monotonic()
        try:
            cluster.start()
            started = time.monotonic()
            poster.began = started
            thread.start()
            faults = _faults(cluster, pg, rng)
            poster.join(thread)
            cluster.settle()
            wait_for(
                _every(1.0, lambda: not _undelivered(url)),
                timeout=LEASE + 120,
                what="every notification delivered",
            )
            delivered = time.monotonic()
            got = _received(hipchat)
            figures = {
                **_check_rooms(got),
                **_check_duplicates(url, got, faults, hipchat),
                **_check_digests(url, got[DIGEST_ROOM], hipchat, poster.posted),
            }
            assert poster.posted == PER_ROOM
            wait_for(
                _every(1.0, lambda: _chores_held(url, cluster.owners) == set(_CHORES)),
                timeout=90,
                what=f"every chore held by a live daemon ({set(_CHORES)})",
            )
            live = [p for p in cluster.procs if p is not None]
            wait_for(
                _every(1.0, lambda: all(_members(p) == set(cluster.owners) for p in live)),
                timeout=MEMBER_TTL + 30,
                what="three members in every daemon's /status",
            )
            print(
                f"figures: {figures}; faults: {[(f.what, f.at, len(f.leased)) for f in faults]}; "
                f"started in {started - began:.1f} s, delivered {delivered - started:.1f} s "
                f"after the first post, {len(hipchat.messages)} messages"
            )
        finally:
            stop.set()
            if thread.ident is not None:
                thread.join(timeout=60)
            cluster.stop()
            (tmp_path / "postgresql.log").write_text(pg.log())
            print(cluster.logs(), pg.log()[-3000:])  # shown when the test fails
    for proc in cluster.started:
        assert "Traceback" not in proc.log, proc.log[-6000:]
