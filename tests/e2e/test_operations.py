"""Operating the daemon as a process: last-known-good start, status, the demo."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal
from tests.support.lastgood import holds, saved_files
from tests.support.processes import run_syncd, spawn, wait_listening
from tests.support.waiting import wait_for

ENV = {"HIPCHAT_TOKEN": "ops-test-token"}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", ENV["HIPCHAT_TOKEN"])


def test_invalid_config_at_start_runs_on_the_last_known_good_set(tmp_path: Path) -> None:
    config, state = tmp_path / "config", tmp_path / "state"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    (config / "b.yaml").write_text(minimal("b"))
    daemon = Daemon(DaemonConfig(config, state, port=0))
    assert daemon.start().ok
    saved = state / "last-known-good"
    try:
        wait_for(lambda: holds(saved, "b.yaml"), what="the last-known-good copy")
    finally:
        daemon.shutdown()
    assert sorted(saved_files(saved)) == ["a.yaml", "b.yaml"]

    (config / "b.yaml").write_text(minimal("b").replace("1234567", "0"))
    proc = wait_listening(spawn(config, state, env=ENV))
    try:
        status = proc.status()
        assert sorted(status["integrations"]) == ["a", "b"]
        # The set served is the saved one; the attempt that counts is the one that failed.
        assert status["applied_revision"] != status["attempted_revision"]
        assert status["last_reconcile"]["ok"] is False
        assert status["last_reconcile"]["diagnostics"][0].startswith(f"{config}/b.yaml:9:15")
        assert status["last_failure"]["diagnostics"][0].startswith(f"{config}/b.yaml:9:15")
        metrics = requests.get(f"{proc.url}/metrics", timeout=10).text
        assert "\nsyncd_config_last_reload_successful 0.0\n" in metrics
        assert "\nsyncd_config_last_reload_success_timestamp_seconds 0.0\n" in metrics
        assert '\nsyncd_config_reload_attempts_total{result="failure"} 1.0\n' in metrics
        assert '\nsyncd_config_reload_attempts_total{result="success"} 0.0\n' in metrics
        assert requests.get(f"{proc.url}/readyz", timeout=10).status_code == 200
        shown = run_syncd("status", "--url", proc.url, cwd=tmp_path)
        assert shown.returncode == 1
        assert "last reconcile:     FAILED" in shown.stdout
        # The saved set was served before the config dir's first reconcile ended.
        saved_revision = status["applied_revision"]
        served = next(i for i, line in enumerate(proc.lines) if "serving the last-known" in line)
        rejected = next(i for i, line in enumerate(proc.lines) if "rejected" in line)
        assert served < rejected
        assert f"rejected, keeping {saved_revision}" in proc.lines[rejected]
        assert "started on the last-known-good set" in proc.log
    finally:
        proc.stop()


def test_status_command_prints_a_table(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    proc = wait_listening(spawn(config, tmp_path / "state", env=ENV))
    try:
        result = run_syncd("status", "--url", proc.url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("applied revision:   sha256:")
        assert any(line.startswith("last reconcile:     ok at ") for line in lines)
        header = next(line for line in lines if line.startswith("INTEGRATION"))
        assert header.split() == [
            "INTEGRATION",
            "STATE",
            "QUEUE",
            "ROOM",
            "HEALTH",
            "DEAD",
            "LAST",
            "DELIVERY",
            "LAST",
            "ERROR",
        ]
        row = lines[lines.index(header) + 1].split()
        assert row[:6] == ["a", "enabled", "0", "1234567", "ok", "0"]
        assert ENV["HIPCHAT_TOKEN"] not in result.stdout
        raw = run_syncd("status", "--url", proc.url, "--json", cwd=tmp_path)
        assert '"applied_revision"' in raw.stdout
    finally:
        proc.stop()
    down = run_syncd("status", "--url", "http://127.0.0.1:9", cwd=tmp_path)
    assert down.returncode == 2


def test_demo_delivers_the_sample_events(tmp_path: Path) -> None:
    result = run_syncd("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 notifications delivered." in result.stdout
    assert "--- room 1234567 (red, text, notify)" in result.stdout
    assert "@payments" in result.stdout
    # The two events that notify nobody say why: the rules at work, not a fault.
    assert "    checkout-ops: filtered by actions[1]\n" in result.stdout
    assert "    search-digest: filtered by actions[0]\n" in result.stdout
