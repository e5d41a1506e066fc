"""Files a checkout can hold that must not stop the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.daemons import running_daemon


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
