"""A fetched commit's config, written to a fresh directory and made current by
swapping one symlink.

git's own checkout runs what the repository and the user's config ask of it:
``.gitattributes`` filters (a smudge command), hooks (``post-checkout``), LFS.
None of that is needed to read YAML, so syncd does not check out: it lists
the commit's tree below ``--git-path`` (``git ls-tree``) and copies the blobs
out (``git cat-file --batch``), which run nothing. A push changes a few files
of thousands, so a file whose blob is the one at the same path in the current
checkout (written by this process: one left by another may be short, or of
other flags) is a hard link of it rather than a copy; the checkout is still a
whole tree of its own, and the old one can go (the data stays while a link
does). The blobs left to copy are all asked for at once, from a thread, while
the answers are read: one round trip, not one per file.

Only what discovery would read is written: regular files with config names,
in directories it enters; a symlink or submodule where a config file would be
refuses the commit (its target is outside the commit), others are passed
over. Names that leave the directory (``..``), or ``.git`` (where git would
look for a repository's config), are refused or passed over before anything
is written; files are created new (``O_EXCL | O_NOFOLLOW``, or a link, which
never replaces what is there) in directories made here, so nothing written
can follow a link. The sizes come from the tree, so a commit over
``--git-max-size`` is refused before a byte is read.

The daemon reads the config through ``current``, a symlink to one complete
checkout. A new one is written beside it and the link replaced by a rename,
so a crash at any point leaves the link on the old checkout or on the new
one, never on a half-written one; directories the link does not name are
removed afterwards, and at the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO

from syncd.config.diagnostics import Diagnostic, printable
from syncd.config.discovery import ConfigFiles
from syncd.config.model import Integration
from syncd.reconcile.gitcommand import Call, GitFailed, Repo, read_exactly, streaming

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


@dataclass(frozen=True, slots=True)
class Entry:
    """A blob in the commit's tree, its path relative to ``--git-path``. One is
    made per file at each fetch, so it is small: slots, and its path checked as
    text (a push at 10,000 files must not leave 30,000 objects for the garbage
    collector to walk)."""

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


def select(
    entries: Iterable[Entry],
    files: ConfigFiles,
    max_size: int,
    known: Container[str] = (),
) -> list[Entry]:
    """The entries to write: the config files discovery would read. Raises
    TreeRefused for a name that leaves the directory, a link or submodule where a
    config file would be, an unknown mode, or more than ``max_size`` bytes.
    ``known``: paths ``files`` is known to hold (the current checkout's, chosen
    by the same flags), which it is not asked again."""
    chosen = []
    total = 0
    for entry in entries:
        if not _safe_path(entry.path):
            raise TreeRefused(f"{printable(entry.path)}: not a path a checkout can hold")
        if "/.git/" in f"/{entry.path.lower()}/":
            continue  # where git looks for a repository's config; never config itself
        if not _wanted(entry, entry.path in known or files.holds(PurePosixPath(entry.path))):
            continue
        total += entry.size
        if total > max_size:
            raise TreeRefused(
                f"its config under --git-path is over --git-max-size ({max_size} bytes)"
            )
        chosen.append(entry)
    return chosen


def _safe_path(path: str) -> bool:
    """No part of ``path`` is empty, ``.`` or ``..``."""
    bounded = f"/{path}/"
    return bool(path) and not any(bad in bounded for bad in ("//", "/./", "/../"))


def _wanted(entry: Entry, config: bool) -> bool:
    """Whether to write the entry, ``config`` saying whether its path is config."""
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
    directory there (git lists only a tree: a file, a submodule or nothing there
    fails the call)."""
    try:
        listing = repo.run("ls-tree", "-r", "-l", "-z", f"{commit}:{path}", timeout=timeout)
    except GitFailed:
        raise TreeRefused(
            f"--git-path {printable(path)} is not a directory in the commit"
        ) from None
    return parse_tree(listing)


@dataclass(frozen=True)
class Tree:
    """A checkout this process wrote, and the blob at each of its paths: what the
    next checkout links from."""

    directory: Path
    blobs: Mapping[str, str] = field(repr=False)

    @classmethod
    def of(cls, directory: Path, entries: Iterable[Entry]) -> Tree:
        return cls(directory, {entry.path: entry.oid for entry in entries})


@dataclass(frozen=True)
class Written:
    """How a checkout's files came to be: copied out of git, or linked."""

    written: int
    linked: int


def write_tree(
    repo: Repo,
    entries: Sequence[Entry],
    target: Path,
    timeout: float,
    current: Tree | None = None,
) -> Written:
    """Copy each entry's blob to ``target`` (made here, 0700; files 0600), or link
    it from ``current`` when its blob is the one there under the same path."""
    target.mkdir(mode=0o700)
    made: set[tuple[str, ...]] = set()
    copied = []
    # Plain strings: at 10,000 files a Path per file costs more than its link.
    blobs = current.blobs if current is not None else {}
    source, dest = f"{current.directory if current else ''}/", f"{target}/"
    for entry in entries:
        if "/" in entry.path:
            _make_parents(target, entry.parts[:-1], made)
        if blobs.get(entry.path) != entry.oid or not _link(source, dest, entry):
            copied.append(entry)
    _copy_blobs(repo, copied, target, timeout)
    return Written(len(copied), len(entries) - len(copied))


def _link(source: str, dest: str, entry: Entry) -> bool:
    """Link the entry's file from the current checkout (``source``, its blob the
    same); False when it must be copied: the link failed (another file system,
    none there)."""
    try:
        os.link(source + entry.path, dest + entry.path, follow_symlinks=False)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise TreeRefused(f"{printable(entry.path)}: the tree names it twice") from None
    except OSError:
        return False
    return True


def _copy_blobs(repo: Repo, entries: Sequence[Entry], target: Path, timeout: float) -> None:
    """Ask ``cat-file`` for every blob from a thread while the answers are read
    here: each side drains the other's pipe, so neither blocks for good. Past an
    error git's group is killed on leaving the block, which ends the thread's
    write too."""
    if not entries:
        return
    asks = b"".join(entry.oid.encode("ascii") + b"\n" for entry in entries)
    call = repo.call("cat-file", "--batch", "--buffer", timeout=timeout)
    with streaming(call) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        asking = threading.Thread(target=_send, args=(proc.stdin, asks), daemon=True)
        asking.start()
        for entry in entries:
            _copy_blob(proc.stdout, entry, target.joinpath(*entry.parts), call)
        asking.join()  # git answered every request: all were written


def _send(stream: IO[bytes], data: bytes) -> None:
    """Write the requests and close the pipe (git answers the rest then ends); a
    git that died first is found by the reader."""
    with contextlib.suppress(OSError, ValueError):
        stream.write(data)
    with contextlib.suppress(OSError, ValueError):
        stream.close()


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
class RepoNames:
    """A checkout's files as the repository names them: ``top`` (a checkout, or
    the link to one) is the directory ``label`` of the repository ("" for its
    top). A checkout's path means nothing to whoever reads a problem (CI, an
    operator in ``/status``); ``integrations/shop.yaml:3:5`` is where they find
    it in the repository, and what a pull request's annotations point at."""

    top: Path
    label: str

    def name(self, file: str) -> str:
        top = str(self.top)
        if file == top:
            return self._top()
        if file.startswith(top + "/"):
            return self._prefix() + file[len(top) + 1 :]
        return file

    def relabel(self, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """``diagnostics`` with the checkout's path replaced by the repository's."""
        top = str(self.top)
        return [
            replace(
                d,
                file=self.name(d.file),
                message=d.message.replace(top + "/", self._prefix()).replace(top, self._top()),
            )
            for d in diagnostics
        ]

    def relabel_integration(self, integration: Integration) -> Integration:
        """``integration`` with its declaration named as the repository names it."""
        where = integration.source
        if where is None:
            return integration
        return replace(integration, source=replace(where, file=self.name(where.file)))

    def _prefix(self) -> str:
        return self.label + "/" if self.label else ""

    def _top(self) -> str:
        return self.label or "."


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
