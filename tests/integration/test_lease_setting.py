"""The daemon's ``lease`` (``syncd run --lease``) is the one its workers claim with."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.delivery.dispatch import DispatchConfig
from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files


def test_the_dispatcher_claims_for_the_lease_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "lease-test-token")
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    assert DaemonConfig(config).lease == DispatchConfig().lease == 120.0
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, lease=7.5))
    try:
        assert daemon.dispatcher.config.lease == 7.5
    finally:
        daemon.shutdown()
