"""The pre-commit hook, run by the real pre-commit framework on a real git repo.

pre-commit builds the hook's own environment with a plain (non-editable)
``pip install`` of this repository and runs ``syncd`` from the user's repo, so
this also proves the schemas ship inside the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import minimal
from tests.support.gitrepo import GIT_ENV
from tests.support.paths import ROOT


@pytest.mark.slow
def test_try_repo_fails_the_bad_file_with_its_line(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    assert pre_commit, "pre-commit is in the test extras"
    repo = tmp_path / "ops-config"
    (repo / "integrations").mkdir(parents=True)
    (repo / "integrations" / "good.yaml").write_text(minimal("good"))
    (repo / "integrations" / "bad.yaml").write_text(minimal("bad").replace("1234567", "0"))
    (repo / "unrelated.yaml").write_text("not: [an integration")
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    env.pop("GITHUB_ACTIONS", None)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)

    result = subprocess.run(
        [pre_commit, "try-repo", str(ROOT), "syncd-validate", "--all-files", "--color", "never"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "syncd validate" in output and "Failed" in output
    assert (
        "integrations/bad.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: "
        "0 is less than the minimum 1"
    ) in output
    assert "good.yaml:" not in output
    assert "unrelated.yaml" not in output
    assert "Traceback" not in output
