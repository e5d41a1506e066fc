"""The daemon's loader: each file's result kept until the file changes, and a set
assembled in time proportional to what changed.

A reconcile after one edit among 50,000 files must not walk, stat or check the
other 49,999. The watcher names the paths that changed, and what depends on
every file is kept as an index updated one file at a time: the order of the
files, the keys that must be unique across them (``semantics.UniqueIndex``),
the files with diagnostics, and the set's digest, a sum of per-file shares.
A load without named paths (at start, on SIGHUP, at a resync) walks the
directory, stats every file and reads the ones whose stat changed (every
one, without ``trust_stat``). A load past its deadline (``budget``) stops
between two files and gives an invalid set; what it read is kept, and the
next load walks.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from syncd.config import budget, semantics
from syncd.config.configset import (
    Changes,
    ConfigSet,
    FileResult,
    StatKey,
    file_mark,
    read_file,
    set_diagnostics,
    set_digest,
    stat_key,
)
from syncd.config.discovery import Found, find
from syncd.config.model import Integration

# Where a file sorts: the index of the path it was found under, then its
# directories, each (1, name), then (0, its name): discovery's own order.
Order = tuple[int, tuple[tuple[int, str], ...]]


@dataclass(frozen=True, slots=True)
class _Entry:
    order: Order
    stat: StatKey | None
    result: FileResult
    mark: int


class ConfigLoader:
    """Loads a config set, keeping each file's result until its content changes.

    A file is trusted unchanged when its mtime, size and inode are; otherwise
    it is read and hashed, and checked again only when the hash differs.
    """

    def __init__(self, options: semantics.Options = semantics.DEFAULT_OPTIONS) -> None:
        self.options = options
        self._reset(None)

    def _reset(self, paths: tuple[Path, ...] | None) -> None:
        self._paths = paths
        self._root: Path | None = None  # the one directory loaded, resolved
        self._linked_dirs = False
        # Keyed by the path as text: a Path hashes and compares in Python code.
        self._entries: dict[str, _Entry] = {}
        # Three lists in discovery order, kept in step: where each file sorts,
        # its name and its result, so that a set is one copy of a list.
        self._order: list[tuple[Order, str]] = []
        self._names: list[str] = []
        self._results: list[FileResult] = []
        self._unique = semantics.UniqueIndex()
        self._noted: set[str] = set()  # files with diagnostics
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
        deadline: float | None = None,
        clock: budget.Clock = time.monotonic,
    ) -> ConfigSet:
        """``changed``: the paths, relative to the one directory loaded, that may
        have changed since the last load; None when anything may have.
        ``deadline``: a time on ``clock`` (monotonic) past which the load stops, and
        the set is rejected with one diagnostic that says so."""
        roots = tuple(paths)
        limit = budget.Deadline.start(deadline, clock)
        try:
            return self._load(roots, trust_stat, changed, limit)
        except budget.OverBudget:
            assert limit is not None
            self._stale = True
            return ConfigSet((), (budget.over_budget(roots, limit),))

    def _load(
        self,
        roots: tuple[Path, ...],
        trust_stat: bool,
        changed: Iterable[str] | None,
        limit: budget.Deadline | None,
    ) -> ConfigSet:
        since = set_digest(self._marks)
        self._before, self._after = [], []
        named = changed is not None and roots == self._paths and not self._stale
        if not (named and changed is not None and self._update(changed, limit)):
            self._walk(roots, trust_stat, limit)
            self._stale = False
            return self._assemble(None)
        return self._assemble(Changes(since, tuple(self._before), tuple(self._after)))

    def _walk(
        self, paths: tuple[Path, ...], trust_stat: bool, limit: budget.Deadline | None
    ) -> None:
        found = self._find(paths, limit)
        names = {str(path): (path, root) for path, root in found.files.items()}
        for gone in [name for name in self._entries if name not in names]:
            self._drop(gone)
        order = [(_order(paths, path), name) for name, (path, _) in names.items()]
        for key, name in order:
            budget.check(limit)
            self._put(*names[name], key, trust_stat)
        self._order, self._names = order, list(names)
        self._results = [self._entries[name].result for name in self._names]

    def _find(self, paths: tuple[Path, ...], limit: budget.Deadline | None) -> Found:
        found = find(paths, self.options.files, partial(budget.check, limit))
        if paths != self._paths:
            self._reset(paths)
        self._linked_dirs = found.linked_dirs
        self._root = paths[0].resolve() if len(paths) == 1 and paths[0].is_dir() else None
        return found

    def _update(self, changed: Iterable[str], limit: budget.Deadline | None) -> bool:
        """Apply the named changes; False when only a walk can tell what they did: a
        directory changed, or a directory is reached through a link."""
        if self._paths is None or self._root is None or self._linked_dirs:
            return False
        base, root = self._paths[0], self._root
        if base.resolve() != root:
            return False  # the directory is a link, moved to another target
        for name in set(changed):
            budget.check(limit)
            if not self._named(base, root, name):
                return False
        return True

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
            self._put(path, root, _order((base,), path), trust_stat=False, insert=True)
        else:
            self._drop(str(path))
        return True

    def _put(
        self, path: Path, root: Path, order: Order, trust_stat: bool, *, insert: bool = False
    ) -> None:
        name = str(path)
        old = self._entries.get(name)
        stat = stat_key(path)
        if old is not None and trust_stat and stat is not None and old.stat == stat:
            return
        result = read_file(path, root, self.options, old.result if old else None)
        if result.loaded.unsettled:
            stat = None  # read it again next time, whatever its stat says
        if old is not None and old.result is result:
            self._entries[name] = _Entry(order, stat, result, old.mark)
            return
        self._set(name, _Entry(order, stat, result, file_mark(result.loaded)), old)
        if insert:  # a walk lays the lists out afresh
            self._place(name, order, result, old)

    def _place(self, name: str, order: Order, result: FileResult, old: _Entry | None) -> None:
        """Keep the lists in step with one file read outside a walk."""
        self._before.extend(old.result.integrations if old else ())
        self._after.extend(result.integrations)
        at = bisect.bisect_left(self._order, (order, name))
        if old is None:
            self._order.insert(at, (order, name))
            self._names.insert(at, name)
            self._results.insert(at, result)
        else:
            self._results[at] = result

    def _set(self, name: str, entry: _Entry, old: _Entry | None) -> None:
        self._entries[name] = entry
        self._marks += entry.mark - (old.mark if old else 0)
        self._unique.put(name, entry.order, entry.result.loaded)
        entry.result.loaded.drop_data()
        _mark_if(self._noted, name, bool(entry.result.diagnostics))
        _mark_if(self._unsettled, name, entry.result.loaded.unsettled)

    def _drop(self, name: str) -> None:
        old = self._entries.pop(name, None)
        if old is None:
            return
        self._marks -= old.mark
        self._unique.put(name, old.order, None)
        self._noted.discard(name)
        self._unsettled.discard(name)
        self._before.extend(old.result.integrations)
        at = bisect.bisect_left(self._order, (old.order, name))
        if at < len(self._order) and self._order[at][1] == name:
            del self._order[at]
            del self._names[at]
            del self._results[at]

    def _assemble(self, changes: Changes | None) -> ConfigSet:
        noted = (self._entries[name].result for name in self._noted)
        diagnostics, counts = set_diagnostics(noted, self._unique.diagnostics())
        return ConfigSet(
            results=tuple(self._results),
            diagnostics=diagnostics,
            digest=set_digest(self._marks),
            unsettled=tuple(sorted(self._unsettled)),
            changes=changes,
            counts=counts,
        )


def _mark_if(marked: set[str], name: str, yes: bool) -> None:
    if yes:
        marked.add(name)
    else:
        marked.discard(name)


def _order(paths: tuple[Path, ...], file: Path) -> Order:
    for index, path in enumerate(paths):
        if file == path:
            return (index, ())
        if file.is_relative_to(path):
            *dirs, name = file.relative_to(path).parts
            return (index, (*((1, d) for d in dirs), (0, name)))
    return (len(paths), ((0, str(file)),))
