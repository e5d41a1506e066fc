"""A scrape of /status or /metrics costs the same with ten items waiting or a million.

They once grouped the whole outbox on every scrape. Now they read counts kept
as items change (checked against a full scan in ``test_outbox``): here every
statement a scrape runs is looked at, and none of them reads the items.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.service.daemon import Daemon
from syncd.store.contract import NewItem
from syncd.store.sqlite import Outbox
from tests.support.daemons import running_daemon
from tests.support.stores import claim, dead


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the outbox runs from now on, as SQLite ran it, but those of
    delivery and upkeep, which go on during a scrape (the daemon sends what
    ``fill`` queued) and are not what the scrape costs."""
    ran: list[str] = []
    opened = Outbox._open

    def scrape_side(sql: str) -> None:
        if not threading.current_thread().name.startswith(("syncd-store", "syncd-housekeeping")):
            ran.append(sql)

    def traced(self: Outbox) -> sqlite3.Connection:
        conn = opened(self)
        conn.set_trace_callback(scrape_side)
        return conn

    monkeypatch.setattr(Outbox, "_open", traced)
    return ran


@pytest.fixture
def daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statements: list[str]
) -> Iterator[Daemon]:
    """Its outbox's connections traced from the first."""
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as started:
        yield started


def fill(outbox: Outbox, count: int) -> None:
    with outbox.batch() as batch:
        batch.enqueue([NewItem("a", str(n % 50), {"n": n}) for n in range(count)], 0.0)
    for item in claim(outbox, limit=10, lease=30):
        dead(outbox, item.id, "HTTP 404")


def undelivered(path: Path) -> int:
    """Items waiting or in flight, counted by a scan of every item."""
    with sqlite3.connect(path) as db:
        sql = "SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
        return int(db.execute(sql).fetchone()[0])


def plan(path: Path, sql: str) -> str:
    with sqlite3.connect(path) as db:
        return " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))


def test_a_scrape_reads_no_item(daemon: Daemon, statements: list[str]) -> None:
    fill(daemon.outbox, 20_000)
    statements.clear()
    for path in ("/status", "/metrics"):
        assert requests.get(daemon.server.url + path, timeout=10).status_code == 200
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert queries, "the scrape read nothing from the outbox file"
    for sql in queries:
        steps = plan(daemon.outbox.path, sql)
        assert "outbox" not in steps.lower(), f"{sql!r} reads the items: {steps}"
    # The daemon's senders take items meanwhile: the kept count, read between two
    # full scans, lies between what they found.
    most = undelivered(daemon.outbox.path)
    status = requests.get(daemon.server.url + "/status", timeout=10).json()
    least = undelivered(daemon.outbox.path)
    assert 0 < least <= status["outbox_depth"] <= most
