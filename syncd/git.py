"""Every question syncd asks git, in one place.

A checkout's commit is what Flux reports as the applied revision, so an
operator can match the daemon's state to the repository's history. git is
optional: a config dir that is not a checkout (or a machine without git)
falls back to the content hash, which identifies the set just as well.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT = 10.0


def head_commit(repo: Path) -> str | None:
    """The commit checked out in ``repo``, or None when git cannot tell."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def revision(config_dir: Path, digest: str) -> str:
    """``git:<commit>`` for a checkout, else ``sha256:`` and the set's content hash."""
    commit = head_commit(config_dir)
    return f"git:{commit}" if commit else "sha256:" + digest[:16]
