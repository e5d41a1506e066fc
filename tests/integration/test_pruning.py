"""A pruned integration's queued notifications: cancelled before anyone sees it gone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal
from tests.support.daemons import TEST_REACH
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "pruning-test-token")


def test_pruned_integration_cancels_its_pending_notifications(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    held = minimal("held") + "    state: stopped\n    trigger: {event: trace}\n"
    (config / "held.yaml").write_text(held)
    # Sent nowhere but a closed port on this machine.
    (config / "a.yaml").write_text(
        minimal("a").replace("https://hipchat.example.com", "http://127.0.0.1:9")
    )
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, reach=TEST_REACH))
    daemon.start()
    try:
        event = {"project": "checkout", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
        assert daemon.ingest.submit([event, event]).notifications == 3
        (config / "held.yaml").unlink()
        wait_for(lambda: "held" not in daemon.registry.snapshot.notifiers)
        cancelled = [i for i in daemon.outbox.items() if i.uid == "held"]
        assert [(i.state, i.reason) for i in cancelled] == [
            ("cancelled", "integration removed"),
            ("cancelled", "integration removed"),
        ]
    finally:
        daemon.shutdown()


def test_disabling_an_integration_cancels_what_it_had_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    paused = minimal("paused") + "    state: stopped\n    trigger: {event: trace}\n"
    (config / "paused.yaml").write_text(paused)
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    assert daemon.start().ok
    try:
        event = {"project": "checkout", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
        assert daemon.ingest.submit([event, event]).notifications == 2
        (config / "paused.yaml").write_text(paused.replace("state: stopped", "state: disabled"))
        with caplog.at_level(logging.WARNING, logger="syncd"):
            outcome = daemon.reload(timeout=20)
        assert outcome is not None and outcome.ok
        assert [(i.state, i.reason) for i in daemon.outbox.items()] == [
            ("cancelled", "integration disabled"),
            ("cancelled", "integration disabled"),
        ]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "paused disabled with 2 notification(s) still queued: cancelled" in warnings
        assert daemon.ingest.submit([event]).notifications == 0
    finally:
        daemon.shutdown()
