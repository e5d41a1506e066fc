"""The last-known-good config set, kept in the state dir.

A daemon restarted while its config dir holds a broken change would
otherwise have nothing to run on; it starts on this copy instead and says so.

A save costs what changed since the last one, not the set: at 50,000 files a
one-line edit must not rewrite 50,000 files. So the copy is a store of
content-addressed files and a small manifest, and a save writes the changed
files, the part of the manifest that lists them, and the manifest's root::

    last-known-good -> last-known-good.store
    last-known-good.store/
        manifest         the revision and the name of each part; replaced by a rename
        objects/NAME     a part: the [path, digest] of the files whose path falls
                         in one of 256 parts, named by the SHA-256 of its bytes;
                         or a blob: one file's bytes as applied, named by the
                         SHA-256 of its path and content digest

A save that compares the whole set (a process's first) holds one part's files
at a time, and names what it wrote and what it keeps in packed digests: at
50,000 files a list of paths would cost the daemon tens of MiB at its peak.

Why a kill -9 at any point leaves the old set or the new one, whole: an
object the manifest names is never written in place, nor removed while a
manifest names it. A save writes its new blobs and parts under temporary
names and renames them, syncs them and their directory, then writes the
manifest the same way and renames it over the old one: before that rename
the old set is whole, after it the new one. Only then are the objects the
old manifest alone named removed; what a kill leaves behind (temporary
files, objects no manifest names) is swept by the first save of the next
daemon, which compares the whole set with the manifest on disk.

The layout before this one, a link to a directory of plain copies with a
``.revision`` file (or such a directory itself), is still read; the daemon
then saves it in this layout, and the old copies go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from syncd.config import budget, semantics
from syncd.config.budget import Deadline
from syncd.config.configset import (
    ConfigSet,
    FileResult,
    assemble,
    check_file,
    file_mark,
    set_digest,
)
from syncd.config.discovery import PathNotFoundError
from syncd.config.filecache import ConfigLoader, FileChanges, merge_changes
from syncd.config.loader import load_file

REVISION_FILE = ".revision"  # the older layout's; hidden, so discovery never reads it
STORE_SUFFIX = ".store"
MANIFEST = "manifest"
OBJECTS = "objects"
FORMAT = 1
PARTS = 256
_OBJECT_NAME = re.compile(r"[0-9a-f]{64}")

# path (relative, with "/") -> content digest
Entries = dict[str, str]


@dataclass(frozen=True)
class Saved:
    """A set read from the state dir. ``legacy`` is the copy it was read from when
    that copy is in the older layout, which a save then replaces."""

    config: ConfigSet
    revision: str
    legacy: Path | None = None


@dataclass(frozen=True)
class ToSave:
    """A set to save, where its files are, and the files changed since the set
    saved before it (None: unknown, the whole set is compared)."""

    config: ConfigSet
    revision: str
    source: Path
    changes: FileChanges | None


class Pending:
    """The set waiting to be saved, and what changed since the one queued before.

    Each load's changes are noted as they happen (the loader's
    ``take_changes``); each applied set is queued with the changes since the set
    queued before it, merged with those that set carried if no save took it.
    Saves run on another thread than reconciles, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: FileChanges | None = None
        self._queued: ToSave | None = None

    def note(self, changes: FileChanges | None) -> None:
        with self._lock:
            self._changes = merge_changes(self._changes, changes)

    def put(self, config: ConfigSet, revision: str, source: Path) -> None:
        with self._lock:
            carried = self._queued.changes if self._queued is not None else {}
            changes = merge_changes(carried, self._changes)
            self._queued = ToSave(config, revision, source, changes)
            self._changes = {}

    def take(self) -> ToSave | None:
        with self._lock:
            queued, self._queued = self._queued, None
            return queued


class DamagedCopy(Exception):
    """The store is not what its manifest says: a part or blob missing, altered or
    unreadable."""


def load(
    target: Path, options: semantics.Options, deadline: Deadline | None = None
) -> tuple[ConfigSet, str] | None:
    """The saved set and its revision, or None when there is none (see :func:`read`)."""
    saved = read(target, options, deadline)
    return None if saved is None else (saved.config, saved.revision)


def read(
    target: Path, options: semantics.Options, deadline: Deadline | None = None
) -> Saved | None:
    """The saved set, read from one manifest even while a save runs; None when
    there is none or it cannot be read whole. A load that runs past ``deadline``
    is cut there and gives an invalid set, which the caller does not serve.

    A save removes what only the manifest it replaced named, so a reader that
    finds a file gone reads again, from the manifest that replaced it, for as
    long as saves move it on; a copy that fails twice under one manifest is
    damaged, and not served.
    """
    failed: list[bytes] = []
    for _ in range(_READ_ATTEMPTS):
        store = _resolve(target)
        if store is None:
            return None
        manifest = store / MANIFEST
        if not manifest.exists():
            saved = _read_legacy(store, options, deadline)
            if _resolve(target) == store:
                return saved
            continue  # a save moved the link on while it was read
        with contextlib.suppress(OSError, DamagedCopy):
            data = manifest.read_bytes()
            try:
                return _read_store(target, store, data, options, deadline)
            except (OSError, DamagedCopy):
                if data in failed and _moved(manifest, data) is False:
                    return None
                failed.append(data)
    return None


# Each attempt that fails follows a save that moved the manifest on; the daemon
# saves at most once a second, so a reader runs out of them only under a writer
# far faster than that.
_READ_ATTEMPTS = 100


def _moved(manifest: Path, data: bytes) -> bool | None:
    """Whether ``manifest`` holds other bytes now; None when it cannot be read."""
    try:
        return manifest.read_bytes() != data
    except OSError:
        return None


def _resolve(target: Path) -> Path | None:
    """The directory ``target`` names now (a plain directory is its own)."""
    try:
        store = target.parent / os.readlink(target) if target.is_symlink() else target
    except OSError:
        return None
    return store if store.is_dir() else None


def _read_legacy(copy: Path, options: semantics.Options, deadline: Deadline | None) -> Saved | None:
    try:
        revision_file = copy / REVISION_FILE
        revision = revision_file.read_text().strip() if revision_file.exists() else "unknown"
        loader = ConfigLoader(options)
        return Saved(loader.load([copy], deadline=deadline), revision, copy)
    except (OSError, PathNotFoundError):
        return None


def _read_store(
    target: Path, store: Path, data: bytes, options: semantics.Options, deadline: Deadline | None
) -> Saved:
    manifest = Manifest.parse(data)
    entries = manifest.entries(store)
    return Saved(_check_all(target, store, entries, options, deadline), manifest.revision)


def _check_all(
    target: Path,
    store: Path,
    entries: Entries,
    options: semantics.Options,
    limit: budget.Deadline | None,
) -> ConfigSet:
    """Each saved file checked as the config dir's own, shown under ``target``."""
    results: list[FileResult] = []
    try:
        for path in sorted(entries, key=_discovery_order):
            budget.check(limit)
            digest = entries[path]
            loaded = load_file(store / OBJECTS / blob_name(path, digest), str(target / path))
            if loaded.digest != digest:
                raise DamagedCopy(f"the saved copy of {path} is missing or altered")
            results.append(check_file(loaded, options, path))
    except budget.OverBudget:
        assert limit is not None
        return ConfigSet((), (budget.over_budget((target,), limit),))
    return assemble(results)


def _discovery_order(path: str) -> tuple[tuple[int, str], ...]:
    """Discovery's order: a directory's own files by name, then its subdirectories."""
    *dirs, name = path.split("/")
    return (*((1, d) for d in dirs), (0, name))


def blob_name(path: str, digest: str) -> str:
    """A file's blob: its path is in the name, so no two paths share one and a
    save can tell which blobs it leaves unnamed without counting references."""
    return hashlib.sha256(f"{path}\0{digest}".encode("utf-8", "surrogateescape")).hexdigest()


def part_of(path: str) -> int:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()[0] % PARTS


@dataclass(frozen=True)
class Manifest:
    """The root of a saved set: its revision, and each non-empty part by name."""

    revision: str
    parts: dict[int, str]

    def encode(self) -> bytes:
        parts = [[index, name] for index, name in sorted(self.parts.items())]
        document = {"format": FORMAT, "revision": self.revision, "parts": parts}
        return _json(document)

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            document = json.loads(data)
            if document["format"] != FORMAT:
                raise DamagedCopy("the last-known-good manifest is of an unknown format")
            parts = {int(index): str(name) for index, name in document["parts"]}
            if not all(_OBJECT_NAME.fullmatch(name) for name in parts.values()):
                raise DamagedCopy("the last-known-good manifest names a part that is none")
            return cls(str(document["revision"]), parts)
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedCopy(f"the last-known-good manifest is unreadable: {exc}") from None

    def entries(self, store: Path) -> Entries:
        """Every file of the set: all parts read."""
        entries: Entries = {}
        for name in self.parts.values():
            entries.update(read_part(store, name))
        return entries


def encode_part(index: int, entries: Entries) -> bytes:
    files = [[path, entries[path]] for path in sorted(entries)]
    return _json({"part": index, "files": files})


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def read_part(store: Path, name: str) -> Entries:
    data = (store / OBJECTS / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != name:
        raise DamagedCopy(f"the last-known-good part {name} is altered")
    try:
        return {str(path): str(digest) for path, digest in json.loads(data)["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedCopy(f"the last-known-good part {name} is unreadable: {exc}") from None


@dataclass(frozen=True)
class _Saved:
    """What this process last saved: from where, the set's digest as a number
    (``configset.set_digest`` of it), and the manifest on disk."""

    source: Path
    marks: int
    manifest: Manifest


# Per part, each changed file's result (None: removed), by path.
_Plan = dict[int, dict[str, FileResult | None]]


class _Names:
    """Object names (SHA-256 digests in hex) packed in 32 bytes each: a whole save
    writes one object per file, and 50,000 names as texts cost 6 MiB."""

    def __init__(self) -> None:
        self._packed = bytearray()

    def add(self, name: str) -> None:
        self._packed += bytes.fromhex(name)

    def __len__(self) -> int:
        return len(self._packed) // 32

    def __iter__(self) -> Iterator[str]:
        packed = self._packed
        for at in range(0, len(packed), 32):
            yield packed[at : at + 32].hex()


class _Kept:
    """The objects a manifest names, by the first 8 bytes of each name, sorted: the
    sweep asks 50,000 names of 400 KB instead of a set of 50,000 texts. An
    unnamed object whose name shares those bytes with a named one (odds of
    1 in 10^9 at 200,000 objects) stays until a later sweep; a named one is never
    taken for unnamed."""

    def __init__(self) -> None:
        self._prefixes = array("Q")

    def update(self, names: Iterable[str]) -> None:
        self._prefixes.extend(int(name[:16], 16) for name in names)

    def seal(self) -> None:
        self._prefixes = array("Q", sorted(self._prefixes))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not _OBJECT_NAME.fullmatch(name):
            return False
        prefix = int(name[:16], 16)
        at = bisect_left(self._prefixes, prefix)
        return at < len(self._prefixes) and self._prefixes[at] == prefix


@dataclass
class _Save:
    """One save under way: the objects directory, the new manifest's parts, what it
    wrote (synced before the manifest names it), and what only the old manifest
    names (both by object name)."""

    objects: str
    parts: dict[int, str]
    written: _Names = field(default_factory=_Names)
    unnamed: list[str] = field(default_factory=list)


class LastGood:
    """The store in the state dir, and what this process last saved in it.

    The first save of a process compares the set with the manifest on disk (and
    sweeps away what a kill left). Each later one is handed the files changed
    since (the loader's ``changes``) and touches only those, their parts and the
    manifest; the set's digest, kept as a sum of per-file shares as the loader
    keeps it, tells whether they account for the whole difference, and a save
    whose changes do not add up compares the whole set instead.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.store = target.with_name(target.name + STORE_SUFFIX)
        self._lock = threading.Lock()
        self._saved: _Saved | None = None

    @property
    def current(self) -> bool:
        """This process has saved a set (or found the one it saved on disk)."""
        return self._saved is not None

    def save(
        self,
        config: ConfigSet,
        revision: str,
        config_dir: Path,
        changes: FileChanges | None = None,
    ) -> bool:
        """Save the applied set, whose files are in ``config_dir``; ``changes``: the
        files changed since the set this process saved last (None: unknown). False
        when a file changed since it was applied (the next reconcile saves it)."""
        with self._lock:
            saved, self._saved = self._saved, None  # a save that fails starts afresh
            plan = self._plan(saved, config, config_dir, changes)
            if saved is not None and plan is not None:
                done = self._save_changes(saved.manifest, plan, revision)
            else:
                done = self._save_all(config, revision, config_dir)
            if done is not None:
                self._saved = _Saved(config_dir, int(config.digest, 16), done)
            return done is not None

    def _plan(
        self,
        saved: _Saved | None,
        config: ConfigSet,
        config_dir: Path,
        changes: FileChanges | None,
    ) -> _Plan | None:
        """The changes by part, if they turn the set saved last into ``config``."""
        if saved is None or changes is None or saved.source != config_dir or not self._linked():
            return None
        marks = saved.marks
        plan: _Plan = {}
        for name, (before, after) in changes.items():
            marks += _mark(after) - _mark(before)
            path = _relative(name, config_dir)
            plan.setdefault(part_of(path), {})[path] = after
        return plan if set_digest(marks) == config.digest else None

    def _linked(self) -> bool:
        try:
            return os.readlink(self.target) == self.store.name
        except OSError:
            return False

    def _save_changes(self, manifest: Manifest, plan: _Plan, revision: str) -> Manifest | None:
        save = _Save(str(self.store / OBJECTS), dict(manifest.parts))
        for index, changed in plan.items():
            name = manifest.parts.get(index)
            entries = read_part(self.store, name) if name is not None else {}
            if not _apply(save, index, entries, changed):
                return None
        return self._commit(save, manifest, Manifest(revision, save.parts))

    def _save_all(self, config: ConfigSet, revision: str, config_dir: Path) -> Manifest | None:
        """The whole set against what the manifest on disk (if the link names it)
        holds, one part at a time, then everything else in the store swept."""
        self.store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (self.store, self.store / OBJECTS):
            directory.mkdir(mode=0o700, exist_ok=True)
        old = self._on_disk() if self._linked() else None
        save = _Save(str(self.store / OBJECTS), {})
        kept = _Kept()
        for index, changed in _by_part(config.results, config_dir):
            entries = self._part_on_disk(old, index, changed)
            if not _apply(save, index, entries, changed):
                return None
            kept.update(blob_name(path, digest) for path, digest in entries.items())
        manifest = self._commit(save, old, Manifest(revision, save.parts))
        kept.update(manifest.parts.values())
        self._link()
        kept.seal()
        _sweep(self.store, kept)
        self._remove_legacy()
        return manifest

    def _on_disk(self) -> Manifest | None:
        """The manifest the link names; None when it cannot be read (the set is
        then written again whole)."""
        try:
            return Manifest.parse((self.store / MANIFEST).read_bytes())
        except (OSError, DamagedCopy):
            return None

    def _part_on_disk(self, old: Manifest | None, index: int, files: Iterable[str]) -> Entries:
        """What the manifest on disk holds of ``files``, all of one part; nothing when
        it names no such part or the part cannot be read (its files are then
        written again where their blobs are missing)."""
        name = old.parts.get(index) if old is not None else None
        if name is None:
            return {}
        try:
            entries = read_part(self.store, name)
        except (OSError, DamagedCopy):
            return {}
        return {path: entries[path] for path in files if path in entries}

    def _commit(self, save: _Save, old: Manifest | None, new: Manifest) -> Manifest:
        """Make what the save wrote durable, then swap the manifest, then remove what
        only the old one named."""
        if save.written:
            _sync_objects(save.objects, save.written)
            _sync_dir(save.objects)
        if old == new:
            return new
        _write_durable(self.store / MANIFEST, new.encode())
        _sync_dir(self.store)
        if old is not None:
            save.unnamed.extend(
                name for index, name in old.parts.items() if new.parts.get(index) != name
            )
        for name in save.unnamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(save.objects, name))
        return new

    def _link(self) -> None:
        """Point ``target`` at the store, replacing a link to an older copy."""
        if self._linked():
            return
        link = self.target.with_name(self.target.name + ".link")
        link.unlink(missing_ok=True)
        link.symlink_to(self.store.name)
        if self.target.is_dir() and not self.target.is_symlink():
            # A plain directory (the oldest layout) cannot be replaced by a rename.
            self.target.rename(self.target.with_name(f"{self.target.name}.{time.time_ns()}"))
        os.replace(link, self.target)
        _sync_dir(self.target.parent)

    def _remove_legacy(self) -> None:
        """The copies of the older layout, and a link a kill left half made."""
        for old in self.target.parent.glob(f"{self.target.name}.*"):
            if old == self.store:
                continue
            if old.is_symlink():
                old.unlink(missing_ok=True)
            elif old.is_dir():
                shutil.rmtree(old, ignore_errors=True)


def _mark(result: FileResult | None) -> int:
    return 0 if result is None else file_mark(result.loaded)


def _apply(
    save: _Save, index: int, entries: Entries, changed: dict[str, FileResult | None]
) -> bool:
    """One part with ``changed`` applied (None: removed): its new blobs written,
    and the blobs only the old part names noted; False when a file changed since
    it was applied."""
    for path, result in changed.items():
        before = entries.pop(path, None)
        if result is not None:
            if not _put_blob(save, path, result):
                return False
            entries[path] = result.loaded.digest
        if before is not None and entries.get(path) != before:
            save.unnamed.append(blob_name(path, before))
    if not entries:
        save.parts.pop(index, None)
        return True
    data = encode_part(index, entries)
    name = hashlib.sha256(data).hexdigest()
    part = os.path.join(save.objects, name)
    if not os.path.exists(part):
        _write_new(part, data)
        save.written.add(name)
    save.parts[index] = name
    return True


def _put_blob(save: _Save, path: str, result: FileResult) -> bool:
    """Paths here are texts, not ``Path`` objects: pathlib interns each part of a
    path, and 50,000 blob names grow the interpreter's table of interned texts for
    good."""
    digest = result.loaded.digest
    name = blob_name(path, digest)
    blob = os.path.join(save.objects, name)
    if os.path.exists(blob):
        return True
    with open(result.loaded.path, "rb") as file:
        data = file.read()
    if not digest or hashlib.sha256(data).hexdigest() != digest:
        for written in save.written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(save.objects, written))
        return False
    _write_new(blob, data)
    save.written.add(name)
    return True


def _by_part(
    results: Sequence[FileResult], config_dir: Path
) -> Iterator[tuple[int, dict[str, FileResult | None]]]:
    """The set's files by part, as each part is reached: a whole save holds one
    part's files at a time, and of the others only where they are in the set."""
    members = [array("L") for _ in range(PARTS)]
    for at, result in enumerate(results):
        members[part_of(_relative(result.loaded.path, config_dir))].append(at)
    for index, part in enumerate(members):
        if part:
            yield (
                index,
                {_relative(results[at].loaded.path, config_dir): results[at] for at in part},
            )


def _sweep(store: Path, kept: _Kept) -> None:
    """Remove what no manifest names: left by a kill, or by a save that failed."""
    objects = str(store / OBJECTS)
    for name in _names(objects):
        if name not in kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(objects, name))
    for name in _names(store):
        if name not in (MANIFEST, OBJECTS):
            path = store / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _names(directory: Path | str) -> Iterator[str]:
    with os.scandir(directory) as found:
        yield from (entry.name for entry in found)


def _relative(name: str, config_dir: Path) -> str:
    prefix = str(config_dir).rstrip("/") + "/"
    if name.startswith(prefix) and str(config_dir) != ".":
        return name[len(prefix) :]
    return Path(name).relative_to(config_dir).as_posix()


def _temporary(path: Path | str) -> str:
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.tmp")


def _write_new(path: Path | str, data: bytes) -> None:
    """Written under a temporary name, then renamed: a name in the store is always
    a whole file. Readable by the daemon's user only: the copies are config.
    Synced by the caller, all at once (:func:`_sync_objects`)."""
    temp = _temporary(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(temp, path)


def _write_durable(path: Path, data: bytes) -> None:
    """:func:`_write_new`, synced before the rename."""
    temp = _temporary(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _sync_objects(objects: str, names: _Names) -> None:
    """A few files are synced one by one; many (a set saved whole, 50,000 files)
    at once, where one sync each would cost a journal commit each."""
    if len(names) > _SYNC_EACH_UP_TO:
        os.sync()
        return
    for name in names:
        fd = os.open(os.path.join(objects, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_SYNC_EACH_UP_TO = 64


def _sync_dir(directory: Path | str) -> None:
    """The renames in ``directory`` survive a power loss once this returns."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
