"""The state dir: private to the daemon's user, and held by one daemon at a time.

Queued notifications carry event attributes (emails, session ids), so the
directory is 0700 and everything the daemon writes in it 0600, whatever the
umask it was started with. Two daemons on one state dir would claim and send
each other's items; an exclusive lock on a file in it keeps the second out
and names the first's PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from syncd.errors import Failure, UsageError

LOCK_NAME = "lock"


class StateDirBusy(Failure):
    """Another daemon holds the state dir."""


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def ran_before(self) -> bool:
        """A daemon has used this dir: its lock file is there (it is never removed)."""
        return (self.path / LOCK_NAME).exists()

    def acquire(self) -> None:
        """Create (0700), lock, and make what is already in it private."""
        _check_usable(self.path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock()
            _make_private(self.path)
        except OSError as exc:
            self.release()
            raise UsageError(f"cannot use --state-dir {self.path}: {exc.strerror or exc}") from None

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(
                f"another syncd (PID {holder}) is running on --state-dir {self.path}; "
                "stop it or give this one another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _check_usable(path: Path) -> None:
    """A directory this process can write, or one it can create: said before trying."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--state-dir {path} is not a directory ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--state-dir {path} is not writable by this user ({existing})")


def create_private(path: Path) -> None:
    """Create ``path`` as an empty 0600 file unless it exists (SQLite's -wal and -shm
    files then take the database file's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _make_private(directory: Path) -> None:
    """0700 for the dir and its subdirs, 0600 for its files (left by an older umask).

    Symlinks (the last-known-good link) are left as they are: their targets
    are inside the dir and get their own turn.
    """
    directory.chmod(0o700)
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                kind = stat.S_IFMT(os.lstat(path).st_mode)
                if kind in _PRIVATE_MODES:
                    os.chmod(path, _PRIVATE_MODES[kind])


_PRIVATE_MODES = {stat.S_IFDIR: 0o700, stat.S_IFREG: 0o600}
