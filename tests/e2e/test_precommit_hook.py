"""The pre-commit hook, run by the real pre-commit framework on a real git repo.

pre-commit builds the hook's own environment with a plain (non-editable)
``pip install`` of this repository and runs ``syncd`` from the user's repo, so
this also proves the schemas ship inside the package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd import __version__
from tests.support.configs import minimal
from tests.support.gitrepo import GIT_ENV, hosted_copy
from tests.support.paths import ROOT


def _try_repo(tmp_path: Path, files: dict[str, str], *flags: str) -> tuple[int, str]:
    """pre-commit's ``try-repo`` of this repository on a fresh repo holding ``files``."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    assert pre_commit, "pre-commit is in the test extras"
    repo = tmp_path / "ops-config"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    env.pop("GITHUB_ACTIONS", None)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    command = [pre_commit, "try-repo", str(ROOT), "syncd-validate", "--all-files"]
    result = subprocess.run(
        [*command, "--color", "never", *flags],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_try_repo_fails_the_bad_file_with_its_line(tmp_path: Path) -> None:
    returncode, output = _try_repo(
        tmp_path,
        {
            "integrations/good.yaml": minimal("good"),
            "integrations/bad.yaml": minimal("bad").replace("1234567", "0"),
            "unrelated.yaml": "not: [an integration",
        },
    )
    assert returncode == 1, output
    assert "syncd validate" in output and "Failed" in output
    assert (
        "integrations/bad.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: "
        "0 is less than the minimum 1"
    ) in output
    assert "good.yaml:" not in output
    assert "unrelated.yaml" not in output
    assert "Traceback" not in output


def _readme_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## pre-commit\n\n```yaml\n(.*?)```", readme, re.S)
    assert match, "the README's pre-commit snippet"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_snippet_as_written_checks_and_counts(tmp_path: Path) -> None:
    """The README's .pre-commit-config.yaml, only the repository URL pointed at a copy:
    its rev names a release tag, its files pattern is spelt out, and the hook
    prints how many files it checked, passing or not."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    assert pre_commit, "pre-commit is in the test extras"
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    env.pop("GITHUB_ACTIONS", None)
    host = tmp_path / "syncd-host"
    host.mkdir()
    hosted_copy(host, env)
    snippet = _readme_snippet()
    assert f"rev: v{__version__}" in snippet
    assert re.search(r"^\s+files: ", snippet, re.M), "the files pattern, not in a comment"
    repo = tmp_path / "ops-config"
    (repo / "integrations" / "team").mkdir(parents=True)
    (repo / "integrations" / "a.yaml").write_text(minimal("a"))
    (repo / "integrations" / "team" / "b.yaml").write_text(minimal("b"))
    (repo / "elsewhere.yaml").write_text("not: [an integration")
    config = snippet.replace("https://example.com/your-org/syncd", str(host))
    (repo / ".pre-commit-config.yaml").write_text(config)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    run = [pre_commit, "run", "--all-files", "--color", "never"]
    passed = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "syncd: valid (2 files checked)" in passed.stdout
    (repo / "integrations" / "team" / "b.yaml").write_text(minimal("b").replace("1234567", "0"))
    failed = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "integrations/team/b.yaml:9:15: error: " in failed.stdout
    assert "(2 files checked)" in failed.stdout
