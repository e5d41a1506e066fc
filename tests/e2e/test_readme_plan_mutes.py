"""The README's Mutes section on ``syncd plan``: its worked example planned as
written (its ``until`` a week from now, as the README asks of whoever runs it)
prints what the README shows, and exits 1: a mute is a change."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.readme import readme_section, run_script

SHOWN_UNTIL = "2026-12-10T09:00:00Z"
COMMAND = "syncd plan --config ."


def test_the_plan_of_the_worked_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    section = readme_section("## Mutes\n")
    script = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    after = section.split(f"`{COMMAND}` prints", 1)[1]
    shown = re.findall(r"```text\n(.*?)```", after, re.S)[0]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    setup = script.split("syncd validate")[0].replace(SHOWN_UNTIL, until)
    done = run_script(f"{setup}{COMMAND}", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == shown.replace(SHOWN_UNTIL, until)
