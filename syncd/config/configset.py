"""The config flow, from YAML files to one checked set; this module runs it.

Each step has its own module:

1. ``discovery``: which files are config: YAML names outside hidden
   directories, less what ``--exclude`` leaves out;
2. ``loader``: a file's bytes to plain data, refusing what YAML would silently
   change, and keeping the positions that messages point at;
3. ``schema``: the JSON Schema, each error placed at the offending value
   (``schemawalk`` finds them in time linear in the document);
4. ``semantics``: the rules a schema cannot express, within one file and
   across files;
5. ``model``: schema-valid data to frozen ``Integration`` values, tokens as
   ``secrets`` references that are resolved only when applied;
6. assembly (here): every file's result into one :class:`ConfigSet`, whose
   integrations are usable only if the whole set is valid, and whose
   diagnostics are capped per file and per set (``diagnostics``);
7. ``plan``: a valid set against the active integrations, what to create,
   update, delete and keep. The registry applies it.

Both ``syncd validate`` and the daemon check each file with :func:`read_file`
and a set with the same rules, so the pre-commit hook and the server can never
disagree on what is valid. A load may be given a deadline (``budget``). The
daemon's loader (``filecache``) keeps each file's result until the file
changes; the watcher (``watcher``) decides when the daemon loads again, and
names the files that changed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

from syncd.config import budget, mutes, schema, semantics
from syncd.config.diagnostics import (
    MAX_FILE_DIAGNOSTICS,
    Counts,
    Diagnostic,
    FileProblems,
    Listing,
    Omitted,
    Problem,
    capped_set,
    count_errors,
    json_path,
)
from syncd.config.discovery import find, inside
from syncd.config.loader import DataPath, LoadedFile, load_file
from syncd.config.model import Integration, Source, integration_from_data
from syncd.config.mutes import Mute


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file contributes, independent of the other files: at most
    ``MAX_FILE_DIAGNOSTICS`` diagnostics, and what that cap left out."""

    loaded: LoadedFile
    diagnostics: tuple[Diagnostic, ...]
    integrations: tuple[Integration, ...]
    omitted: Omitted | None = None
    mutes: tuple[Mute, ...] = ()


def check_file(
    loaded: LoadedFile, options: semantics.Options, name: str | None = None
) -> FileResult:
    """The file's diagnostics, capped before any is worded: each step adds its
    problems to the file's listing, which keeps the first ``MAX_FILE_DIAGNOSTICS``
    and counts the others, so only those listed are worded, and a YAML 1.1 trap's
    fix is judged only for a trap that is listed. ``name``: the file as its mutes
    are named (below the config dir); None: as it was read."""
    problems = loaded.problems
    if loaded.ok and _foreign(loaded.data):
        problems.add(
            Diagnostic(
                loaded.path,
                1,
                1,
                "",
                "not an integrations file: it has neither 'version' nor 'integrations'; "
                "leave it out with --exclude GLOB",
            )
        )
    elif loaded.ok:
        schema.add_schema_problems(loaded)
        semantics.add_file_problems(loaded, options)
        mutes.add_file_problems(loaded, options.reach)
    listed, omitted = problems.result()
    if loaded.ok and loaded.traps:
        listed = schema.refine_traps(loaded, listed)
    integrations: list[Integration] = []
    if count_errors(listed) == 0:
        for index, item in enumerate(loaded.data["integrations"]):

            def locate(path: DataPath, index: int = index) -> Source:
                full = ("integrations", index, *path)
                line, col = loaded.position(full)
                # The same places recur in every file: one copy of each text.
                return Source(loaded.path, line, col, sys.intern(json_path(full)))

            integrations.append(integration_from_data(item, locate))
    muted = mutes.mutes_from_data(loaded, name) if count_errors(listed) == 0 else ()
    loaded.release(semantics.unique_key_places(loaded))
    return FileResult(loaded, tuple(listed), tuple(integrations), omitted, muted)


def _foreign(data: object) -> bool:
    """YAML that is something else (a Kubernetes manifest, a CI file): one error, not
    one per key."""
    return isinstance(data, dict) and bool(data) and not {"version", "integrations"} & set(data)


@dataclass(frozen=True)
class Changes:
    """What the files read in an update held before and hold now: enough for the
    registry to apply one changed file without looking at the others."""

    since: str  # the digest of the set these changes were made to
    before: tuple[Integration, ...]
    after: tuple[Integration, ...]


@dataclass(frozen=True)
class ConfigSet:
    """Every file's result, in discovery order, and the set's diagnostics. The
    sequences over every file are derived on first use: a reconcile after one
    change among 50,000 files must not build them when nothing reads them."""

    results: tuple[FileResult, ...]
    diagnostics: tuple[Diagnostic, ...]
    digest: str = ""
    # Files that changed while read: read them again once the writer is done.
    unsettled: tuple[str, ...] = ()
    changes: Changes | None = None
    # Every problem found, listed or not (the diagnostics are capped); None: the
    # diagnostics are all there is.
    counts: Counts | None = None
    # Every file's mutes, in the files' order; empty unless the whole set is valid.
    mutes: tuple[Mute, ...] = ()

    @property
    def valid(self) -> bool:
        return count_errors(self.diagnostics) == 0

    @property
    def found(self) -> Counts:
        return self.counts or Counts.of(self.diagnostics)

    @cached_property
    def files(self) -> tuple[str, ...]:
        return tuple(r.loaded.path for r in self.results)

    @cached_property
    def file_digests(self) -> tuple[str, ...]:
        return tuple(r.loaded.digest for r in self.results)

    @cached_property
    def integrations(self) -> tuple[Integration, ...]:
        """Empty unless the whole set is valid."""
        return tuple(i for r in self.results for i in r.integrations) if self.valid else ()


def assemble(results: Sequence[FileResult]) -> ConfigSet:
    muting = tuple(m for r in results for m in r.mutes)
    diagnostics, counts = set_diagnostics(
        results,
        semantics.check_unique([r.loaded for r in results]),
        mutes.set_problems(muting, (i for r in results for i in r.integrations)),
    )
    return ConfigSet(
        results=tuple(results),
        diagnostics=diagnostics,
        digest=set_digest(sum(file_mark(r.loaded) for r in results)),
        unsettled=tuple(r.loaded.path for r in results if r.loaded.unsettled),
        counts=counts,
        mutes=muting if count_errors(diagnostics) == 0 else (),
    )


def set_diagnostics(
    results: Iterable[FileResult], across: Iterable[Problem], more: Iterable[Problem] = ()
) -> tuple[tuple[Diagnostic, ...], Counts]:
    """The set's diagnostics as listed, and what they count: each file's with the
    clashes ``across`` files found in it and the ``more`` problems of the set
    (what a mute names), capped per file and per set. Each file's
    clashes go to its listing, which counts those past its cap without wording
    them (a file may repeat one uid 10,000 times)."""
    listings: dict[str, Listing] = {}
    omitted: dict[str, Omitted | None] = {}

    def listing(file: str) -> Listing:
        found = listings.get(file)
        if found is None:
            found = listings[file] = Listing(MAX_FILE_DIAGNOSTICS)
        return found

    for result in results:
        if result.diagnostics:
            name = result.loaded.path
            listing(name).extend(result.diagnostics)
            omitted[name] = result.omitted
    if isinstance(across, semantics.Clashes):
        across.add_to(listing)
    else:
        for problem in across:
            listing(problem.file).add(problem)
    for problem in more:
        listing(problem.file).add(problem)
    files: list[FileProblems] = []
    for name, found in listings.items():
        files.append(found.result(omitted.get(name)))
    return capped_set(files)


def file_mark(loaded: LoadedFile) -> int:
    """A file's share of the set's digest. The digest is the sum of the shares, so
    that a change to one file changes it in constant time."""
    mark = hashlib.sha256(f"{loaded.path}\0{loaded.digest}".encode()).digest()
    return int.from_bytes(mark)


def set_digest(marks: int) -> str:
    return f"{marks % (1 << 256):064x}"


StatKey = tuple[int, int, int]


def read_file(
    path: Path, root: Path, options: semantics.Options, known: FileResult | None = None
) -> FileResult:
    """``known``, the file's last result, is kept when the content is the same."""
    refused = _refused(path, root)
    if refused is not None:
        return refused
    with _uncollected():
        loaded = load_file(path)
        if known is not None and loaded.digest and known.loaded.digest == loaded.digest:
            return known
        return check_file(loaded, options, _below(path, root))


def _below(path: Path, root: Path) -> str | None:
    """The file's name below the directory it was found in (``root``, resolved), as
    a mute is named (``teams/pay.yaml mutes[0]``) wherever the config dir lies and
    whatever links lead to it; None for a file named on its own."""
    if path == root or not root.is_dir():
        return None
    for directory in (Path(os.path.abspath(path.parent)), path.parent.resolve()):
        relative = os.path.relpath(directory / path.name, root)
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return None


@contextmanager
def _uncollected() -> Iterator[None]:
    """The cyclic garbage collector paused while one file is read and checked, then
    left as it was found (``syncd validate`` pauses it for its whole run).

    A file's node tree and data hold no reference cycles, so collecting while they
    are built frees nothing; but they are many objects (a file of 10,000 small
    integrations holds 100,000), and in the daemon they set off full collections
    of its whole heap, which cost more than reading and checking the file.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def stat_key(path: Path) -> StatKey | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _unread(name: str, message: str) -> FileResult:
    """A file that is named in one diagnostic and never opened."""
    return FileResult(LoadedFile(name), (Diagnostic(name, 1, 1, "", message),), ())


def _refused(path: Path, root: Path) -> FileResult | None:
    """A file that is not read at all: a link out of the root, or a name not UTF-8."""
    # A regular file was found in a directory already checked to be inside.
    if path.is_symlink() and not inside(path, root):
        # Its target is not ours to show.
        message = "a symlink to a file outside the config directory; it is not read"
        return _unread(str(path), message)
    if not _utf8(str(path)):
        # Not printable as it is: shown escaped.
        name = os.fsencode(path).decode("utf-8", "backslashreplace")
        return _unread(name, "the file name is not UTF-8; rename the file")
    return None


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_config_set(
    paths: Iterable[Path],
    options: semantics.Options = semantics.DEFAULT_OPTIONS,
    *,
    deadline: budget.Deadline | None = None,
) -> ConfigSet:
    """``deadline``: past it the load stops, and the set is rejected with one
    diagnostic that says so."""
    roots = tuple(paths)
    try:
        files = find(roots, options.files, partial(budget.check, deadline)).files
        results = []
        for path, root in files.items():
            budget.check(deadline)
            results.append(read_file(path, root, options))
        return assemble(results)
    except budget.OverBudget:
        assert deadline is not None
        return ConfigSet((), (budget.over_budget(roots, deadline),))
