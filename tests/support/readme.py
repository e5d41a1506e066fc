"""The README's worked examples, as the tests that run them as written read them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def readme_section(heading: str) -> str:
    """From the line ``heading`` (``## Mutes``, ``### Replay``) to the next heading
    of level two, or the end."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n{heading}")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def run_script(
    script: str, cwd: Path, *, pipefail: bool = False, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``script`` in bash with ``-e``, this interpreter's ``syncd`` first on PATH
    and the variables ``drop`` names unset."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in drop:
        env.pop(name, None)
    flags = ["-e", "-o", "pipefail"] if pipefail else ["-e"]
    return subprocess.run(
        ["bash", *flags, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
