"""A committed config cannot send the daemon's secrets anywhere it likes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import HipChatServer
from tests.support.configs import minimal
from tests.support.daemons import TEST_REACH


@pytest.mark.parametrize(
    "token",
    ["{env: SYNCD_INGEST_TOKEN}", "{env: AWS_SECRET_ACCESS_KEY}", "{file: /etc/hostname}"],
)
def test_a_token_from_outside_the_allowed_reach_is_never_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("SYNCD_INGEST_TOKEN", "the-daemons-own-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    with HipChatServer({"1234567": "x"}) as capture:
        config = tmp_path / "config"
        config.mkdir()
        text = minimal("a").replace("https://hipchat.example.com", capture.url)
        (config / "a.yaml").write_text(text.replace("{env: HIPCHAT_TOKEN}", token))
        daemon = Daemon(
            DaemonConfig(
                config,
                tmp_path / "state",
                port=0,
                reach=replace(TEST_REACH, secrets_dirs=(tmp_path,)),
            )
        )
        try:
            outcome = daemon.start()
            assert not outcome.ok
            (problem,) = outcome.diagnostics
            assert problem.line == 10
            assert problem.path.startswith("$.integrations[0].hipchat.rooms[0].token.")
        finally:
            daemon.shutdown()
        assert capture.attempts == []
