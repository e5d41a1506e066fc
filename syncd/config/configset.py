"""The config flow, from YAML files to one checked set; this module runs it.

Each step has its own module:

1. ``discovery``: which files are config: YAML names outside hidden
   directories, less what ``--exclude`` leaves out;
2. ``loader``: a file's bytes to plain data, refusing what YAML would silently
   change, and keeping the positions that messages point at;
3. ``schema``: the JSON Schema, each error placed at the offending value;
4. ``semantics``: the rules a schema cannot express, within one file and
   across files;
5. ``model``: schema-valid data to frozen ``Integration`` values, tokens as
   ``secrets`` references that are resolved only when applied;
6. assembly (here): every file's result into one :class:`ConfigSet`, whose
   integrations are usable only if the whole set is valid;
7. ``plan``: a valid set against the active integrations, what to create,
   update, delete and keep. The registry applies it.

Both ``syncd validate`` and the daemon check each file with :func:`read_file`
and a set with the same rules, so the pre-commit hook and the server can never
disagree on what is valid. The daemon's loader (``filecache``) keeps each
file's result until the file changes; the watcher (``watcher``) decides when
the daemon loads again, and names the files that changed.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from syncd.config import schema, semantics
from syncd.config.diagnostics import Diagnostic, count_errors, json_path
from syncd.config.discovery import find, inside
from syncd.config.loader import DataPath, LoadedFile, load_file
from syncd.config.model import Integration, Source, integration_from_data


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file contributes, independent of the other files."""

    loaded: LoadedFile
    diagnostics: tuple[Diagnostic, ...]
    integrations: tuple[Integration, ...]


def check_file(loaded: LoadedFile, options: semantics.Options) -> FileResult:
    diagnostics = list(loaded.diagnostics)
    if loaded.ok and _foreign(loaded.data):
        diagnostics.append(
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
        diagnostics.extend(schema.schema_diagnostics(loaded))
        diagnostics.extend(semantics.check_file_rules(loaded, options))
        diagnostics = schema.refine_traps(loaded, diagnostics)
    integrations: list[Integration] = []
    if count_errors(diagnostics) == 0:
        for index, item in enumerate(loaded.data["integrations"]):

            def locate(path: DataPath, index: int = index) -> Source:
                full = ("integrations", index, *path)
                line, col = loaded.position(full)
                # The same places recur in every file: one copy of each text.
                return Source(loaded.path, line, col, sys.intern(json_path(full)))

            integrations.append(integration_from_data(item, locate))
    loaded.release(semantics.unique_key_paths(loaded))
    return FileResult(loaded, tuple(diagnostics), tuple(integrations))


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

    @property
    def valid(self) -> bool:
        return count_errors(self.diagnostics) == 0

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
    diagnostics = [d for r in results for d in r.diagnostics]
    diagnostics.extend(semantics.check_unique([r.loaded for r in results]))
    diagnostics.sort()
    return ConfigSet(
        results=tuple(results),
        diagnostics=tuple(diagnostics),
        digest=set_digest(sum(file_mark(r.loaded) for r in results)),
        unsettled=tuple(r.loaded.path for r in results if r.loaded.unsettled),
    )


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
    loaded = load_file(path)
    if known is not None and loaded.digest and known.loaded.digest == loaded.digest:
        return known
    return check_file(loaded, options)


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
    paths: Iterable[Path], options: semantics.Options = semantics.DEFAULT_OPTIONS
) -> ConfigSet:
    files = find(paths, options.files).files
    return assemble([read_file(path, root, options) for path, root in files.items()])
