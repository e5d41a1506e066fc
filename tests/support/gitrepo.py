"""A real git repository for the tests that need one, isolated from the user's git config."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from syncd import __version__
from tests.support.paths import ROOT

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, **GIT_ENV}

    def __call__(self, *args: str) -> str:
        """Run ``git ARGS`` in the repository; its output, stripped."""
        return subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit_all(self, message: str) -> str:
        self("add", "-A")
        self("commit", "-qm", message)
        return self("rev-parse", "HEAD")


def make_repo(path: Path) -> GitRepo:
    """``git init`` a directory (made if missing) on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(path)
    repo("init", "-q", "-b", "main")
    return repo


def hosted_copy(path: Path, env: dict[str, str]) -> None:
    """This checkout as a user hosts it: committed, with the release tag the README names."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / name)
        elif source.is_symlink():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).symlink_to(os.readlink(source))
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "syncd"],
        ["git", "tag", f"v{__version__}"],
    ):
        subprocess.run(command, cwd=path, check=True, env=env)
