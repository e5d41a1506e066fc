"""``syncd run --store``: the database goes away and comes back. Real daemons, a real
PostgreSQL and the HipChat test server.

A server restart would disturb every other test using the machine's PostgreSQL;
what a restart does to a daemon (every connection ends, then new ones are
refused for a while, then accepted) is done here to one database alone: its
backends terminated, and connections to it refused (``ALLOW_CONNECTIONS
false``) until it is allowed again.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from syncd.testing.hipchat_server import HipChatServer
from tests.support import postgres
from tests.support.configs import trace_config
from tests.support.delivery import numbers
from tests.support.events import numbered_events
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.processes import Proc, cpu_seconds, start, terminate
from tests.support.waiting import wait_for

ROOMS = ("3001", "3002", "3003", "3004")
TOKENS = {room: f"outage-token-{room}" for room in ROOMS}
ENV = {f"HIPCHAT_TOKEN_{room}": token for room, token in TOKENS.items()}
WORKERS = 4


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, hipchat: HipChatServer) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "shop.yaml").write_text(trace_config(hipchat.url, ROOMS))
    return directory


def _queue_summary(url: str) -> object:
    with contextlib.suppress(psycopg.Error):
        return (
            postgres.execute(url, "SELECT state, count(*) FROM outbox GROUP BY state"),
            postgres.execute(url, "SELECT uid, room_id, item_id, due, set_at FROM heads"),
            postgres.execute(url, "SELECT extract(epoch FROM now())"),
        )
    return None


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _daemon_backends(url: str) -> list[int]:
    """The daemons' connections to the database, seen from the server's own (the
    database itself may refuse connections)."""
    rows = postgres.execute(
        postgres.require_server(),
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'syncd %%'",
        (_database(url),),
    )
    return [pid for (pid,) in rows]


def _kill_backends(url: str) -> int:
    """Every connection the daemons hold to the database, ended by the server."""
    pids = _daemon_backends(url)
    postgres.execute(
        postgres.require_server(),
        "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS t(pid)",
        (pids,),
    )
    wait_for(lambda: not set(pids) & set(_daemon_backends(url)), what="the backends to exit")
    return len(pids)


def _allow_connections(url: str, allowed: bool) -> None:
    server = postgres.require_server()
    postgres.execute(
        server, f'ALTER DATABASE "{_database(url)}" ALLOW_CONNECTIONS {str(allowed).lower()}'
    )


def _ready(proc: Proc) -> requests.Response:
    return requests.get(proc.url + "/readyz", timeout=10)


def _post(proc: Proc, events: list[dict[str, object]]) -> requests.Response:
    return requests.post(proc.url + "/v1/events", json=events, timeout=60)


def _post_until_taken(proc: Proc, events: list[dict[str, object]], timeout: float = 60) -> None:
    """Post as a client that honours 503 and Retry-After would, until stored."""
    answers: list[requests.Response] = []

    def taken() -> bool:
        answer = _post(proc, events)
        answers.append(answer)
        assert answer.status_code in (202, 503), answer.text
        if answer.status_code == 503:
            assert answer.headers.get("Retry-After"), answer.headers
        return answer.status_code == 202

    wait_for(taken, timeout=timeout, what="the events to be taken")


def _delivered(hipchat: HipChatServer) -> Counter[tuple[str, int]]:
    """Each event goes to every room: how many times each room got each one."""
    return Counter((room, n) for room in ROOMS for n in numbers(hipchat, room))


def _all_delivered(hipchat: HipChatServer, count: int) -> bool:
    return set(_delivered(hipchat)) >= {(room, n) for room in ROOMS for n in range(count)}


def _queue_some(proc: Proc, hipchat: HipChatServer, first: int, count: int) -> None:
    hipchat.misbehave(latency=0.05)
    for start_at in range(first, first + count, 10):
        assert _post(proc, numbered_events(start_at, 10)).status_code == 202


@pytest.mark.slow
def test_killed_backends_are_survived_without_a_restart(
    tmp_path: Path,
    config: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    """Every connection of the daemon ended mid-delivery: what was accepted is
    delivered, nothing twice beyond the leases in flight, and new events are
    taken again once the store is back, with no restart."""
    proc = start(
        config, tmp_path / "state", "--store", postgres_url, "--workers", str(WORKERS), env=ENV
    )
    try:
        _queue_some(proc, hipchat, 0, 40)
        assert _kill_backends(postgres_url) >= 2
        _post_until_taken(proc, numbered_events(40, 10))
        wait_for(lambda: _all_delivered(hipchat, 50), timeout=60, what="every event delivered")
        wait_for(lambda: _ready(proc).status_code == 200, timeout=30, what="ready again")
        assert _kill_backends(postgres_url) >= 1
        _post_until_taken(proc, numbered_events(50, 10))
        wait_for(lambda: _all_delivered(hipchat, 60), timeout=60, what="every event delivered")
        duplicated = sum(n - 1 for n in _delivered(hipchat).values())
        assert duplicated <= 2 * WORKERS, _delivered(hipchat)
        assert proc.popen.poll() is None
    finally:
        terminate(proc)
        print(proc.log, _queue_summary(postgres_url))  # shown when the test fails
    assert "Traceback" not in proc.log, proc.log


@pytest.mark.slow
def test_an_unreachable_database_makes_the_daemon_not_ready_until_it_is_back(
    tmp_path: Path,
    config: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    """Connections refused (as while a server restarts): not ready, naming why;
    events refused with 503 and Retry-After, fast; no busy loop; then, with the
    database back, ready again, and every event accepted before, during and after
    delivered."""
    proc = start(
        config, tmp_path / "state", "--store", postgres_url, "--workers", str(WORKERS), env=ENV
    )
    try:
        _queue_some(proc, hipchat, 0, 30)
        _allow_connections(postgres_url, False)
        try:
            _kill_backends(postgres_url)
            wait_for(lambda: _ready(proc).status_code == 503, timeout=30, what="not ready")
            why = _ready(proc).text
            assert "database" in why or "PostgreSQL" in why, why
            began = time.monotonic()
            refused = _post(proc, numbered_events(1000, 1))
            assert time.monotonic() - began < 5
            assert refused.status_code == 503, refused.text
            assert refused.headers.get("Retry-After")
            assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
            status = proc.status()
            assert status["outbox_writable"] is False
            cpu = cpu_seconds(proc.popen.pid)
            polls = time.monotonic()
            wait_for(
                lambda: time.monotonic() - polls > 3 and _ready(proc).status_code == 503,
                timeout=10,
            )
            assert cpu_seconds(proc.popen.pid) - cpu < 1.0, "busy while the database is away"
            assert proc.popen.poll() is None
        finally:
            _allow_connections(postgres_url, True)
        wait_for(lambda: _ready(proc).status_code == 200, timeout=60, what="ready again")
        _post_until_taken(proc, numbered_events(30, 10))
        wait_for(lambda: _all_delivered(hipchat, 40), timeout=60, what="every event delivered")
        assert not {n for _, n in _delivered(hipchat)} & {1000}
        duplicated = sum(n - 1 for n in _delivered(hipchat).values())
        assert duplicated <= WORKERS, _delivered(hipchat)
        assert proc.status()["outbox_writable"] is True
    finally:
        terminate(proc)
        print(proc.log, _queue_summary(postgres_url))  # shown when the test fails
    assert "Traceback" not in proc.log, proc.log
    assert "the store is reachable again" in proc.log or "takes new writes again" in proc.log


def test_database_helpers_touch_only_the_daemons(postgres_url: str) -> None:  # noqa: F811
    """The helpers above find the daemons' connections by name, not this test's."""
    with psycopg.connect(postgres_url, autocommit=True, application_name="bystander") as conn:
        assert _kill_backends(postgres_url) == 0
        conn.execute("SELECT 1")
