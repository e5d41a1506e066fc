"""``syncd run`` as a real subprocess, signalled; ``syncd plan`` against it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import minimal
from tests.support.example import example
from tests.support.processes import Proc, run_syncd, spawn, wait_listening
from tests.support.waiting import wait_for

TOKEN = "plan-test-token-value"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Proc, Path]]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    proc = wait_listening(spawn(config, tmp_path / "state", env={"HIPCHAT_TOKEN": TOKEN}))
    yield proc, config
    proc.stop()


def test_sighup_forces_a_reconcile(daemon: tuple[Proc, Path]) -> None:
    proc, _ = daemon
    before = proc.status()["reconcile_attempts"]
    assert isinstance(before, int)
    proc.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: proc.status()["reconcile_attempts"] > before, what="SIGHUP reload")


def test_sigterm_exits_0_and_tokens_never_logged(daemon: tuple[Proc, Path]) -> None:
    proc, config = daemon
    (config / "b.yaml").write_text(minimal("b").replace("HIPCHAT_TOKEN", "HIPCHAT_MISSING_VAR"))
    wait_for(lambda: proc.status()["last_failure"] is not None, what="the rejected edit")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=20) == 0
    log = "".join(proc.lines)
    assert "HIPCHAT_MISSING_VAR is not set" in log
    assert "b.yaml:10:18" in log
    assert TOKEN not in log


def test_ctrl_c_exits_130_as_a_shell_reports_it(daemon: tuple[Proc, Path]) -> None:
    proc, _ = daemon
    proc.popen.send_signal(signal.SIGINT)
    assert proc.popen.wait(timeout=20) == 130
    assert "SIGINT: stopping" in proc.log


def test_startup_with_an_invalid_config_fails_fast(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(minimal("a").replace("1234567", "0"))
    proc = spawn(tmp_path, tmp_path / "state", env={"HIPCHAT_TOKEN": TOKEN})
    assert proc.popen.wait(timeout=20) == 1
    wait_for(lambda: any("no valid config" in line for line in proc.lines), timeout=5)
    assert any("a.yaml:9:15" in line for line in proc.lines)
    assert not any("listening on" in line for line in proc.lines)


def test_a_literal_token_stops_the_daemon_unless_allowed(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a").replace("{env: HIPCHAT_TOKEN}", TOKEN))
    refused = spawn(config, tmp_path / "state")
    assert refused.popen.wait(timeout=20) == 1
    wait_for(lambda: "plaintext token" in refused.log, what="the refusal in the log")
    assert "a.yaml:10:18" in refused.log and "--allow-plaintext-tokens" in refused.log
    assert TOKEN not in refused.log
    allowed = wait_listening(spawn(config, tmp_path / "state", "--allow-plaintext-tokens"))
    try:
        assert list(allowed.status()["integrations"]) == ["a"]
    finally:
        allowed.stop()


def test_plan_against_the_running_daemon(daemon: tuple[Proc, Path], tmp_path: Path) -> None:
    proc, config = daemon
    same = run_syncd("plan", "--config", str(config), "--against", proc.url, cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith(f"No changes against {proc.url}.")

    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "a.yaml").write_text(
        minimal("a").replace("{env: HIPCHAT_TOKEN}", "literal-secret-token")
        + "    state: stopped\n"
    )
    (desired / "b.yaml").write_text(minimal("b"))
    changed = run_syncd("plan", "--config", str(desired), "--against", proc.url, cwd=tmp_path)
    assert changed.returncode == 1
    out = changed.stdout
    assert "literal-secret-token" not in out
    assert "+ create b: checkout / b" in out
    assert "~ update a" in out
    assert '    state: "enabled" -> "stopped"' in out
    assert out.endswith("Plan: 1 to create, 1 to update, 0 to delete, 0 unchanged.\n")


def test_plan_against_a_daemon_running_the_example(tmp_path: Path) -> None:
    """The README's CI recipe on the example, where every field (actions included) is set."""
    ex = example(tmp_path)
    proc = wait_listening(spawn(ex.config_dir, tmp_path / "state", *ex.flags, env=ex.env))
    try:
        plan = ("plan", "--config", str(ex.config_dir), "--against", proc.url, *ex.flags)
        same = run_syncd(*plan, cwd=tmp_path, env=ex.env)
        assert same.returncode == 0, same.stdout + same.stderr
        assert same.stdout.startswith(f"No changes against {proc.url}.")
        desired = tmp_path / "desired"
        desired.mkdir()
        text = (ex.config_dir / "integrations.yaml").read_text()
        (desired / "a.yaml").write_text(text.replace('regex: "^nyc$"', 'regex: "^sfo$"'))
        changed = run_syncd(*plan[:2], str(desired), *plan[3:], cwd=tmp_path, env=ex.env)
        assert changed.returncode == 1, changed.stdout + changed.stderr
        assert '    actions[1].regex: "^nyc$" -> "^sfo$"' in changed.stdout
    finally:
        proc.stop()


def test_plan_against_nothing_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(minimal("a"))
    fresh = run_syncd("plan", "--config", str(tmp_path), cwd=tmp_path)
    assert fresh.returncode == 1
    assert "+ create a" in fresh.stdout
    unreachable = run_syncd(
        "plan", "--config", str(tmp_path), "--against", "http://127.0.0.1:9", cwd=tmp_path
    )
    assert unreachable.returncode == 2
    assert "cannot reach" in unreachable.stderr
    (tmp_path / "b.yaml").write_text("version: 1\nintegrations: [\n")
    invalid = run_syncd("plan", "--config", str(tmp_path), cwd=tmp_path)
    assert invalid.returncode == 2
    assert "b.yaml:2:15: error: YAML syntax" in invalid.stdout


def test_exclude_leaves_a_foreign_yaml_file_out_of_the_daemons_set(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    (config / "deploy.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    env = {"HIPCHAT_TOKEN": TOKEN}
    refused = spawn(config, tmp_path / "state", env=env)
    assert refused.popen.wait(timeout=20) == 1
    wait_for(lambda: "not an integrations file" in refused.log, what="the refusal")
    started = wait_listening(spawn(config, tmp_path / "state", "--exclude", "deploy.yaml", env=env))
    try:
        assert list(started.status()["integrations"]) == ["a"]
    finally:
        started.stop()
