"""A checkout that lost most of its files cannot silently delete most integrations."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")


def test_removing_more_than_max_prune_integrations_is_refused(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", *[(f"{u}.yaml", minimal(u)) for u in "abc"])
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, max_prune=1))
    try:
        assert daemon.start().ok
        (config / "a.yaml").unlink()
        (config / "b.yaml").unlink()
        refused = daemon.reload(timeout=20)
        assert refused is not None and not refused.ok
        (problem,) = refused.diagnostics
        assert str(problem) == (
            f"{config}:1:1: error: would remove 2 integrations at once (a, b), more than "
            "--max-prune 1; apply it in steps or raise --max-prune"
        )
        assert sorted(daemon.registry.snapshot.notifiers) == ["a", "b", "c"]
        (config / "a.yaml").write_text(minimal("a"))
        accepted = daemon.reload(timeout=20)
        assert accepted is not None and accepted.ok
        assert sorted(daemon.registry.snapshot.notifiers) == ["a", "c"]
    finally:
        daemon.shutdown()


def test_pruning_an_integration_with_queued_notifications_is_a_warning_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    held = minimal("held") + "    state: stopped\n"
    config = write_files(tmp_path / "config", ("held.yaml", held), ("a.yaml", minimal("a")))
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    try:
        assert daemon.start().ok
        event = {"project": "checkout", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
        daemon.ingest.submit([event])
        (config / "held.yaml").unlink()
        with caplog.at_level(logging.WARNING, logger="syncd"):
            outcome = daemon.reload(timeout=20)
        assert outcome is not None and outcome.ok
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "held removed with 1 notification(s) still queued: cancelled" in warnings
    finally:
        daemon.shutdown()
