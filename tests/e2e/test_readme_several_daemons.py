"""The README's "Several daemons" steps, run as written: its SQL as a superuser
types it, its ``syncd store migrate`` and ``store check`` lines in a shell, then
two daemons from its systemd drop-in as systemd would run them on two hosts
(the operator's files copied into a credentials directory as the
``LoadCredential=`` lines say, ``${CREDENTIALS_DIRECTORY}`` expanded, the
``ExecStart`` split into words), against the machine's PostgreSQL and the
HipChat test server. Only what belongs to this machine is changed, and every
change is listed below.

Roles belong to the whole server, not to one database: the README's ``syncd``
(both the role and its database) and ``syncd_daemon`` are given names of this
run's own, ``syncd_readme_<hex>`` and ``syncd_readme_<hex>_daemon``, so that runs
side by side, or a ``syncd`` role someone made on the server, are left alone.
The names are replaced as whole SQL words only (``syncd`` in ``syncd_daemon`` is
another word), and the database and the roles are dropped afterwards.

The server trusts loopback, so the password the SQL sets is accepted and never
checked: what is checked is that it reaches the daemons as the README says (a
credential) and that none of them ever shows it.

Without PostgreSQL the tests skip, saying why; under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests

from syncd.testing import HipChatServer
from tests.e2e.test_readme_git_systemd import credentials, exec_starts, verify
from tests.support import postgres
from tests.support.configs import trace_config, write_files
from tests.support.delivery import numbers
from tests.support.events import numbered_events
from tests.support.paths import ROOT
from tests.support.processes import Proc, start_as_unit, terminate
from tests.support.waiting import wait_for

SECTION = "## Several daemons\n"
NEXT_SECTION = "## Monitoring\n"
# The sentence before each block this test runs.
DATABASE_MARKER = "As a superuser (`psql -U postgres`)"
MIGRATE_MARKER = "create syncd's\ntables and check them"
DAEMON_ROLE_MARKER = "give another role the rest"
UNIT_MARKER = "then add this with `systemctl edit syncd`"

PASSWORD = "readme-store-password-5e1c"
DAEMON_PASSWORD = "readme-daemon-password-c07a"
# The README's passwords in its SQL, and this run's, which its hosts keep in a file.
PASSWORDS = {"'change-me'": f"'{PASSWORD}'", "'change-me-too'": f"'{DAEMON_PASSWORD}'"}
ROOMS = ("4201", "4202")
ROOM_TOKENS = {room: f"readme-several-room-token-{room}" for room in ROOMS}
INGEST_TOKEN = "readme-several-ingest-token-93d1"
AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
EVENTS = 12


def section() -> str:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(SECTION) == 1, SECTION
    start = readme.index(SECTION)
    return readme[start : readme.index(NEXT_SECTION, start)]


def block_after(marker: str, language: str) -> str:
    """The first fenced ``language`` block after the sentence ``marker``."""
    text = section()
    assert text.count(marker) == 1, marker
    after = text[text.index(marker) :]
    match = re.search(rf"^```{language}\n(.*?)^```$", after, re.M | re.S)
    assert match is not None, f"no ```{language} block after {marker!r}"
    return match.group(1)


@dataclass(frozen=True)
class Names:
    """What this run calls the README's role, daemon role and database."""

    owner: str

    @property
    def daemon(self) -> str:
        return f"{self.owner}_daemon"


def sql_statements(block: str, names: Names) -> list[str]:
    """The block's statements, the README's names and passwords replaced: its
    ``syncd`` (a role and a database) and ``syncd_daemon`` as whole words only."""
    for readme, ours in PASSWORDS.items():
        block = block.replace(readme, ours)
    renamed = re.sub(
        r"\bsyncd(_daemon)?\b",
        lambda found: names.daemon if found.group(1) else names.owner,
        block,
    )
    return [statement.strip() for statement in renamed.split(";") if statement.strip()]


def store_url(server: str, user: str, database: str) -> str:
    """The superuser's server URL with the README's user and database instead."""
    parts = urlsplit(server)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}", path=f"/{database}"))


@dataclass(frozen=True)
class Here:
    """What this machine has in place of the README's values."""

    syncd: str
    etc: str  # where the operator keeps the files the unit loads as credentials
    store: str  # the README's store URL, on this server, with this run's names
    hipchat: str


README_STORE = "postgresql://syncd@db.example.com/syncd"
# Each value of the README's blocks that names a machine, and what a run here
# gives instead; nothing else in them is changed.
SUBSTITUTIONS: dict[str, Callable[[Here], str]] = {
    # The README installs syncd in /opt/syncd; here it is this virtualenv's.
    "/opt/syncd/bin/syncd": lambda here: here.syncd,
    "/etc/syncd": lambda here: here.etc,
    # The machine's server and this run's role and database (see the module's text).
    README_STORE: lambda here: here.store,
    # Plain http, hence --allow-http-endpoint below.
    "https://hipchat.example.com": lambda here: here.hipchat,
}
# Each host has /var/lib/syncd; two daemons on one machine need one each.
README_STATE = "/var/lib/syncd"
# Flags a loopback run needs beyond the README's, each with why.
ADDED_FLAGS: dict[tuple[str, ...], str] = {
    ("--allow-http-endpoint",): "the HipChat test server speaks http, not https",
    ("--listen", "127.0.0.1:0"): "a free loopback port each: the README's 0.0.0.0:8514 "
    "is one port per host, and two daemons share this one",
}


def substituted(text: str, here: Here) -> str:
    for value, replacement in SUBSTITUTIONS.items():
        if value in text:
            text = text.replace(value, replacement(here))
    return text


def command(unit: str, credentials_dir: Path, state: Path) -> list[str]:
    """The ``ExecStart`` words, ``${CREDENTIALS_DIRECTORY}`` expanded in each (as
    systemd expands ``${NAME}`` within a word) and this host's state dir, then
    the flags added."""
    (exec_start,) = exec_starts(unit)
    words = [
        word.replace("${CREDENTIALS_DIRECTORY}", str(credentials_dir)).replace(
            README_STATE, str(state)
        )
        for word in shlex.split(exec_start)
    ]
    assert not [word for word in words if "$" in word], words
    return [*words, *(word for flag in ADDED_FLAGS for word in flag)]


@dataclass(frozen=True)
class Cluster:
    server: str  # the superuser's URL
    names: Names
    here: Here


def _run_sql(url: str, statements: list[str]) -> None:
    """Each statement on its own, as psql sends them (CREATE DATABASE cannot run in
    a transaction)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def _drop(server: str, names: Names) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{names.owner}" WITH (FORCE)'.encode())
        for role in (names.daemon, names.owner):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"'.encode())


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(ROOM_TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, hipchat: HipChatServer) -> Iterator[Cluster]:
    """The README's database made by its SQL, and the operator's files in /etc/syncd:
    the password, the ingest token and the integrations."""
    server = postgres.require_server()
    names = Names(f"syncd_readme_{uuid.uuid4().hex[:12]}")
    here = Here(
        syncd=str(Path(sys.executable).parent / "syncd"),
        etc=str(tmp_path / "etc"),
        store=store_url(server, names.owner, names.owner),
        hipchat=hipchat.url,
    )
    write_files(
        Path(here.etc),
        ("store-password", PASSWORD + "\n"),
        ("ingest-token", INGEST_TOKEN + "\n"),
        ("integrations/shop.yaml", trace_config(hipchat.url, ROOMS)),
    )
    try:
        _run_sql(server, sql_statements(block_after(DATABASE_MARKER, "sql"), names))
        yield Cluster(server, names, here)
    finally:
        _drop(server, names)


def shell(block: str, here: Here, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The block pasted into bash, stopping at the first command that fails."""
    return subprocess.run(
        ["bash", "-e", "-c", substituted(block, here)],
        cwd=cwd,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def load_credentials(unit: str, credentials_dir: Path) -> None:
    """The unit's ``LoadCredential=`` files copied in, as systemd does at start."""
    credentials_dir.mkdir(mode=0o700)
    for credential, source in credentials(unit).items():
        path = credentials_dir / credential
        shutil.copyfile(source, path)
        path.chmod(0o400)


def start_host(unit: str, root: Path) -> Proc:
    """One host's daemon: its credentials directory and state dir under ``root``."""
    root.mkdir()
    load_credentials(unit, root / "credentials")
    state = root / "state"
    state.mkdir(mode=0o700)  # the unit's StateDirectory=, made by systemd
    # Environment= lines the operator adds for the rooms' tokens.
    tokens = {f"HIPCHAT_TOKEN_{room}": token for room, token in ROOM_TOKENS.items()}
    return start_as_unit(command(unit, root / "credentials", state), root / "credentials", tokens)


def status(proc: Proc) -> dict[str, Any]:
    answer = requests.get(proc.url + "/status", headers=AUTH, timeout=5)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def members(proc: Proc) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (status(proc).get("cluster") or {}).get("members", [])
    return found


def drained(proc: Proc) -> bool:
    return bool(status(proc)["outbox_depth"] == 0)


def sees_members(proc: Proc, count: int) -> bool:
    return len(members(proc)) == count


def post(proc: Proc, events: list[dict[str, Any]]) -> None:
    answer = requests.post(proc.url + "/v1/events", json=events, headers=AUTH, timeout=30)
    assert answer.status_code == 202, answer.text


def exposed(proc: Proc) -> str:
    """What a running daemon shows: its log so far, ``/status`` and ``/metrics``."""
    metrics = requests.get(proc.url + "/metrics", headers=AUTH, timeout=5).text
    return proc.log + json.dumps(status(proc)) + metrics


def deliver_through(procs: list[Proc], hipchat: HipChatServer) -> None:
    """Events posted to each daemon in turn, one request at a time: every room gets
    every event once, in the order posted, whichever daemon took it and whichever
    sent it."""
    for n in range(EVENTS):
        post(procs[n % len(procs)], numbered_events(n, 1))
    for room in ROOMS:
        hipchat.wait_for_messages(EVENTS, room=room, timeout=30)
    for proc in procs:
        wait_for(partial(drained, proc), timeout=20, what="nothing left to send")
    for room in ROOMS:
        assert numbers(hipchat, room) == list(range(EVENTS)), room


def migrate_as_written(cluster: Cluster, tmp_path: Path) -> str:
    """The README's migrate-and-check lines; what they printed."""
    done = shell(block_after(MIGRATE_MARKER, "sh"), cluster.here, tmp_path)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "schema version 0 -> " in printed and "up to date" in printed, printed
    return printed


def unit_as_written(here: Here) -> str:
    """The drop-in with this machine's values; each one the README's names."""
    unit = block_after(UNIT_MARKER, "ini")
    for value in (*SUBSTITUTIONS, README_STATE):
        assert value in unit, f"the README's unit no longer names {value}"
    return substituted(unit, here)


@pytest.mark.slow
def test_the_readmes_steps_run_two_daemons_on_one_database(
    tmp_path: Path, cluster: Cluster, hipchat: HipChatServer
) -> None:
    """Seen to fail with the README changed: the password's credential renamed in
    ``LoadCredential=`` only (the daemon cannot read the file: never listening),
    ``--ingest-token-file`` left out (the daemons would take anyone's events),
    ``OWNER syncd`` left out of the SQL (the role may not create the tables)."""
    printed = migrate_as_written(cluster, tmp_path)
    unit = unit_as_written(cluster.here)
    procs: list[Proc] = []
    try:
        for n in range(2):
            procs.append(start_host(unit, tmp_path / f"host-{n}"))
        for proc in procs:
            wait_for(partial(sees_members, proc, 2), timeout=30, what="two members")
            refused = requests.get(proc.url + "/status", timeout=5)
            assert refused.status_code == 401, "a daemon answered without the ingest token"
        deliver_through(procs, hipchat)
        seen = {member["id"] for proc in procs for member in members(proc)}
        assert len(seen) == 2, seen
        shown = "".join(exposed(proc) for proc in procs)
    finally:
        codes = [terminate(proc) for proc in procs]
    assert codes == [0, 0], [proc.log[-3000:] for proc in procs]
    for text in (printed, shown, *(proc.log for proc in procs)):
        assert PASSWORD not in text
        assert INGEST_TOKEN not in text
        assert not [token for token in ROOM_TOKENS.values() if token in text]


@pytest.mark.slow
def test_the_readmes_daemon_role_runs_on_tables_it_may_not_change(
    tmp_path: Path, cluster: Cluster, hipchat: HipChatServer
) -> None:
    """The grants, run as the README says (a superuser in syncd's database, after the
    owner migrated), then a daemon under that role: it starts and delivers, may
    neither create nor drop a table, and may use a table and a sequence the owner
    adds later, as a later migration would. Seen to fail with the README's block
    without its sequence grant (the first batch cannot draw ids) or without its
    default privileges (the later table is refused)."""
    migrate_as_written(cluster, tmp_path)
    names = cluster.names
    _run_sql(
        postgres.with_database(cluster.server, names.owner),
        sql_statements(block_after(DAEMON_ROLE_MARKER, "sql"), names),
    )
    readme_daemon_url = README_STORE.replace("syncd@", "syncd_daemon@", 1)
    assert readme_daemon_url in section(), "the README names the daemons' URL"
    daemon_url = store_url(cluster.server, names.daemon, names.owner)
    here = Here(cluster.here.syncd, cluster.here.etc, daemon_url, cluster.here.hipchat)
    write_files(Path(here.etc), ("store-password", DAEMON_PASSWORD + "\n"))
    proc = start_host(unit_as_written(here), tmp_path / "host")
    try:
        wait_for(partial(sees_members, proc, 1), timeout=30, what="the daemon a member")
        deliver_through([proc], hipchat)
    finally:
        code = terminate(proc)
    assert code == 0, proc.log[-3000:]
    assert DAEMON_PASSWORD not in proc.log
    for statement in ("CREATE TABLE intruder (x int)", "DROP TABLE outbox"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _run_sql(daemon_url, [statement])
    _run_sql(cluster.here.store, ["CREATE TABLE later (x int)", "CREATE SEQUENCE later_ids"])
    _run_sql(daemon_url, ["INSERT INTO later VALUES (1)", "SELECT nextval('later_ids')"])


def test_the_readmes_unit_is_a_valid_drop_in_for_the_shipped_unit(tmp_path: Path) -> None:
    """The block as ``systemctl edit syncd`` adds it to the shipped unit."""
    here = Here(
        syncd=str(Path(sys.executable).parent / "syncd"),
        etc=str(tmp_path / "etc"),
        store="postgresql://syncd@127.0.0.1:9/syncd",
        hipchat="http://127.0.0.1:9",
    )
    shipped = (ROOT / "contrib" / "systemd" / "syncd.service").read_text()
    path = tmp_path / "syncd.service"
    path.write_text(shipped.replace("ExecStart=/opt/syncd/bin/syncd", f"ExecStart={here.syncd}"))
    drop_in = tmp_path / "syncd.service.d" / "several.conf"
    drop_in.parent.mkdir()
    drop_in.write_text(substituted(block_after(UNIT_MARKER, "ini"), here))
    assert verify(path) == []
