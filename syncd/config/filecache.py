"""The daemon's loader: each file's result kept until the file changes, and a set
assembled in time proportional to what changed.

A reconcile after one edit among 50,000 files must not walk, stat or check the
other 49,999. The watcher names the paths that changed, and what depends on
every file is kept as an index updated one file at a time: the order of the
files, the keys that must be unique across them (``semantics.UniqueIndex``),
the files with diagnostics, and the set's digest, a sum of per-file shares.
A load without named paths (at start, on SIGHUP) walks the directory, stats
every file and reads the ones whose stat changed (every one, without
``trust_stat``). A load past its deadline (``budget``) stops between two
files and gives an invalid set; what it read is kept, and the next load
walks.

The periodic resync never holds the loader while it walks: under the
caller's lock, :meth:`ConfigLoader.baseline` copies each file's fingerprint
(in C, a few milliseconds at 50,000 files); then
:meth:`ConfigLoader.differences` walks the directory as discovery does,
stats each file, compares it with the copy and names the few that differ,
touching no state of the loader, on the resync's own thread beside reloads.
A fingerprint is inode, size, mtime and ctime: an edit that restores size
and mtime (``cp -p``, ``touch -d``, a checkout) still moves the ctime, which
no user can set.

A loader of 50,000 files keeps them for as long as the daemon runs, so what
it keeps per file is small: where a file sorts is one text (:func:`_order`),
and the file's share of the digest is computed again when it is taken out
rather than kept. A load of one directory walks it as the resync does and
puts each file as it is reached, without a list of every file made first.

A link swapped to another directory whose unchanged files are hard links of
the ones loaded (a git checkout) is a move the caller states, with the files
that differ (``load(changed=..., moved=True)``): those are read, and the
others keep their results unread. Their fingerprints are marked to be
compared without the ctime, which a hard link made or removed anywhere moves
(the checkout written, the old one pruned): the next resync reads none of
them, yet still reads one whose inode, size or mtime is not the one read.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from syncd.config import budget, mutes, semantics
from syncd.config.configset import (
    Changes,
    ConfigSet,
    FileResult,
    file_mark,
    read_file,
    set_diagnostics,
    set_digest,
)
from syncd.config.diagnostics import count_errors
from syncd.config.discovery import (
    ConfigFiles,
    Found,
    PathNotFoundError,
    find,
    inside,
    is_yaml_name,
)
from syncd.config.model import Integration

# Where a file sorts, as one text that sorts as discovery lists files: the
# index of the path it was found under, then its directories and its name
# (see _order).
Order = str

# What one load changed: each file's result before and after (None: absent).
FileChanges = dict[str, tuple[FileResult | None, FileResult | None]]

# A file's st_ino, st_size, st_mtime_ns and st_ctime_ns in one number, a quarter
# of the memory of a tuple of four (one is kept per file); for a link whose
# target is gone, the link's own, with bit 256 set. Bit 257 marks one compared
# without its ctime (a file a stated move linked), whose ctime bits are then 0.
Fingerprint = int
_BITS64 = (1 << 64) - 1
_CTIME = _BITS64 << 192
_LINKED = 1 << 257

# A file whose ctime is this close to the moment it was read may be written
# again within the same tick of the file system's clock, leaving the same
# fingerprint over other bytes: it is read again at the next resync. Linux
# stamps files from a clock that moves every 1-10 ms.
RACY_NS = 50_000_000


# Entries between a walk's ticks. A resync's walk waits at a tick while a
# reconcile runs; until it reaches one, the two share the interpreter lock, and
# the reconcile's every read or write hands the walk the lock for up to the
# switch interval: at a thousand entries that was tens of milliseconds on an
# edit applied as a resync of 50,000 files began.
TICK_EVERY = 100


def _no_tick() -> None:
    pass


@dataclass(frozen=True)
class Scan:
    """What a walk of one directory found: each config file's fingerprint, keyed
    as the loader keys its files (files gone by the time they were looked at are
    left out), and whether a directory was reached through a link."""

    root: Path
    files: dict[str, Fingerprint]
    linked_dirs: bool


@dataclass
class Baseline:
    """What a resync compares the disk with: the one directory loaded (None when
    the last load was of something else), a copy of each file's fingerprint as
    read (None: read it again whatever it is), and whether a load can be handed
    the names of changed files. The walk that compares uses up ``stats``."""

    root: Path | None
    stats: dict[str, Fingerprint | None]
    named: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    order: Order
    result: FileResult


class ConfigLoader:
    """Loads a config set, keeping each file's result until its content changes.

    A file is trusted unchanged when its fingerprint is; otherwise it is read
    and hashed, and checked again only when the hash differs. ``reads`` counts
    the files read since the loader was made; :meth:`take_changes` says which
    files the loads since the last call changed, for a caller whose own cost
    must follow the change, like the last-known-good copy.
    ``wall`` is the clock a file's ctime is compared with (nanoseconds, the
    epoch's).
    """

    def __init__(
        self,
        options: semantics.Options = semantics.DEFAULT_OPTIONS,
        *,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options
        self.reads = 0
        self._changes: FileChanges | None = None
        self._wall = wall
        self._reset(None)

    def _reset(self, paths: tuple[Path, ...] | None) -> None:
        self._paths = paths
        self._changes = None
        self._root: Path | None = None  # the one directory loaded, resolved
        self._linked_dirs = False
        # Keyed by the path as text: a Path hashes and compares in Python code.
        self._entries: dict[str, _Entry] = {}
        # Each file's fingerprint when read (None: read it again whatever it is),
        # apart from the entries so that a resync compares two dicts in C.
        self._stats: dict[str, Fingerprint | None] = {}
        # Three lists in discovery order, kept in step: where each file sorts,
        # its name and its result, so that a set is one copy of a list.
        self._keys: list[Order] = []
        self._names: list[str] = []
        self._results: list[FileResult] = []
        self._unique = semantics.UniqueIndex()
        self._noted: set[str] = set()  # files with diagnostics
        self._muting: set[str] = set()  # files with mutes
        self._unsettled: set[str] = set()
        self._marks = 0
        # What the files read by one load held before and hold now (Changes).
        self._before: list[Integration] = []
        self._after: list[Integration] = []
        # A load stopped at its deadline left the lists behind the entries: the
        # next load walks, and keeps what the stopped one read.
        self._stale = False

    def load(
        self,
        paths: Iterable[Path],
        *,
        trust_stat: bool = True,
        changed: Iterable[str] | None = None,
        moved: bool = False,
        deadline: budget.Deadline | None = None,
    ) -> ConfigSet:
        """``changed``: the paths, relative to the one directory loaded, that may
        have changed since the last load; None when anything may have.
        ``moved`` (with ``changed``): the one directory loaded is a link that may
        now name another directory, in which each file ``changed`` does not name
        is a hard link of the file loaded under its name. Those are not read; a
        resync compares them without their ctime (see the module's notes).
        ``deadline``: past it the load stops, and the set is rejected with one
        diagnostic that says so (naming the budget the caller started with, not
        what was left of it once this loader was free)."""
        roots = tuple(paths)
        try:
            return self._load(roots, trust_stat, changed, moved, deadline)
        except budget.OverBudget:
            assert deadline is not None
            self._stale = True
            return ConfigSet((), (budget.over_budget(roots, deadline),))

    def _load(
        self,
        roots: tuple[Path, ...],
        trust_stat: bool,
        changed: Iterable[str] | None,
        moved: bool,
        limit: budget.Deadline | None,
    ) -> ConfigSet:
        since = set_digest(self._marks)
        self._before, self._after = [], []
        named = changed is not None and roots == self._paths and not self._stale
        if not (named and changed is not None and self._update(changed, moved, limit)):
            self._walk(roots, trust_stat, limit)
            self._stale = False
            return self._assemble(None)
        return self._assemble(Changes(since, tuple(self._before), tuple(self._after)))

    def _walk(
        self, paths: tuple[Path, ...], trust_stat: bool, limit: budget.Deadline | None
    ) -> None:
        """Every file put as it is found, the lists laid out afresh beside the old
        ones, then the files no longer found dropped. The lists take the texts the
        entries hold, not the equal ones this walk made: a walk that finds 50,000
        files unchanged must not keep a second copy of each name."""
        keys: list[Order] = []
        names: list[str] = []

        def put(name: str, root: Path, key: Order) -> None:
            budget.check(limit)
            self._put(name, root, key, trust_stat)
            entry = self._entries[name]
            keys.append(entry.order)
            held = entry.result.loaded.path
            names.append(held if held == name else name)

        self._find(paths, put, limit)
        if len(names) != len(self._entries):
            found = set(names)
            for gone in [name for name in self._entries if name not in found]:
                self._drop(gone)
        self._keys, self._names = keys, names
        self._results = [self._entries[name].result for name in names]

    def _find(
        self,
        paths: tuple[Path, ...],
        put: Callable[[str, Path, Order], None],
        limit: budget.Deadline | None,
    ) -> None:
        """Hand ``put`` each file of ``paths`` in discovery order. One directory is
        walked as the resync walks it (:class:`_Walk`); anything else is found by
        discovery first."""
        tick = partial(budget.check, limit)
        if len(paths) == 1 and paths[0].is_dir():
            self._enter(paths)
            root = self._root or paths[0].resolve()

            def reached(name: str, dirs: tuple[str, ...], base: str) -> None:
                put(name, root, _key(0, dirs, base))

            walk = _Walk(paths[0], self.options.files, tick, in_order=reached)
            walk.run()
            if not paths[0].is_dir():  # gone while walked: not an empty set
                raise PathNotFoundError(f"no such file or directory: {paths[0]}")
            self._linked_dirs = walk.linked_dirs
            return
        found: Found = find(paths, self.options.files, tick)
        self._enter(paths)
        self._linked_dirs = found.linked_dirs
        for path, root in found.files.items():
            put(str(path), root, _order(paths, path))

    def _enter(self, paths: tuple[Path, ...]) -> None:
        if paths != self._paths:
            self._reset(paths)
        self._root = paths[0].resolve() if len(paths) == 1 and paths[0].is_dir() else None

    def _update(self, changed: Iterable[str], moved: bool, limit: budget.Deadline | None) -> bool:
        """Apply the named changes; False when only a walk can tell what they did: a
        directory changed, or a directory is reached through a link."""
        if self._paths is None or self._root is None or self._linked_dirs:
            return False
        base, root = self._paths[0], self._root
        names = set(changed)
        if moved and base.is_dir():
            root = self._move(base, names)
        elif base.resolve() != root:
            return False  # the directory is a link, moved to another target, unsaid
        for name in names:
            budget.check(limit)
            if not self._named(base, root, name):
                return False
        self._stale = False
        return True

    def _move(self, base: Path, names: set[str]) -> Path:
        """Take the link's new target as the root, and mark every file it does not
        name as linked. Stale until the named files are applied too: a load that
        fails between walks."""
        self._stale = True
        self._root = root = base.resolve()
        kept = {str(base.joinpath(*PurePosixPath(name).parts)) for name in names}
        stats = self._stats
        for name, stat in stats.items():
            if stat is not None and name not in kept:
                stats[name] = (stat & ~_CTIME) | _LINKED
        return root

    def _named(self, base: Path, root: Path, name: str) -> bool:
        """One named path; False when it needs a walk."""
        parts = PurePosixPath(name).parts
        if not parts or parts[0] == "/" or ".." in parts:
            return False
        path = base.joinpath(*parts)
        if path.is_dir():
            return False
        if not self.options.files.holds(PurePosixPath(*parts)):
            return True
        if path.exists() or path.is_symlink():
            self._put(str(path), root, _order((base,), path), trust_stat=False, insert=True)
        else:
            self._drop(str(path))
        return True

    def _put(
        self, name: str, root: Path, order: Order, trust_stat: bool, *, insert: bool = False
    ) -> None:
        """A file trusted unchanged costs a stat, and no ``Path``: pathlib interns
        every part of a path it parses, and a walk of 50,000 names would grow the
        interpreter's table of interned texts for good."""
        old = self._entries.get(name)
        looked = _look(name)
        if trust_stat and old is not None and self._known(name, looked):
            return
        self.reads += 1
        path = Path(name)
        name = str(path)  # one text for the file, its result's too
        result = read_file(path, root, self.options, old.result if old else None)
        self._stats[name] = self._kept(looked, result)
        if old is not None and old.result is result:
            self._entries[name] = _Entry(order, result)
            return
        self._set(name, _Entry(order, result), old)
        if insert:  # a walk lays the lists out afresh
            self._place(name, order, result, old)

    def _known(self, name: str, looked: tuple[Fingerprint, int] | None) -> bool:
        """The file was read with this fingerprint, and may be trusted to hold it."""
        return looked is not None and _same(self._stats.get(name), looked[0])

    def _kept(self, looked: tuple[Fingerprint, int] | None, result: FileResult) -> int | None:
        """The fingerprint to trust the file by; None when it changed while read, or
        was read so soon after a write that it could change again unseen (racy)."""
        if looked is None or result.loaded.unsettled or self._wall() - looked[1] < RACY_NS:
            return None
        return looked[0]

    def _place(self, name: str, order: Order, result: FileResult, old: _Entry | None) -> None:
        """Keep the lists in step with one file read outside a walk."""
        self._before.extend(old.result.integrations if old else ())
        self._after.extend(result.integrations)
        at = bisect.bisect_left(self._keys, order)
        if old is None:
            self._keys.insert(at, order)
            self._names.insert(at, name)
            self._results.insert(at, result)
        else:
            self._results[at] = result

    def _set(self, name: str, entry: _Entry, old: _Entry | None) -> None:
        self._entries[name] = entry
        _note(self._changes, name, old.result if old else None, entry.result)
        self._marks += file_mark(entry.result.loaded) - (file_mark(old.result.loaded) if old else 0)
        self._unique.put(name, entry.order, entry.result.loaded)
        entry.result.loaded.drop_data()
        _mark_if(self._noted, name, bool(entry.result.diagnostics))
        _mark_if(self._muting, name, bool(entry.result.mutes))
        _mark_if(self._unsettled, name, entry.result.loaded.unsettled)

    def _drop(self, name: str) -> None:
        self._stats.pop(name, None)
        old = self._entries.pop(name, None)
        if old is None:
            return
        _note(self._changes, name, old.result, None)
        self._marks -= file_mark(old.result.loaded)
        self._unique.put(name, old.order, None)
        self._noted.discard(name)
        self._muting.discard(name)
        self._unsettled.discard(name)
        self._before.extend(old.result.integrations)
        at = bisect.bisect_left(self._keys, old.order)
        if at < len(self._keys) and self._names[at] == name:
            del self._keys[at]
            del self._names[at]
            del self._results[at]

    def take_changes(self) -> FileChanges | None:
        """Each file the loads since the last call changed, with its result before
        them and after (None: absent); None when they cannot be told: at the
        first call, or after a load of other paths. Nothing is recorded before
        the first call, so a loader whose changes nobody takes keeps none."""
        changes, self._changes = self._changes, {}
        return changes

    def scan(self, path: Path, tick: Callable[[], None] = _no_tick) -> Scan:
        """Every config file under ``path`` with its fingerprint, found as a load
        finds them; reads no file and no state of the loader."""
        files: dict[str, Fingerprint] = {}
        walk = _Walk(path, self.options.files, tick, files.__setitem__)
        walk.run()
        return Scan(path, files, walk.linked_dirs)

    def baseline(self) -> Baseline:
        """What :meth:`differences` compares with; under the caller's lock, since a
        load changes it, and cheap: the copy is made in C."""
        paths = self._paths
        one = paths is not None and len(paths) == 1 and self._root is not None
        root = paths[0] if paths is not None and one else None
        named = root is not None and not self._stale and not self._linked_dirs
        return Baseline(root, dict(self._stats), named)

    def differences(
        self, directory: Path, baseline: Baseline, tick: Callable[[], None] = _no_tick
    ) -> frozenset[str] | None:
        """The files under ``directory`` whose fingerprint is not the one in
        ``baseline``, and those added or removed since, as paths relative to it:
        what a load given them as ``changed`` reads. Empty when nothing differs
        (or the directory is gone, which the watcher follows); None when something
        does but only a walk can apply it (another directory, a directory reached
        through a link, a load cut at its deadline).

        Walks as discovery does and reads no file and no state of the loader, so it
        runs on any thread while a load runs; ``tick``, called at each directory
        and every ``TICK_EVERY`` files, may raise to stop it.
        """
        stats = baseline.stats
        changed: list[str] = []

        def visit(name: str, stat: Fingerprint) -> None:
            known = stats.pop(name, None)
            if known != stat and not _same(known, stat):
                changed.append(name)

        walk = _Walk(directory, self.options.files, tick, visit)
        walk.run()
        changed.extend(stats)  # not found: removed
        if not changed or not directory.is_dir():
            return frozenset()
        if baseline.root != directory or not baseline.named or walk.linked_dirs:
            return None
        return frozenset(_relative(name, str(directory)) for name in changed)

    def _assemble(self, changes: Changes | None) -> ConfigSet:
        noted = (self._entries[name].result for name in self._noted)
        muting = self._mutes()
        named = mutes.set_problems(muting, (i for r in self._results for i in r.integrations))
        diagnostics, counts = set_diagnostics(noted, self._unique.diagnostics(), named)
        return ConfigSet(
            results=tuple(self._results),
            diagnostics=diagnostics,
            digest=set_digest(self._marks),
            unsettled=tuple(sorted(self._unsettled)),
            changes=changes,
            counts=counts,
            mutes=muting if count_errors(diagnostics) == 0 else (),
        )

    def _mutes(self) -> tuple[mutes.Mute, ...]:
        """The set's mutes in the files' order, from the few files that hold any:
        a set without mutes costs nothing here."""
        files = sorted(self._muting, key=lambda name: self._entries[name].order)
        return tuple(m for name in files for m in self._entries[name].result.mutes)


def _fingerprint(st: os.stat_result, dangling: bool = False) -> Fingerprint:
    return (
        st.st_ino
        | st.st_size << 64
        | (st.st_mtime_ns & _BITS64) << 128
        | (st.st_ctime_ns & _BITS64) << 192
        | dangling << 256
    )


def _same(known: Fingerprint | None, stat: Fingerprint) -> bool:
    """Whether a file with fingerprint ``stat`` is the one read as ``known``: equal,
    or, for a file marked linked, equal but for the ctime."""
    if known is None or not known & _LINKED:
        return known == stat
    return known == (stat & ~_CTIME) | _LINKED


def _look(name: str) -> tuple[Fingerprint, int] | None:
    """The file's fingerprint and ctime (its target's, for a link); None once gone."""
    try:
        st, dangling = os.stat(name), False
    except OSError:
        try:
            st, dangling = os.lstat(name), True
        except OSError:
            return None
    return _fingerprint(st, dangling), st.st_ctime_ns


class _Walk:
    """Discovery's walk of one directory (``discovery.find``: links followed
    inside it only, each directory once, the same files), handing ``visit`` each
    config file's name, keyed as the loader keys it, and its fingerprint, in the
    order the directory lists them. Built on ``os.scandir``, whose entries carry
    what the walk needs, so a resync at 50,000 files is mostly the stat calls
    themselves. With ``in_order`` instead, discovery's order: each directory's
    files are handed on sorted, with the directories they are in (relative to
    ``directory``) and their own names, and not looked at (a load stats a file
    as it reads it)."""

    def __init__(
        self,
        directory: Path,
        files: ConfigFiles,
        tick: Callable[[], None],
        visit: Callable[[str, Fingerprint], object] | None = None,
        *,
        in_order: Callable[[str, tuple[str, ...], str], object] | None = None,
    ) -> None:
        self.directory = directory
        self.files = files
        self.tick = tick
        self.visit = visit
        self.in_order = in_order
        self.linked_dirs = False
        self._visited: set[tuple[int, int]] = set()

    def run(self) -> None:
        if not self.directory.is_dir():
            return
        root = self.directory.resolve()
        stack = [str(self.directory)]
        while stack:
            self.tick()
            top = stack.pop()
            if self._enter(top, root):
                stack.extend(reversed(self._one(top)))

    def _one(self, top: str) -> list[str]:
        """One directory's config files visited; returns its subdirectories."""
        dirs: list[str] = []
        prefix = str(Path(top))
        prefix = "" if prefix == "." else prefix.rstrip("/") + "/"
        ordered = self.in_order is not None
        parts = Path(top).relative_to(self.directory).parts if self.files.exclude or ordered else ()
        held: list[str] = []
        # Unreadable, or gone meanwhile: skipped, as discovery does.
        with contextlib.suppress(OSError), os.scandir(top) as entries:
            self._entries(entries, prefix, parts, dirs, held if ordered else None)
        self._hand_on(sorted(held), prefix, parts)
        dirs = sorted(d for d in dirs if self.files.enters(d))
        self.linked_dirs = self.linked_dirs or any(
            os.path.islink(os.path.join(top, d)) for d in dirs
        )
        return [os.path.join(top, d) for d in dirs]

    def _entries(
        self,
        entries: Iterator[os.DirEntry[str]],
        prefix: str,
        parts: tuple[str, ...],
        dirs: list[str],
        held: list[str] | None,
    ) -> None:
        """Each config file visited, or with ``held`` its name kept there."""
        visit, tick, exclude = self.visit, self.tick, self.files.exclude
        for count, entry in enumerate(entries, 1):
            if count % TICK_EVERY == 0:
                tick()
            name = entry.name
            if _is_dir(entry):
                dirs.append(name)
            elif not is_yaml_name(name) or (exclude and not self._kept(parts, name)):
                continue
            elif held is not None:
                held.append(name)
            elif visit is not None and (stat := _entry_fingerprint(entry)) is not None:
                visit(prefix + name, stat)

    def _hand_on(self, names: list[str], prefix: str, parts: tuple[str, ...]) -> None:
        if self.in_order is not None:
            for name in names:
                self.in_order(prefix + name, parts, name)

    def _kept(self, parts: tuple[str, ...], name: str) -> bool:
        return self.files.holds(PurePosixPath(*parts, name))

    def _enter(self, top: str, root: Path) -> bool:
        """Not a symlink loop, a directory linked twice, nor one outside the root."""
        try:
            st = os.stat(top)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) in self._visited or not inside(Path(top), root):
            return False
        self._visited.add((st.st_dev, st.st_ino))
        return True


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # a link to a directory too: discovery follows it
    except OSError:
        return False


def _entry_fingerprint(entry: os.DirEntry[str]) -> Fingerprint | None:
    try:
        return _fingerprint(entry.stat())
    except OSError:
        try:
            return _fingerprint(entry.stat(follow_symlinks=False), dangling=True)
        except OSError:
            return None


def _relative(name: str, base: str) -> str:
    prefix = "" if base == "." else base.rstrip("/") + "/"
    if prefix and name.startswith(prefix):
        return name[len(prefix) :]
    return os.path.relpath(name, base)


def _note(
    changes: FileChanges | None, name: str, before: FileResult | None, after: FileResult | None
) -> None:
    if changes is None:
        return
    first = changes.get(name, (before, after))[0]
    if first is after:
        del changes[name]  # back to what it was
    else:
        changes[name] = (first, after)


def merge_changes(first: FileChanges | None, then: FileChanges | None) -> FileChanges | None:
    """What ``first`` and then ``then`` changed, as one: each file from its result
    before the first to its result after the last."""
    if first is None or then is None:
        return None
    merged = dict(first)
    for name, (before, after) in then.items():
        _note(merged, name, before, after)
    return merged


def _mark_if(marked: set[str], name: str, yes: bool) -> None:
    if yes:
        marked.add(name)
    else:
        marked.discard(name)


def _order(paths: tuple[Path, ...], file: Path) -> Order:
    for index, path in enumerate(paths):
        if file == path:
            return chr(index)
        if file.is_relative_to(path):
            *dirs, name = file.relative_to(path).parts
            return _key(index, dirs, name)
    return _key(len(paths), (), str(file))


def _key(index: int, dirs: Iterable[str], name: str) -> Order:
    """Where a file sorts: discovery lists a directory's own files by name, then its
    subdirectories by name. As one text, 80 bytes, where the tuples that say the
    same take 220 (a loader keeps one per file): the index of the path it was
    found under as one character; each directory as character 2, its name and
    character 0; then the file as character 1, its name and character 0. A file
    sorts before a directory beside it (1 < 2), a name before a longer one it
    begins (0 ends it, and no file name holds one), and otherwise the texts
    compare as the names do."""
    inner = "".join(f"\x02{d}\x00" for d in dirs)
    return f"{chr(index)}{inner}\x01{name}\x00"
