"""The shipped unit files: ``systemd-analyze verify`` clean, alike but for how a
reload is signalled, and starting syncd where the README installs it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import minimal
from tests.support.paths import ROOT
from tests.support.processes import collect, wait_listening
from tests.support.waiting import wait_for

UNIT = ROOT / "contrib" / "systemd" / "syncd.service"
UNIT_252 = ROOT / "contrib" / "systemd" / "systemd-252" / "syncd.service"
INSTALLED = "/opt/syncd/bin/syncd"


def test_units_declare_what_the_daemon_speaks() -> None:
    for unit in (UNIT, UNIT_252):
        text = unit.read_text()
        for line in (
            "WatchdogSec=30s",
            "Restart=on-failure",
            "StateDirectory=syncd",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
        ):
            assert re.search(rf"^{re.escape(line)}$", text, re.M), (unit, line)
        assert "LoadCredential=" in text
    assert re.search(r"^Type=notify-reload$", UNIT.read_text(), re.M)
    assert re.search(r"^Type=notify$", UNIT_252.read_text(), re.M)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", UNIT_252.read_text(), re.M)


def _settings(unit: Path) -> list[str]:
    return [line for line in unit.read_text().splitlines() if line and not line.startswith("#")]


def test_the_252_unit_differs_only_in_how_a_reload_is_signalled() -> None:
    only_253 = set(_settings(UNIT)) - set(_settings(UNIT_252))
    only_252 = set(_settings(UNIT_252)) - set(_settings(UNIT))
    assert only_253 == {"Type=notify-reload"}
    assert only_252 == {"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID"}


def test_the_readme_installs_syncd_where_the_units_start_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "sudo python3 -m venv /opt/syncd && sudo /opt/syncd/bin/pip install ." in readme
    for unit in (UNIT, UNIT_252):
        assert f"ExecStart={INSTALLED} run " in unit.read_text()
        assert str(unit.relative_to(ROOT)) in readme


def _systemd_version(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("unit", [UNIT, UNIT_252], ids=["systemd-253", "systemd-252"])
def test_systemd_analyze_verify(tmp_path: Path, unit: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    syncd = Path(sys.executable).parent / "syncd"
    assert syncd.exists()
    copy = tmp_path / "syncd.service"
    copy.write_text(unit.read_text().replace(f"ExecStart={INSTALLED}", f"ExecStart={syncd}"))
    result = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if unit == UNIT and _systemd_version(tool) < 253:
        # notify-reload arrived in systemd 253; older ones say so: that is what the
        # 252 unit is for.
        lines = [line for line in lines if "notify-reload" not in line]
    assert result.returncode == 0, result.stderr
    assert lines == []


def test_the_units_command_line_starts_the_daemon(tmp_path: Path) -> None:
    """ExecStart as written, with the install, config, state dir and port of a test."""
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", UNIT.read_text(), re.M)
    config = tmp_path / "integrations"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    command = shlex.split(exec_start)
    moved = {
        INSTALLED: str(Path(sys.executable).parent / "syncd"),
        "/etc/syncd/integrations": str(config),
        "/var/lib/syncd": str(tmp_path / "state"),
        "127.0.0.1:8514": "127.0.0.1:0",
    }
    popen = subprocess.Popen(
        [moved.get(part, part) for part in command],
        env={"PATH": "/usr/bin:/bin", "HIPCHAT_TOKEN": "unit-test-token"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = wait_listening(collect(popen))
    try:
        wait_for(lambda: proc.status()["applied_revision"], what="the config to be applied")
    finally:
        proc.stop()
