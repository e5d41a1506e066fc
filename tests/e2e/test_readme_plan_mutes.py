"""The README's Mutes section on ``syncd plan``: its worked example planned as
written (its ``until`` a week from now, as the README asks of whoever runs it)
prints what the README shows, and exits 1: a mute is a change."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support.paths import ROOT

SHOWN_UNTIL = "2026-12-10T09:00:00Z"
COMMAND = "syncd plan --config ."


def mutes_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Mutes\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_plan_of_the_worked_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    section = mutes_section()
    script = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    after = section.split(f"`{COMMAND}` prints", 1)[1]
    shown = re.findall(r"```text\n(.*?)```", after, re.S)[0]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    setup = script.split("syncd validate")[0].replace(SHOWN_UNTIL, until)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-e", "-c", f"{setup}{COMMAND}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == shown.replace(SHOWN_UNTIL, until)
