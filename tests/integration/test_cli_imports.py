"""What importing a command costs: a command module does not import the daemon
until it runs it, so that ``syncd validate`` in a pre-commit hook starts fast."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_run_command_does_not_import_the_daemon() -> None:
    probe = (
        "import sys, syncd.cli, syncd.commands.run\nprint('syncd.service.daemon' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
