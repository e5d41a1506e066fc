"""``syncd run --lease``: how long a claim on a room's next notification holds.
It must outlast a send (``--send-timeout``), or another daemon would take the
room and send again while the first send may still arrive."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from syncd.errors import EXIT_USAGE
from syncd.hipchat.client import DEFAULT_SEND_TIMEOUT
from syncd.service.daemon import lease_for
from tests.support.configs import minimal, write_files
from tests.support.processes import TEST_POLICY, run_syncd, start, terminate

ENV = {"HIPCHAT_TOKEN": "t0ken-for-the-lease-tests"}
SEND = f"{DEFAULT_SEND_TIMEOUT:g}"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--lease", "5", "--send-timeout", "5"), "got --lease 5 and --send-timeout 5"),
        (("--lease", "3", "--send-timeout", "5"), "got --lease 3 and --send-timeout 5"),
        (("--lease", "0"), f"got --lease 0 and --send-timeout {SEND}"),
        (("--lease", "-30"), f"got --lease -30 and --send-timeout {SEND}"),
        (("--lease", "120", "--send-timeout", "150"), "got --lease 120 and --send-timeout 150"),
        (("--lease", "inf"), f"got --lease inf and --send-timeout {SEND}"),
        (("--lease", "nan"), f"got --lease nan and --send-timeout {SEND}"),
    ],
)
def test_a_lease_not_longer_than_a_send_is_a_usage_error(
    tmp_path: Path, flags: tuple[str, ...], said: str
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    state = tmp_path / "state"
    result = run_syncd(
        "run", "--config", str(config), "--state-dir", str(state), "--listen", "127.0.0.1:0",
        *TEST_POLICY, *flags, cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert result.stderr == (
        f"syncd run: error: --lease wants more seconds than --send-timeout, {said}\n"
    )
    assert not state.exists()  # refused before the state dir was taken


def test_the_help_names_the_default_and_the_bound(tmp_path: Path) -> None:
    result = run_syncd("run", "--help", cwd=tmp_path)
    text = " ".join(result.stdout.split())
    assert "--lease SECONDS" in text
    assert (
        "more than --send-timeout (default 120, or twice --send-timeout where that is longer)"
        in text
    )


@pytest.mark.parametrize(
    ("given", "send_timeout", "lease"),
    [(None, 30.0, 120.0), (None, 150.0, 300.0), (None, 60.0, 120.0), (7.0, 5.0, 7.0)],
)
def test_a_longer_send_stretches_the_default_lease(
    given: float | None, send_timeout: float, lease: float
) -> None:
    """Only the default is stretched: a lease given is taken as given, or refused."""
    assert lease_for(given, send_timeout) == lease


def test_a_long_send_alone_is_not_refused(tmp_path: Path) -> None:
    """``--send-timeout 600`` without ``--lease`` starts (the lease is then 1,200 s)."""
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    proc = start(config, tmp_path / "state", "--send-timeout", "600", env=ENV)
    try:
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 200
    finally:
        assert terminate(proc) == 0, proc.log
