"""The config flow, from YAML files to one checked set; this module runs it.

Each step has its own module:

1. discovery (here): which files are config: YAML names outside hidden
   directories;
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

Both ``syncd validate`` and the daemon go through :class:`ConfigLoader`, so the
pre-commit hook and the server can never disagree on what is valid. The loader
keeps each file's result until the file changes, so a reconcile after one edit
among thousands of files re-reads one file. The watcher (``watcher``) decides
when the daemon loads again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syncd import schema, semantics
from syncd.diagnostics import Diagnostic, count_errors, json_path
from syncd.errors import UsageError
from syncd.loader import DataPath, LoadedFile, load_file
from syncd.model import Integration, Source, integration_from_data

YAML_SUFFIXES = (".yaml", ".yml")


class PathNotFoundError(UsageError):
    """A path given on the command line does not exist."""


def discover(paths: Iterable[Path], exclude: Sequence[str] = ()) -> list[Path]:
    """YAML files under ``paths``, sorted, each once; a file named on its own is taken
    whatever its name."""
    return list(discover_in_roots(paths, exclude))


def discover_in_roots(paths: Iterable[Path], exclude: Sequence[str] = ()) -> dict[Path, Path]:
    """Each YAML file found, mapped to the root it must stay inside once links are
    followed: the directory given, or for a file named on its own, the file. Files
    in a directory whose path below it matches a glob of ``exclude`` are left out."""
    found: dict[Path, Path] = {}
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in _yaml_under(path, root):
                if not _excluded(file.relative_to(path), exclude):
                    found.setdefault(file, root)
        elif path.exists() or path.is_symlink():
            found.setdefault(path, path.resolve())
        else:
            raise PathNotFoundError(f"no such file or directory: {path}")
    return found


def _yaml_under(directory: Path, root: Path) -> Iterator[Path]:
    """Skips hidden directories: ``.git``, and the ``..data``-style directories of
    mounted volumes, whose files would otherwise be read twice. Symlinked
    directories are followed inside the root only, and each directory once."""
    visited: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(directory, followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in visited or not _inside(Path(top), root):
            dirs[:] = []  # a symlink loop, a directory linked twice, or one outside
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(top) / f for f in sorted(files) if is_yaml_name(f))


def _excluded(relative: Path, exclude: Sequence[str]) -> bool:
    return any(PurePosixPath(relative.as_posix()).match(glob) for glob in exclude)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def is_yaml_name(name: str) -> bool:
    """A file name discovery reads in a directory: YAML, not hidden."""
    return name.endswith(YAML_SUFFIXES) and not name.startswith(".")


@dataclass(frozen=True)
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
                return Source(loaded.path, line, col, json_path(full))

            integrations.append(integration_from_data(item, locate))
    loaded.release(semantics.unique_key_paths(loaded))
    return FileResult(loaded, tuple(diagnostics), tuple(integrations))


def _foreign(data: object) -> bool:
    """YAML that is something else (a Kubernetes manifest, a CI file): one error, not
    one per key."""
    return isinstance(data, dict) and bool(data) and not {"version", "integrations"} & set(data)


@dataclass(frozen=True)
class ConfigSet:
    files: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    integrations: tuple[Integration, ...]
    digest: str = ""
    file_digests: tuple[str, ...] = ()
    # Files that changed while read: read them again once the writer is done.
    unsettled: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return count_errors(self.diagnostics) == 0


def assemble(results: Sequence[FileResult]) -> ConfigSet:
    diagnostics = [d for r in results for d in r.diagnostics]
    diagnostics.extend(semantics.check_unique([r.loaded for r in results]))
    diagnostics.sort()
    valid = count_errors(diagnostics) == 0
    set_hash = hashlib.sha256()
    for r in results:
        set_hash.update(f"{r.loaded.path}\0{r.loaded.digest}\0".encode())
    return ConfigSet(
        files=tuple(r.loaded.path for r in results),
        diagnostics=tuple(diagnostics),
        integrations=tuple(i for r in results for i in r.integrations) if valid else (),
        digest=set_hash.hexdigest(),
        file_digests=tuple(r.loaded.digest for r in results),
        unsettled=_unsettled(results),
    )


def _unsettled(results: Sequence[FileResult]) -> tuple[str, ...]:
    return tuple(r.loaded.path for r in results if r.loaded.unsettled)


_StatKey = tuple[int, int, int]


class ConfigLoader:
    """Loads a config set, keeping each file's result until its content changes.

    A file is trusted unchanged when its mtime, size and inode are; otherwise
    it is read and hashed, and parsed again only when the hash differs.
    """

    def __init__(self, options: semantics.Options = semantics.DEFAULT_OPTIONS) -> None:
        self.options = options
        self._cache: dict[Path, tuple[_StatKey | None, FileResult]] = {}

    def load(self, paths: Iterable[Path], *, trust_stat: bool = True) -> ConfigSet:
        files = discover_in_roots(paths, self.options.exclude)
        results = [self._file(path, root, trust_stat) for path, root in files.items()]
        for gone in set(self._cache) - set(files):
            del self._cache[gone]
        return assemble(results)

    def _file(self, path: Path, root: Path, trust_stat: bool) -> FileResult:
        refused = _refused(path, root)
        if refused is not None:
            return refused
        key = _stat_key(path)
        cached = self._cache.get(path)
        if cached and trust_stat and key is not None and cached[0] == key:
            return cached[1]
        loaded = load_file(path)
        if cached and loaded.digest and cached[1].loaded.digest == loaded.digest:
            result = cached[1]
        else:
            result = check_file(loaded, self.options)
        if loaded.unsettled:
            self._cache.pop(path, None)
        else:
            self._cache[path] = (key, result)
        return result


def _stat_key(path: Path) -> _StatKey | None:
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
    if path.is_symlink() and not _inside(path, root):
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
    return ConfigLoader(options).load(paths)
