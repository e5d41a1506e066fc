"""Config flow step 1: which files are config.

Everything that reads a config directory asks :class:`ConfigFiles`, so the
pre-commit hook, ``syncd validate``, the daemon's loads and its watcher agree
on the files, ``--exclude`` included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path, PurePath

from syncd.errors import UsageError

YAML_SUFFIXES = (".yaml", ".yml")


class PathNotFoundError(UsageError):
    """A path given on the command line does not exist."""


# Where tools put copies and dependencies, never config: a build/ left by
# ``pip install .`` holds a second copy of every file, whose uids would clash.
NOT_CONFIG_DIRS = frozenset(
    {"build", "dist", "venv", "node_modules", "__pycache__", "site-packages"}
)


@dataclass(frozen=True)
class ConfigFiles:
    """Which files below a config directory are config: YAML names outside hidden,
    build and dependency directories, less the paths that match a glob of
    ``exclude`` (see :class:`Glob`).

    One rule, asked by discovery (validate, plan, the daemon's full loads), by the
    daemon's file cache for a path the watcher named, and by the watcher for
    whether a change counts at all; so none of them can read a file another
    leaves out. A directory named on the command line is the one walked, so it
    is read whatever its name.
    """

    exclude: tuple[str, ...] = ()

    def enters(self, directory: str) -> bool:
        """Hidden directories are skipped: ``.git``, ``.venv``, ``.tox``, and the
        ``..data``-style directories of mounted volumes, whose files would otherwise
        be read twice; so are build output and dependencies (``NOT_CONFIG_DIRS``)."""
        return not directory.startswith(".") and directory not in NOT_CONFIG_DIRS

    def holds(self, relative: PurePath) -> bool:
        """Whether the file at ``relative`` (a path below the directory) is config."""
        parts = relative.parts
        if not parts or not all(self.enters(part) for part in parts[:-1]):
            return False
        return is_yaml_name(parts[-1]) and not self._excluded(parts)

    @cached_property
    def _globs(self) -> tuple[Glob, ...]:
        return tuple(Glob.parse(text) for text in self.exclude)

    def _excluded(self, parts: tuple[str, ...]) -> bool:
        return any(glob.matches(parts) for glob in self._globs)


@dataclass(frozen=True)
class Glob:
    """An ``--exclude`` glob, read as a .gitignore line is (what people expect of a
    glob over a tree), but matched at any depth unless it starts with ``/``, so that
    ``deploy/*`` still takes ``team/deploy/k8s.yaml``:

    - ``*``, ``?`` and ``[...]`` match within one name, ``**`` as a whole part any
      number of directories (``tests/**``, ``**/k8s.yaml``, ``team/**/k8s.yaml``);
    - when it matches a directory, everything below is excluded: ``tests/*`` takes
      ``tests/a/b.yaml`` too, and a glob without ``/`` is a name, of the file or of
      any directory on its way (``*.values.yaml``, ``deploy``);
    - a leading ``/`` matches from the directory checked only (``/deploy/*``), a
      trailing ``/`` directories only (``deploy/``).
    """

    parts: tuple[str, ...]
    anchored: bool
    directory: bool

    @classmethod
    def parse(cls, text: str) -> Glob:
        parts = tuple(part for part in text.split("/") if part)
        return cls(parts, text.startswith("/"), text.endswith("/"))

    def matches(self, path: tuple[str, ...]) -> bool:
        """Whether the file at ``path`` (its parts) or a directory on its way matches."""
        if not self.parts:
            return False
        starts = (0,) if self.anchored else range(len(path))
        return any(self._ends(path, start) for start in starts)

    def _ends(self, path: tuple[str, ...], start: int) -> bool:
        """Whether the glob, matched from ``path[start]``, can end at a directory (or,
        unless ``directory``, at the file)."""
        reached = {start}
        for part in self.parts:
            if part == "**":
                reached = set(range(min(reached), len(path) + 1)) if reached else reached
            else:
                reached = {i + 1 for i in reached if i < len(path) and fnmatchcase(path[i], part)}
        last = len(path) - 1 if self.directory else len(path)
        return any(start < end <= last for end in reached)


EVERY_CONFIG_FILE = ConfigFiles()  # nothing excluded


def discover(paths: Iterable[Path], files: ConfigFiles | None = None) -> list[Path]:
    """YAML files under ``paths``, sorted, each once; a file named on its own is taken
    whatever its name."""
    return list(find(paths, files).files)


def _no_tick() -> None:
    pass


@dataclass
class Found:
    """What discovery found, in the order it lists files: each directory's own
    files by name, then its subdirectories by name."""

    files: dict[Path, Path]
    # A directory was reached through a symlink: its files have a second path.
    linked_dirs: bool = False


def find(
    paths: Iterable[Path], files: ConfigFiles | None = None, tick: Callable[[], None] = _no_tick
) -> Found:
    """Each config file found, mapped to the root it must stay inside once links are
    followed: the directory given, or for a file named on its own, the file.
    ``tick`` is called at each directory: a caller with a deadline raises there."""
    files = files or EVERY_CONFIG_FILE
    found = Found({})
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in _yaml_under(path, root, files, found, tick):
                found.files.setdefault(file, root)
        elif path.exists() or path.is_symlink():
            found.files.setdefault(path, path.resolve())
        else:
            raise PathNotFoundError(f"no such file or directory: {path}")
    return found


def _yaml_under(
    directory: Path, root: Path, files: ConfigFiles, found: Found, tick: Callable[[], None]
) -> Iterator[Path]:
    """Symlinked directories are followed inside the root only, and each directory once."""
    visited: set[tuple[int, int]] = set()
    for top, dirs, names in os.walk(directory, followlinks=True):
        tick()
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in visited or not inside(Path(top), root):
            dirs[:] = []  # a symlink loop, a directory linked twice, or one outside
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if files.enters(d))
        found.linked_dirs = found.linked_dirs or any(
            os.path.islink(os.path.join(top, d)) for d in dirs
        )
        for name in sorted(names):
            path = Path(top) / name
            if files.holds(path.relative_to(directory)):
                yield path


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def is_yaml_name(name: str) -> bool:
    """A file name discovery reads in a directory: YAML, not hidden."""
    return name.endswith(YAML_SUFFIXES) and not name.startswith(".")
