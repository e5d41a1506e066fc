"""The shipped unit file passes ``systemd-analyze verify``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

UNIT = ROOT / "contrib" / "systemd" / "syncd.service"


def test_unit_declares_what_the_daemon_speaks() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify-reload",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "StateDirectory=syncd",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "LoadCredential=" in text


def _systemd_version(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    syncd = Path(sys.executable).parent / "syncd"
    assert syncd.exists()
    unit = tmp_path / "syncd.service"
    unit.write_text(UNIT.read_text().replace("ExecStart=/usr/bin/syncd", f"ExecStart={syncd}"))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if _systemd_version(tool) < 253:
        # notify-reload and ReloadSignal= arrived in systemd 253; older ones say so and go on.
        lines = [
            line
            for line in lines
            if "notify-reload" not in line and "Unknown key 'ReloadSignal'" not in line
        ]
    assert result.returncode == 0, result.stderr
    assert lines == []
