"""A real PostgreSQL for the tests that need one: a database of its own per test.

The server is named by ``SYNCD_TEST_POSTGRES`` (a URL whose database the tests
may connect to, to create and drop others), by default the machine's own at
127.0.0.1:5432. Without a server the tests skip, saying why; under CI
(``CI=true``) they fail instead, so a run that should have tested the shared
store cannot pass without it.

A database per test, not a schema: advisory locks belong to a database, and
the chores' locks of one test's daemons must not be held by another's.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from syncd.store.postgresql import HEADS_SCAN, TALLIES_SCAN
from tests.support.waiting import wait_for

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("SYNCD_TEST_POSTGRES") or DEFAULT_SERVER


def with_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@functools.cache  # asked once per URL and test process, not once per test
def _unreachable(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def require_server() -> str:
    """The server's URL; the test skips when there is none (fails under CI)."""
    url = server_url()
    problem = _unreachable(url)
    if problem is not None:
        reason = f"no PostgreSQL at {url} (set SYNCD_TEST_POSTGRES): {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return url


@contextmanager
def database() -> Iterator[str]:
    """A fresh database, dropped afterwards with whatever is still connected to it."""
    server = require_server()
    name = f"syncd_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a database of this test's own (import this fixture to use it)."""
    with database() as url:
        yield url


Target = str | psycopg.Connection[Any]


def execute(target: Target, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement, as an operator would type it: on a connection of its own when
    ``target`` is a URL, else on the (autocommit) connection given."""
    if not isinstance(target, str):
        cursor = target.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description else []
    with psycopg.connect(target, autocommit=True) as conn:
        return execute(conn, sql, params)


def heads_consistent(url: Target) -> bool:
    """Whether a PostgreSQL outbox's heads table says what a full scan of its items says."""
    expected = {(u, r): (i, d, s) for u, r, i, d, s in execute(url, HEADS_SCAN)}
    actual = {
        (u, r): (i, d, s)
        for u, r, i, d, s in execute(url, "SELECT uid, room_id, item_id, due, set_at FROM heads")
    }
    return expected == actual


def tallies_consistent(url: Target) -> bool:
    """Whether the kept counts say what a full scan says (rows counted down to zero
    stay, as zero)."""
    expected = {(u, r, k): n for u, r, k, n in execute(url, TALLIES_SCAN)}
    rows = execute(url, "SELECT uid, room_id, kind, n FROM tallies WHERE n <> 0")
    return expected == {(u, r, k): n for u, r, k, n in rows}


def events_consistent(url: Target) -> bool:
    """Whether each kept event is referred to by as many items as it counts."""
    referred = dict(execute(url, "SELECT event_id, count(*) FROM outbox GROUP BY event_id"))
    kept = dict(execute(url, "SELECT event_id, refs FROM events"))
    return referred == kept


def backends(url: str) -> int:
    """Connections open to the database ``url`` names, this one aside."""
    ((count,),) = execute(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(count)


def terminate(url: str, application: str | None = None) -> int:
    """End every other backend of the database (or those of one application): a
    lost connection, a killed server process. Returns how many, once they are
    gone (a signalled backend lets go of its locks only as it exits)."""
    who = (
        "datname = current_database() AND pid <> pg_backend_pid() "
        "AND (%s::text IS NULL OR application_name = %s)"
    )
    rows = execute(url, f"SELECT pid FROM pg_stat_activity WHERE {who}", (application, application))
    pids = [pid for (pid,) in rows]
    execute(url, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS t(pid)", (pids,))
    wait_for(
        lambda: (
            not execute(url, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s::int[])", (pids,))
        ),
        what="the terminated backends to exit",
    )
    return len(pids)
