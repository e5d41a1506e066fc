"""The watched directory as the file system shows it: where the config path
leads, the git index lock that marks a checkout in progress, and a fingerprint
of the YAML it holds.

These are the watcher's reads of the disk besides watchdog's events. They are
plain functions, so the watcher's thread only gathers facts and hands them to
the timing rules in ``debounce``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from syncd.config.discovery import EVERY_CONFIG_FILE, ConfigFiles, discover
from syncd.config.loader import read_regular
from syncd.reconcile.debounce import LockIdentity
from syncd.reconcile.git import index_lock

__all__ = ["WatchTarget", "fingerprint_dir", "lock_identity", "resolve_target"]


@dataclass(frozen=True)
class WatchTarget:
    """What the config path resolves to; a change of identity means a swap."""

    path: str
    dev: int
    ino: int
    index_lock: str | None

    def same_dir(self, other: WatchTarget) -> bool:
        return (self.path, self.dev, self.ino) == (other.path, other.dev, other.ino)


def resolve_target(path: Path, git_dir: Path | None = None) -> WatchTarget | None:
    """The directory ``path`` leads to now, after symlinks; ``None`` if there is none.
    Its index lock is that of the checkout ``git.checkout`` finds (``git_dir``: the
    one the operator named), never of a repository in a parent directory, which
    anyone able to write there could hold."""
    real = Path(os.path.realpath(path))
    try:
        st = real.stat()
    except OSError:
        return None
    if not real.is_dir():
        return None
    return WatchTarget(str(real), st.st_dev, st.st_ino, index_lock(real, git_dir))


def lock_identity(index_lock: str | None) -> LockIdentity | None:
    """The lock file's inode and mtime, or ``None`` when there is no lock."""
    if index_lock is None:
        return None
    try:
        st = os.lstat(index_lock)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def fingerprint_dir(root: Path, files: ConfigFiles = EVERY_CONFIG_FILE) -> str:
    """A digest of every config file's name, mtime, size and content under ``root``.

    The content is included because an mtime can stay put (coarse clocks,
    ``cp -p``, a checkout restoring timestamps) while the bytes change.
    """
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(b"missing")
        return digest.hexdigest()
    for path in discover([root], files):
        digest.update(os.fsencode(path.relative_to(root)) + b"\0")
        try:
            st = path.stat()
            content = hashlib.sha256(read_regular(path)).hexdigest()
            digest.update(f"{st.st_mtime_ns}:{st.st_size}:{content}\0".encode())
        except OSError as exc:
            digest.update(f"error:{exc.errno}\0".encode())
    return digest.hexdigest()
