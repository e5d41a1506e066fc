"""Files a checkout can hold that must not stop the daemon."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from syncd.config import loader
from syncd.config.loader import ChangedWhileRead, load_file, read_regular
from tests.support.configs import minimal, write_files
from tests.support.daemons import running_daemon
from tests.support.waiting import wait_for


def test_a_fifo_added_while_running_fails_the_reload_and_the_daemon_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as daemon:
        os.mkfifo(tmp_path / "config" / "x.yaml")
        outcome = daemon.reload(timeout=20)
        assert outcome is not None and not outcome.ok
        assert [d.message for d in outcome.diagnostics] == [
            "is a FIFO; only regular files are read"
        ]
        assert list(daemon.registry.snapshot.notifiers) == ["a"]
        (tmp_path / "config" / "x.yaml").unlink()
        again = daemon.reload(timeout=20)
        assert again is not None and again.ok


def test_an_exception_inside_a_reconcile_is_a_failed_attempt_and_the_set_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as daemon:

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("disk said no")

        monkeypatch.setattr(daemon.reconciler.loader, "load", broken)
        outcome = daemon.reload(timeout=20)
        assert outcome is not None and not outcome.ok
        assert [d.message for d in outcome.diagnostics] == [
            "reconcile failed: RuntimeError: disk said no"
        ]
        assert daemon.registry.last_failure is outcome
        assert list(daemon.registry.snapshot.notifiers) == ["a"]
        monkeypatch.undo()
        monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
        again = daemon.reload(timeout=20)
        assert again is not None and again.ok


def test_a_read_that_overlaps_a_write_is_refused(tmp_path: Path) -> None:
    """A writer rewriting the file in place: sooner or later a read overlaps a write."""
    path = tmp_path / "a.yaml"
    path.write_bytes(b"#" * 512 * 1024)
    stop = threading.Event()

    def rewrite() -> None:
        with path.open("r+b", buffering=0) as fh:
            while not stop.is_set():
                fh.seek(0)
                for _ in range(128):
                    fh.write(b"x" * 4096)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(2000):
            try:
                read_regular(path)
            except ChangedWhileRead:
                break
        else:
            pytest.fail("no read overlapped a write")
    finally:
        stop.set()
        writer.join(timeout=10)
    loaded = load_file(tmp_path / "a.yaml")
    assert not loaded.unsettled  # quiet again: read as usual


def test_a_file_that_changed_while_read_is_read_again_after_the_quiet_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as daemon:
        writing = threading.Event()
        writing.set()
        real = loader.read_regular

        def mid_write(path: Path, limit: int = loader.MAX_FILE_BYTES + 1) -> bytes:
            # A real overlap cannot be timed from here (the test above makes one):
            # while "writing" is set, every read of b.yaml sees what an overlapping read sees.
            if path.name == "b.yaml" and writing.is_set():
                raise ChangedWhileRead("changed while it was read")
            return real(path, limit)

        monkeypatch.setattr(loader, "read_regular", mid_write)
        attempts = daemon.registry.attempts
        write_files(tmp_path / "config", ("b.yaml", minimal("b")))
        # One write makes one burst of file events; more attempts than that mean
        # the daemon went back to the file on its own, once per quiet period.
        wait_for(
            lambda: daemon.registry.attempts >= attempts + 4,
            timeout=20,
            what="b.yaml read again while it keeps changing",
        )
        outcome = daemon.registry.last_attempt
        assert outcome is not None and not outcome.ok
        assert [d.message for d in outcome.diagnostics] == [
            "the file changed while it was read; it is read again when quiet"
        ]
        assert list(daemon.registry.snapshot.notifiers) == ["a"]
        writing.clear()
        wait_for(
            lambda: set(daemon.registry.snapshot.notifiers) == {"a", "b"},
            timeout=20,
            what="b.yaml applied once quiet",
        )


def test_a_writer_that_pauses_mid_file_does_not_get_its_half_file_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    both = minimal("x") + "\n".join(minimal("y").splitlines()[2:]) + "\n"
    half = minimal("x")  # a valid file on its own: applied, it would prune y
    with running_daemon(tmp_path) as daemon:
        path = write_files(tmp_path / "config", ("b.yaml", both)) / "b.yaml"
        wait_for(lambda: {"x", "y"} <= set(daemon.registry.snapshot.notifiers), timeout=20)
        attempts = daemon.registry.attempts
        with path.open("r+", encoding="utf-8") as writer:
            writer.truncate(0)
            writer.write(half)
            writer.flush()
            # Far past the quiet window and the maximum wait, the file stays open.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                assert "y" in daemon.registry.snapshot.notifiers
                time.sleep(0.05)
            assert daemon.registry.attempts == attempts
            writer.write(both[len(half) :])
        wait_for(lambda: daemon.registry.attempts > attempts, timeout=20, what="the reload")
        assert {"x", "y"} <= set(daemon.registry.snapshot.notifiers)
        last = daemon.registry.last_attempt
        assert last is not None and last.ok
