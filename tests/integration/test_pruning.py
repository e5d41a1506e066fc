"""A pruned integration's queued notifications: cancelled before anyone sees it gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "pruning-test-token")


def test_pruned_integration_cancels_its_pending_notifications(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    held = minimal("held") + "    state: disabled\n    trigger: {event: trace}\n"
    (config / "held.yaml").write_text(held)
    # Sent nowhere but a closed port on this machine.
    (config / "a.yaml").write_text(
        minimal("a").replace("https://hipchat.example.com", "http://127.0.0.1:9")
    )
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
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
