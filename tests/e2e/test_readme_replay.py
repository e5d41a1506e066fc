"""The README's replay example, run as written in a temp dir: the printed counts
are the ones the README shows."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.readme import readme_section, run_script


def replay_section() -> str:
    return readme_section("### Replay")


def test_the_replay_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    section = replay_section()
    script, shown = re.findall(r"```(?:sh|text)\n(.*?)```", section, re.S)[:2]
    done = run_script(script, tmp_path, drop=("HIPCHAT_TOKEN",))
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown
    assert "--record-events" in section and "--record-days" in section
