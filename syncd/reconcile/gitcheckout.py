"""A fetched commit's config, written to a fresh directory and made current by
swapping one symlink.

git's own checkout runs what the repository and the user's config ask of it:
``.gitattributes`` filters (a smudge command), hooks (``post-checkout``), LFS.
None of that is needed to read YAML, so syncd does not check out: it lists
the commit's tree below ``--git-path`` (``git ls-tree``) and copies the blobs
out (``git cat-file --batch``), which run nothing. Only what discovery would
read is written: regular files with config names, in directories it enters;
a symlink or submodule where a config file would be refuses the commit (its
target is outside the commit), others are passed over. Names that leave the
directory (``..``), or ``.git`` (where git would look for a repository's
config), are refused or passed over before anything is written; files are
created new (``O_EXCL | O_NOFOLLOW``) in directories made here, so nothing
written can follow a link. The sizes come from the tree, so a commit over
``--git-max-size`` is refused before a byte is read.

The daemon reads the config through ``current``, a symlink to one complete
checkout. A new one is written beside it and the link replaced by a rename,
so a crash at any point leaves the link on the old checkout or on the new
one, never on a half-written one; directories the link does not name are
removed afterwards, and at the next start.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from syncd.config.diagnostics import printable
from syncd.config.discovery import ConfigFiles
from syncd.reconcile.gitcommand import Call, GitError, Repo, read_exactly, streaming

LINK = "current"
CHECKOUTS = "checkouts"
_TEMP_LINK = ".current-"
_CHUNK = 1 << 20
_FILE_MODES = frozenset({"100644", "100755", "100664"})
_LINK_MODE = "120000"
_SUBMODULE_MODE = "160000"
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeRefused(Exception):
    """The commit's tree cannot be applied as it is; the text says which path and why."""


@dataclass(frozen=True)
class Entry:
    """A blob in the commit's tree, its path relative to ``--git-path``."""

    mode: str
    oid: str
    size: int
    path: str

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


def parse_tree(listing: bytes) -> list[Entry]:
    """``git ls-tree -r -l -z`` output as entries (trees are not listed with ``-r``)."""
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _kind, oid, size = meta.decode("ascii").split()
        entries.append(Entry(mode, oid, int(size) if size != "-" else 0, os.fsdecode(raw_path)))
    return entries


def select(entries: Iterable[Entry], files: ConfigFiles, max_size: int) -> list[Entry]:
    """The entries to write: the config files discovery would read. Raises
    TreeRefused for a name that leaves the directory, a link or submodule where a
    config file would be, an unknown mode, or more than ``max_size`` bytes."""
    chosen = []
    total = 0
    for entry in entries:
        if not _safe_parts(entry.parts):
            raise TreeRefused(f"{printable(entry.path)}: not a path a checkout can hold")
        if any(part.lower() == ".git" for part in entry.parts):
            continue  # where git looks for a repository's config; never config itself
        if not _wanted(entry, files):
            continue
        total += entry.size
        if total > max_size:
            raise TreeRefused(
                f"its config under --git-path is over --git-max-size ({max_size} bytes)"
            )
        chosen.append(entry)
    return chosen


def _safe_parts(parts: Sequence[str]) -> bool:
    return all(part not in ("", ".", "..") for part in parts)


def _wanted(entry: Entry, files: ConfigFiles) -> bool:
    config = files.holds(PurePosixPath(entry.path))
    if entry.mode in _FILE_MODES:
        return config
    kind = {_LINK_MODE: "a symlink", _SUBMODULE_MODE: "a submodule"}.get(entry.mode)
    if kind is None:
        raise TreeRefused(f"{printable(entry.path)}: unknown file mode {entry.mode}")
    if config:
        raise TreeRefused(
            f"{printable(entry.path)} is {kind}; syncd reads only regular files from git"
        )
    return False


def list_tree(repo: Repo, commit: str, path: str, timeout: float) -> list[Entry]:
    """The blobs below ``path`` in ``commit``; TreeRefused when ``path`` is no
    directory there."""
    tree = f"{commit}:{path}"
    try:
        kind = repo.text("cat-file", "-t", tree, timeout=timeout)
    except GitError:
        kind = "nothing"
    if kind != "tree":
        raise TreeRefused(f"--git-path {printable(path)} is not a directory in the commit")
    return parse_tree(repo.run("ls-tree", "-r", "-l", "-z", tree, timeout=timeout))


def write_tree(repo: Repo, entries: Sequence[Entry], target: Path, timeout: float) -> None:
    """Copy each entry's blob to ``target`` (made here, 0700; files 0600)."""
    target.mkdir(mode=0o700)
    call = repo.call("cat-file", "--batch", timeout=timeout)
    with streaming(call) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        made: set[tuple[str, ...]] = set()
        for entry in entries:
            _make_parents(target, entry.parts[:-1], made)
            proc.stdin.write(entry.oid.encode("ascii") + b"\n")
            proc.stdin.flush()
            _copy_blob(proc.stdout, entry, target.joinpath(*entry.parts), call)
        proc.stdin.close()


def _make_parents(target: Path, parts: tuple[str, ...], made: set[tuple[str, ...]]) -> None:
    for depth in range(1, len(parts) + 1):
        prefix = parts[:depth]
        if prefix in made:
            continue
        try:
            os.mkdir(target.joinpath(*prefix), 0o700)
        except FileExistsError:
            raise TreeRefused(f"{'/'.join(prefix)}: both a file and a directory") from None
        made.add(prefix)


def _copy_blob(out: IO[bytes], entry: Entry, dest: Path, call: Call) -> None:
    header = out.readline()
    if header != f"{entry.oid} blob {entry.size}\n".encode():
        raise call.failed(f"unexpected answer for {printable(entry.path)}")
    try:
        fd = os.open(dest, _OPEN_NEW, 0o600)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise TreeRefused(f"{printable(entry.path)}: the tree names it twice") from None
    with os.fdopen(fd, "wb") as file:
        left = entry.size
        while left:
            chunk = read_exactly(out, min(left, _CHUNK), call)
            file.write(chunk)
            left -= len(chunk)
    read_exactly(out, 1, call)  # the newline after each object


@dataclass(frozen=True)
class Current:
    """The checkout ``current`` names."""

    commit: str
    directory: Path


class Checkouts:
    """The checkouts of one source and the ``current`` link, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.link = root / LINK
        self.directory = root / CHECKOUTS

    def current(self) -> Current | None:
        """The checkout the link names now, if it names one."""
        try:
            name = os.readlink(self.link)
        except OSError:
            return None
        directory = self.root / name
        commit = directory.name.partition("-")[0]
        if not stat.S_ISDIR(_lstat_mode(directory)) or not commit:
            return None
        return Current(commit, directory)

    def fresh(self, commit: str) -> Path:
        """A new directory's path for ``commit``'s checkout (not made yet)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.directory / f"{commit}-{time.time_ns()}"

    def make_current(self, directory: Path) -> None:
        """Point the link at ``directory``, in one rename."""
        temp = self.root / f"{_TEMP_LINK}{time.time_ns()}"
        temp.symlink_to(directory.relative_to(self.root))
        os.replace(temp, self.link)
        _sync_dir(self.root)

    def prune(self, keep: Iterable[Path] = ()) -> None:
        """Remove every checkout but the current one and ``keep``, and links left
        by a swap that did not finish."""
        current = self.current()
        kept = {p.name for p in keep} | ({current.directory.name} if current else set())
        for old in _children(self.directory):
            if old.name not in kept:
                shutil.rmtree(old, ignore_errors=True)
        for temp in self.root.glob(_TEMP_LINK + "*"):
            temp.unlink(missing_ok=True)


def _children(directory: Path) -> Iterator[Path]:
    try:
        yield from directory.iterdir()
    except FileNotFoundError:
        return


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def _sync_dir(directory: Path) -> None:
    """The rename reaches the disk before anything relies on it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
