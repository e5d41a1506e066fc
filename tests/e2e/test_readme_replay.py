"""The README's replay example, run as written in a temp dir: the printed counts
are the ones the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def replay_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n### Replay")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def test_the_replay_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    section = replay_section()
    script, shown = re.findall(r"```(?:sh|text)\n(.*?)```", section, re.S)[:2]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("HIPCHAT_TOKEN", None)
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown
    assert "--record-events" in section and "--record-days" in section
