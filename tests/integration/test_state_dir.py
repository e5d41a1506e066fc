"""The state dir is private, and held by one daemon at a time."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import Failure
from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files
from tests.support.lastgood import holds
from tests.support.waiting import wait_for


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    return write_files(tmp_path / "config", ("a.yaml", minimal("a")))


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_everything_in_the_state_dir_is_private_under_umask_022(
    config: Path, tmp_path: Path, loose_umask: None
) -> None:
    state = tmp_path / "state"
    daemon = Daemon(DaemonConfig(config, state, port=0))
    try:
        assert daemon.start().ok
        # A project no integration serves: written to the outbox, never sent anywhere.
        event = {"project": "nosuch", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
        assert daemon.ingest.submit([event]).notifications == 0
        wait_for(lambda: holds(state / "last-known-good", "a.yaml"), what="the copy")
        assert mode(state) == 0o700
        files = [p for p in state.rglob("*") if not p.is_symlink()]
        assert {p.name for p in files} >= {"outbox.db", "outbox.db-wal", "outbox.db-shm", "lock"}
        for path in files:
            assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    finally:
        daemon.shutdown()


def test_a_second_daemon_on_the_same_state_dir_is_refused_with_the_holders_pid(
    config: Path, tmp_path: Path
) -> None:
    first = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    try:
        with pytest.raises(Failure, match=rf"another syncd \(PID {os.getpid()}\) is running"):
            Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    finally:
        first.shutdown()
    Daemon(DaemonConfig(config, tmp_path / "state", port=0)).shutdown()


def test_files_left_readable_by_an_older_run_are_made_private(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "outbox.db").touch()
    (state / "outbox.db").chmod(0o644)
    Daemon(DaemonConfig(config, state, port=0)).shutdown()
    assert (mode(state), mode(state / "outbox.db")) == (0o700, 0o600)


def test_a_restart_keeps_the_last_known_good_link_and_makes_old_copies_private(
    config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    daemon = Daemon(DaemonConfig(config, state, port=0))
    try:
        assert daemon.start().ok
        wait_for(lambda: holds(state / "last-known-good", "a.yaml"), what="the copy")
    finally:
        daemon.shutdown()
    copy = (state / "last-known-good").resolve()
    saved = next(p for p in copy.rglob("*") if p.is_file())
    copy.chmod(0o755)
    saved.chmod(0o644)
    Daemon(DaemonConfig(config, state, port=0)).shutdown()
    assert (state / "last-known-good").is_symlink()
    assert (mode(copy), mode(saved)) == (0o700, 0o600)
