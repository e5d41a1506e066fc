"""Every question syncd asks git, and what it knows of git's layout on disk
(``.git`` directories and files, the index lock), in one place.

A checkout's commit is what Flux reports as the applied revision, so an
operator can match the daemon's state to the repository's history. The commit
alone is the revision only when the config dir holds what the commit holds;
otherwise the content hash is added (``git:<sha>+dirty:<hash>``), since the
commit does not name what is applied. git is optional: a config dir that is
not a checkout falls back to the content hash, which identifies the set just
as well; when git is there but cannot be used, the log says why, once.

The checkout usually belongs to another user than the daemon (systemd's
``DynamicUser=``), and git refuses such repositories ("dubious ownership")
unless told otherwise; each call trusts that one worktree, and turns off
``core.fsmonitor``, the one setting of a repository's own config that would
run a command on ``git status``.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

TIMEOUT = 10.0

log = logging.getLogger("syncd")

_GITDIR_PREFIX = "gitdir:"


class GitUnusable(Exception):
    """git is there for this directory but did not answer."""


def worktree(start: Path) -> Path | None:
    """The worktree holding ``start``: the nearest directory with a ``.git`` entry
    (a directory, or the file a linked worktree or submodule has)."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def index_lock(start: Path) -> str | None:
    """The index lock of the work tree containing ``start``, if any.

    Worktrees (git-sync checks out into them) and submodules have a ``.git``
    file naming their private git dir, where their index lives.
    """
    top = worktree(start)
    if top is None:
        return None
    dotgit = top / ".git"
    if dotgit.is_dir():
        return str(dotgit / "index.lock")
    return _linked_index_lock(dotgit)


def _linked_index_lock(dotgit: Path) -> str | None:
    try:
        first = dotgit.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    if not first.startswith(_GITDIR_PREFIX):
        return None
    gitdir = first[len(_GITDIR_PREFIX) :].strip()
    return os.path.normpath(dotgit.parent / gitdir / "index.lock")


def _git(top: Path, where: Path, *args: str) -> str:
    command = [
        "git",
        "-c",
        f"safe.directory={top}",
        "-c",
        "core.fsmonitor=false",
        "-C",
        str(where),
        *args,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise GitUnusable("git is not installed") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitUnusable(f"git {args[0]} failed: {exc}") from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise GitUnusable(f"git {args[0]} failed: {lines[0]}")
    return result.stdout


class Revisions:
    """Names the sets a reconcile applies; says once per reason why git could not."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def revision(self, config_dir: Path, digest: str) -> str:
        """``git:<commit>`` for a clean checkout, ``git:<commit>+dirty:<hash>`` when
        the config dir differs from the commit, else ``sha256:<hash>``."""
        content = digest[:16]
        top = worktree(config_dir.resolve())
        if top is None:
            return "sha256:" + content
        try:
            commit = _git(top, config_dir, "rev-parse", "HEAD").strip()
            changes = _git(top, config_dir, "status", "--porcelain", "-z", "--", ".")
        except GitUnusable as exc:
            self._say(config_dir, str(exc))
            return "sha256:" + content
        return f"git:{commit}+dirty:{content}" if changes else f"git:{commit}"

    def _say(self, config_dir: Path, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.warning(
                "cannot read the git revision of %s (%s); revisions are content hashes",
                config_dir,
                reason,
            )
