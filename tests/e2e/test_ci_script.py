"""``.ci/run`` leaves nothing behind, however it ends.

Its virtualenv is some 200 MB; one left in the temp directory by every run
fills a CI machine's disk. The run is made to fail right after the
virtualenv is created (a stand-in ``python3`` makes one whose ``python``
fails), and the temp directory must be empty afterwards.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.paths import ROOT

FAKE_PYTHON3 = """#!/bin/sh
# Stands in for python3: "-m venv DIR" makes a virtualenv whose python fails.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    printf '#!/bin/sh\\nexit 3\\n' > "$3/bin/python"
    chmod +x "$3/bin/python"
    printf 'PATH="%s/bin:$PATH"\\n' "$3" > "$3/bin/activate"
    exit 0
fi
exit 4
"""


def test_a_failed_run_removes_its_virtualenv(tmp_path: Path) -> None:
    shims, scratch = tmp_path / "bin", tmp_path / "tmp"
    shims.mkdir()
    scratch.mkdir()
    (shims / "python3").write_text(FAKE_PYTHON3)
    (shims / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "TMPDIR": str(scratch)}
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert list(scratch.iterdir()) == []
