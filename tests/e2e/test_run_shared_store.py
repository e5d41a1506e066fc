"""``syncd run --store`` and ``syncd store``: real daemons on a real PostgreSQL,
delivering to the HipChat test server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from syncd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from syncd.store import pgschema
from syncd.testing.hipchat_server import HipChatServer
from tests.support import postgres
from tests.support.cli import run_cli
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.delivery import numbers
from tests.support.events import event, numbered_events
from tests.support.example import example
from tests.support.metrics import scraped
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.processes import Proc, run_syncd, start, terminate
from tests.support.waiting import wait_for

TOKENS = {"3001": "shared-store-token-3001"}
ENV = {"HIPCHAT_TOKEN_3001": TOKENS["3001"]}
PASSWORD = "pw-never-printed-7f3a9c"


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, hipchat: HipChatServer) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "shop.yaml").write_text(trace_config(hipchat.url, list(TOKENS)))
    return directory


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "store-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.mark.slow
def test_two_daemons_on_one_store_share_the_queue(
    tmp_path: Path,
    config: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    """Each daemon has its own state dir; what one takes in, the queue they share
    delivers, and neither keeps an outbox file of its own."""
    secret = _password_file(tmp_path)
    store = ("--store", postgres_url, "--store-password-file", str(secret))
    procs: list[Proc] = []
    try:
        procs.append(start(config, tmp_path / "state-1", *store, env=ENV))
        procs.append(
            start(config, tmp_path / "state-2", env={**ENV, "SYNCD_STORE_URL": postgres_url})
        )
        first, second = procs
        assert first.post_events(numbered_events(0, 1)).status_code == 202
        hipchat.wait_for_messages(1, room="3001", timeout=20)
        answer = second.post_events(numbered_events(1, 1))
        assert answer.status_code == 202, answer.text
        hipchat.wait_for_messages(2, room="3001", timeout=20)
        assert sorted(numbers(hipchat, "3001")) == [0, 1]
        rows = postgres.execute(postgres_url, "SELECT count(*) FROM outbox")
        assert rows[0][0] >= 2  # the items are the database's
        for proc in procs:
            wait_for(lambda p=proc: p.status()["outbox_depth"] == 0, timeout=20)
        for state in ("state-1", "state-2"):
            assert not (tmp_path / state / "outbox.db").exists()
            assert (tmp_path / state / "lock").exists()
    finally:
        for proc in procs:
            terminate(proc)
    for proc in procs:
        assert PASSWORD not in proc.log
        assert "shared store" in proc.log, proc.log


def delivered_by(proc: Proc) -> int:
    """The notifications this daemon delivered, as its /metrics counts them."""
    return int(scraped(proc.url).get("syncd_notifications_total", 0))


@contextmanager
def two_daemons(
    config: Path, top: Path, *flags: str, env: dict[str, str]
) -> Iterator[tuple[Proc, Proc]]:
    """Two daemons on one store (``flags`` name it), one send in flight each (two
    workers): the second is idle from its start, as nothing is queued yet."""
    procs: list[Proc] = []
    try:
        for n in (1, 2):
            procs.append(start(config, top / f"state-{n}", *flags, "--workers", "2", env=env))
        yield procs[0], procs[1]
    finally:
        for proc in procs:
            terminate(proc)


@pytest.mark.slow
def test_an_idle_daemon_takes_part_in_what_another_queued(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    """A daemon learns of new items from its own ingest; items another daemon queued
    behind rooms' heads wake nobody here. Idle, it must still look at the shared
    queue often, or a second daemon adds nothing for as long as it sleeps: 10
    rooms, 4 events each, 0.3 s an answer, everything posted to the first: alone
    it takes 12 s."""
    rooms = [str(3101 + n) for n in range(10)]
    tokens = room_tokens(*rooms)
    with HipChatServer(tokens, limits=None) as hipchat:
        hipchat.misbehave(latency=0.3)
        config = tmp_path / "config"
        config.mkdir()
        (config / "shop.yaml").write_text(trace_config(hipchat.url, rooms))
        store = ("--store", postgres_url)
        with two_daemons(config, tmp_path, *store, env=token_env(tokens)) as (first, second):
            assert first.post_events(numbered_events(0, 4)).status_code == 202
            hipchat.wait_for_messages(40, timeout=60)
            # A daemon counts a notification once HipChat has answered, after it arrived.
            counts: list[tuple[int, int]] = []

            def counted() -> bool:
                counts.append((delivered_by(first), delivered_by(second)))
                return sum(counts[-1]) == 40

            wait_for(counted, timeout=10, what="both daemons' counts")
        assert counts[-1][1] > 5, counts[-1]
        for room in rooms:
            assert numbers(hipchat, room) == [0, 1, 2, 3], room


@pytest.mark.slow
def test_an_idle_daemon_takes_over_what_a_stopped_one_queued_on_the_example(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    """examples/integrations.yaml, every field set: 10 new fingerprints of project
    search from its NYC datacenter (one room, so one send at a time), posted to a
    daemon that is then stopped. The other, idle since it started, delivers the
    rest within seconds, not once its idle wait (30 s) runs out."""
    with HipChatServer(example(tmp_path / "probe").rooms, limits=None) as hipchat:
        hipchat.misbehave(latency=0.3)
        ex = example(tmp_path, hipchat.url)
        store = ("--store", postgres_url, *ex.flags)
        with two_daemons(ex.config_dir, tmp_path, *store, env=ex.env) as (first, second):
            events = [
                event("search", f"digest-{n}", attributes={"datacenter": "nyc"}) for n in range(10)
            ]
            assert first.post_events(events).status_code == 202
            hipchat.wait_for_messages(1, timeout=10)
            terminate(first)
            taken_over = len(hipchat.messages)
            hipchat.wait_for_messages(10, timeout=15)
            # What the second delivered before the stop counts in ``taken_over`` too.
            wait_for(lambda: delivered_by(second) >= 10 - taken_over, timeout=10)
            wait_for(lambda: second.status()["outbox_depth"] == 0, timeout=10)
        assert (taken_over < 10, len(hipchat.messages)) == (True, 10)


def test_a_password_in_the_url_is_not_printed(
    tmp_path: Path,
    config: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    """The server trusts loopback, so the password is accepted and unused: what is
    checked is that the daemon's own words never carry it."""
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert with_password != postgres_url
    proc = start(config, tmp_path / "state", "--store", with_password, env=ENV)
    try:
        assert proc.status()["applied_revision"]
    finally:
        terminate(proc)
    assert PASSWORD not in proc.log
    assert "postgres:***@" in proc.log


def test_an_unreachable_store_is_a_usage_error_without_the_password(
    tmp_path: Path, config: Path
) -> None:
    secret = _password_file(tmp_path)
    result = run_syncd(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        "--allow-any-endpoint",
        "--allow-http-endpoint",
        "--store",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nothing?connect_timeout=2",
        "--store-password-file",
        str(secret),
        cwd=tmp_path,
        env=ENV,
    )
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "cannot use the store postgresql://postgres:***@127.0.0.1:1/" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_an_sqlite_store(tmp_path: Path, config: Path) -> None:
    result = run_cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        "--allow-any-endpoint",
        "--store",
        f"sqlite:{tmp_path / 'outbox.db'}",
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_USAGE
    assert "--store takes a shared PostgreSQL store" in result.stderr


def test_store_migrate_and_check_exit_codes(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    secret = str(_password_file(tmp_path))
    behind = run_cli("store", "check", "--store", postgres_url, cwd=tmp_path)
    assert behind.returncode == EXIT_FAILED, behind.stderr
    assert "behind" in behind.stdout
    migrated = run_cli(
        "store",
        "migrate",
        "--store-password-file",
        secret,
        cwd=tmp_path,
        env={"SYNCD_STORE_URL": postgres_url},
    )
    assert migrated.returncode == EXIT_OK, migrated.stderr
    assert f"-> {pgschema.LATEST}" in migrated.stdout
    current = run_cli(
        "store", "check", "--store", postgres_url, "--store-password-file", secret, cwd=tmp_path
    )
    assert current.returncode == EXIT_OK, current.stderr
    postgres.execute(
        postgres_url,
        "INSERT INTO syncd_schema (version, what, applied_by) VALUES (%s, 'later', 'test')",
        (pgschema.LATEST + 1,),
    )
    newer = run_cli("store", "check", "--store", postgres_url, cwd=tmp_path)
    assert newer.returncode == EXIT_FAILED
    assert "newer" in newer.stdout
    refused = run_cli("store", "migrate", "--store", postgres_url, cwd=tmp_path)
    assert refused.returncode == EXIT_FAILED
    for result in (behind, migrated, current, newer, refused):
        assert PASSWORD not in result.stdout + result.stderr


def test_store_commands_without_a_store_or_reachable_database(tmp_path: Path) -> None:
    missing = run_cli("store", "check", cwd=tmp_path, env={"SYNCD_STORE_URL": ""})
    assert missing.returncode == EXIT_USAGE
    assert "give --store postgresql://" in missing.stderr
    unreadable = run_cli(
        "store",
        "check",
        "--store",
        "postgresql://postgres@127.0.0.1:1/x",
        "--store-password-file",
        str(tmp_path / "absent"),
        cwd=tmp_path,
    )
    assert unreadable.returncode == EXIT_USAGE
    assert "cannot read --store-password-file" in unreadable.stderr
    secret = str(_password_file(tmp_path))
    unreachable = run_cli(
        "store",
        "migrate",
        "--store",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x?connect_timeout=2",
        "--store-password-file",
        secret,
        cwd=tmp_path,
    )
    assert unreachable.returncode == EXIT_USAGE, unreachable.stderr
    assert PASSWORD not in unreachable.stdout + unreachable.stderr
    no_target = run_cli(
        "store",
        "copy",
        "--from",
        f"sqlite:{tmp_path / 'x.db'}",
        cwd=tmp_path,
        env={"SYNCD_STORE_URL": ""},
    )
    assert no_target.returncode == EXIT_USAGE
    assert "give --to postgresql://" in no_target.stderr
