"""The last-known-good config set, kept in the state dir.

A daemon restarted while its config dir holds a broken change would
otherwise have nothing to run on; it starts on this copy instead and says so.
The copy is replaced whole, never half-written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from syncd.config import semantics
from syncd.config.budget import Deadline
from syncd.config.configset import ConfigSet
from syncd.config.discovery import PathNotFoundError
from syncd.config.filecache import ConfigLoader

REVISION_FILE = ".revision"  # hidden, so discovery never reads it as config


def save(target: Path, config: ConfigSet, revision: str, config_dir: Path) -> bool:
    """Copy the applied files; False when one changed since it was applied.

    ``target`` is a symlink to a directory of copies; a new directory is filled
    first and the link replaced by a rename, so a crash at any point leaves
    either the old set or the new one.
    """
    fresh = target.with_name(f"{target.name}.{time.time_ns()}")
    try:
        fresh.mkdir(mode=0o700, parents=True)
        for name, digest in zip(config.files, config.file_digests, strict=True):
            data = Path(name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                shutil.rmtree(fresh)
                return False  # the next reconcile saves it
            dest = fresh / Path(name).relative_to(config_dir)
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(dest, data)
        _write_private(fresh / REVISION_FILE, revision.encode())
        link = target.with_name(target.name + ".link")
        link.unlink(missing_ok=True)
        link.symlink_to(fresh.name)
        os.replace(link, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    for old in target.parent.glob(f"{target.name}.*"):
        if old.is_dir() and old.name != fresh.name:
            shutil.rmtree(old, ignore_errors=True)
    return True


def _write_private(path: Path, data: bytes) -> None:
    """Readable by the daemon's user only, whatever the umask: the copies are config."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load(
    target: Path, options: semantics.Options, deadline: Deadline | None = None
) -> tuple[ConfigSet, str] | None:
    """The saved set and its revision, read from one copy even while a save runs;
    None when there is none. A load that runs past ``deadline`` is cut there and
    gives an invalid set, which the caller does not serve.

    A save points the link at a new copy and then deletes the old one, so a
    reader resolves the link once and reads that copy; if the link moved
    meanwhile, what it read may be a copy being deleted, and it reads again.
    """
    for _ in range(_READ_ATTEMPTS):
        copy = _resolve(target)
        if copy is None:
            return None
        saved = _read(copy, options, deadline)
        if _resolve(target) == copy and saved is not None:
            return saved
    return None


_READ_ATTEMPTS = 5


def _resolve(target: Path) -> Path | None:
    """The copy ``target`` names now (a plain directory is its own copy)."""
    try:
        copy = target.parent / os.readlink(target) if target.is_symlink() else target
    except OSError:
        return None
    return copy if copy.is_dir() else None


def _read(
    copy: Path, options: semantics.Options, deadline: Deadline | None
) -> tuple[ConfigSet, str] | None:
    try:
        revision_file = copy / REVISION_FILE
        revision = revision_file.read_text().strip() if revision_file.exists() else "unknown"
        loader = ConfigLoader(options)
        if deadline is None:
            return loader.load([copy]), revision
        return loader.load([copy], deadline=deadline.at, clock=deadline.clock), revision
    except (OSError, PathNotFoundError):
        return None
