"""Watch the config directory and call a reconcile callback once changes settle.

Events only say *that* something may have changed; the callback always reads
the whole set again. So the watcher can afford to coalesce aggressively, to
skip editor and git noise, and to fall back on a periodic content comparison
for whatever inotify misses (queue overflow, changes made through another path
to the same inode, a swap of an ancestor symlink).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Literal, Self

from watchdog.events import (
    EVENT_TYPE_MOVED,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from syncd.configset import YAML_SUFFIXES, discover

__all__ = [
    "ConfigWatcher",
    "Debouncer",
    "fingerprint_dir",
    "is_editor_noise",
    "is_relevant",
]

_NOISE_PREFIXES = (".#", ".goutputstream-")
_NOISE_SUFFIXES = ("~", ".swp", ".swx", ".swo", "___jb_tmp___", "___jb_old___")
# The kubelet's atomic writer swaps this symlink to publish a new ConfigMap revision.
_K8S_DATA_LINK = "..data"
# Opens and reads (the callback's own included) must never count as changes. A
# new directory's files arrive as events of their own.
_TREE_EVENTS: tuple[type[FileSystemEvent], ...] = (
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)
_LINK_EVENTS: tuple[type[FileSystemEvent], ...] = (*_TREE_EVENTS, DirCreatedEvent)
_INOTIFY_EXHAUSTED = (errno.ENOSPC, errno.EMFILE)
_MIN_LOCK_POLL = 0.05
_STALE_LOCK_WARNING = 30.0


def is_editor_noise(name: str) -> bool:
    """Temp, swap, backup and lock files that editors and desktops write next to a file."""
    return (
        name == "4913"  # vim's "may I create files here" probe
        or name.startswith(_NOISE_PREFIXES)
        or name.endswith(_NOISE_SUFFIXES)
    )


def is_relevant(path: str, *, is_directory: bool = False) -> bool:
    """Whether a change at ``path`` (relative to the watched dir) can change the config set.

    Mirrors what the loader reads: YAML files outside hidden directories. A
    deleted or moved directory may take YAML files with it, so it counts; the
    watched directory itself is ``"."``.
    """
    parts = PurePath(path).parts
    if not parts:
        return is_directory
    if parts[0] == os.pardir or any(part.startswith(".") for part in parts[:-1]):
        return False
    name = parts[-1]
    if name == _K8S_DATA_LINK:
        return True
    if name.startswith(".") or is_editor_noise(name):
        return False
    return is_directory or name.endswith(YAML_SUFFIXES)


def fingerprint_dir(root: Path) -> str:
    """A digest of every YAML file's name, mtime, size and content under ``root``.

    The content is included because an mtime can stay put (coarse clocks,
    ``cp -p``, a checkout restoring timestamps) while the bytes change.
    """
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(b"missing")
        return digest.hexdigest()
    for path in discover([root]):
        digest.update(os.fsencode(path.relative_to(root)) + b"\0")
        try:
            st = path.stat()
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{st.st_mtime_ns}:{st.st_size}:{content}\0".encode())
        except OSError as exc:
            digest.update(f"error:{exc.errno}\0".encode())
    return digest.hexdigest()


class Debouncer:
    """Decides when a burst of changes has settled; the clock is passed in.

    A quiet window alone never fires while something keeps writing, so
    ``max_wait`` caps how long the first change of a burst can wait. While a git
    operation holds its index lock the work tree is half-written: nothing fires
    until the lock is gone, and then only after a fresh quiet window, which gives
    git time to move HEAD after it releases the index.
    """

    def __init__(self, quiet: float, max_wait: float) -> None:
        if quiet < 0 or max_wait < quiet:
            raise ValueError(f"need 0 <= quiet <= max_wait, got {quiet=} {max_wait=}")
        self.quiet = quiet
        self.max_wait = max_wait
        self._first: float | None = None
        self._last: float | None = None
        self._forced_at: float | None = None
        self._held_since: float | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    @property
    def held_since(self) -> float | None:
        return self._held_since

    def event(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def force(self, now: float) -> None:
        """Be due at ``now``; pending events fire with it rather than separately."""
        self.event(now)
        if self._forced_at is None:
            self._forced_at = now

    def hold(self, now: float) -> None:
        if self._held_since is None:
            self._held_since = now

    def release(self, now: float) -> None:
        if self._held_since is None:
            return
        self._held_since = None
        if self._first is not None:
            self._first = self._last = now
            self._forced_at = None

    def deadline(self) -> float | None:
        """When to fire; ``None`` when nothing is pending or the lock holds it back."""
        if self._first is None or self._last is None or self._held_since is not None:
            return None
        deadline = min(self._last + self.quiet, self._first + self.max_wait)
        if self._forced_at is not None:
            deadline = min(deadline, self._forced_at)
        return deadline

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def fired(self) -> None:
        self._first = self._last = self._forced_at = None


@dataclass(frozen=True)
class _Target:
    """What the config path resolves to; a change of identity means a swap."""

    path: str
    dev: int
    ino: int
    index_lock: str | None

    def same_dir(self, other: _Target) -> bool:
        return (self.path, self.dev, self.ino) == (other.path, other.dev, other.ino)


def _git_index_lock(start: Path) -> str | None:
    """The index lock of the work tree containing ``start``, if any.

    Worktrees (git-sync checks out into them) and submodules have a ``.git``
    file naming their private git dir, where their index lives.
    """
    for directory in (start, *start.parents):
        dotgit = directory / ".git"
        if dotgit.is_dir():
            return str(dotgit / "index.lock")
        if dotgit.is_file():
            try:
                first = dotgit.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, UnicodeDecodeError, IndexError):
                return None
            if first.startswith("gitdir:"):
                return os.path.normpath(directory / first[len("gitdir:") :].strip() / "index.lock")
            return None
    return None


def _resolve(path: Path) -> _Target | None:
    real = Path(os.path.realpath(path))
    try:
        st = real.stat()
    except OSError:
        return None
    if not real.is_dir():
        return None
    return _Target(str(real), st.st_dev, st.st_ino, _git_index_lock(real))


def _event_paths(event: FileSystemEvent) -> list[str]:
    paths = [os.fsdecode(event.src_path)]
    if event.event_type == EVENT_TYPE_MOVED and event.dest_path:
        paths.append(os.fsdecode(event.dest_path))
    return [p for p in paths if p]


class _Handler(FileSystemEventHandler):
    def __init__(self, on_event: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._on_event = on_event

    def dispatch(self, event: FileSystemEvent) -> None:
        self._on_event(event)


class ConfigWatcher:
    """Calls ``on_change`` once a burst of changes under ``path`` has settled.

    ``on_change`` runs on one worker thread, so it never overlaps itself, and
    whatever changes while it runs leads to exactly one more call. ``path`` may
    be a symlink that gets atomically replaced (git-sync, kubelet volumes): the
    link's parent directory is watched too and the watch follows the new target.
    Every ``resync_interval`` seconds (``<= 0`` disables it) ``fingerprint`` is
    compared with its value at the last call, catching changes inotify never
    reported; after a failed call the next resync retries. A git index lock that
    stays ``stale_lock_after`` seconds is taken for one left by a git that died:
    it is logged and no longer waited for, so config changes are not held forever.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        *,
        quiet: float = 0.15,
        max_wait: float = 1.0,
        resync_interval: float = 60.0,
        fingerprint: Callable[[], str] | None = None,
        logger: logging.Logger | None = None,
        stale_lock_after: float = 600.0,
    ) -> None:
        self._path = Path(os.path.abspath(path))
        self._on_change = on_change
        self._debouncer = Debouncer(quiet, max_wait)
        self._resync_interval = resync_interval if resync_interval > 0 else None
        self._fingerprint = fingerprint or (lambda: fingerprint_dir(self._path))
        self._log = logger or logging.getLogger(__name__)
        self._cond = threading.Condition()
        self._started = False
        self._stopping = False
        self._target: _Target | None = None
        self._observer: BaseObserver | None = None
        self._polling = False
        self._tree_watch: ObservedWatch | None = None
        self._tree_handler = _Handler(self._on_tree_event)
        self._link_handler = _Handler(self._on_link_event)
        self._worker: threading.Thread | None = None
        self._last_fingerprint: str | None = None
        self._next_resync: float | None = None
        self._stale_lock_after = stale_lock_after
        self._stale_lock: tuple[int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def target(self) -> Path | None:
        """The directory currently watched, after resolving symlinks."""
        target = self._target
        return Path(target.path) if target is not None else None

    @property
    def alive(self) -> bool:
        """True while the worker thread runs, for a systemd watchdog to vouch for."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    @property
    def polling(self) -> bool:
        """True once inotify ran out of watches or instances and polling took over."""
        return self._polling

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start watching; changes from now on are seen, and the resync baseline is taken."""
        with self._cond:
            if self._started or self._stopping:
                raise RuntimeError("a ConfigWatcher can be started only once")
            self._started = True
        self._target = _resolve(self._path)
        if self._target is None:
            self._log.warning("config dir %s does not exist yet; waiting for it", self._path)
        self._observer = self._start_observer()
        self._last_fingerprint = self._safe_fingerprint()
        if self._resync_interval is not None:
            self._next_resync = time.monotonic() + self._resync_interval
        self._worker = threading.Thread(target=self._run, name="syncd-config-watcher", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop and join the threads; waits for a running callback. Safe to call twice."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        observer = self._observer
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()

    def trigger(self) -> None:
        """Ask for a call now (SIGHUP, a reload request), merged with any pending one."""
        with self._cond:
            self._debouncer.force(time.monotonic())
            self._cond.notify_all()

    # observer

    def _start_observer(self) -> BaseObserver:
        observer: BaseObserver | None = None
        try:
            observer = Observer()
            self._schedule(observer)
            observer.start()
            return observer
        except OSError as exc:
            if exc.errno not in _INOTIFY_EXHAUSTED:
                raise
            if observer is not None:
                observer.stop()
            return self._start_polling(exc)

    def _start_polling(self, reason: OSError) -> BaseObserver:
        interval = max(self._debouncer.max_wait, 0.1)
        self._log.warning(
            "cannot watch %s with inotify (%s); polling every %.1fs instead. "
            "Raise fs.inotify.max_user_watches / max_user_instances to fix",
            self._path,
            reason,
            interval,
        )
        self._polling = True
        observer = PollingObserver(timeout=interval)
        self._schedule(observer)
        observer.start()
        return observer

    def _schedule(self, observer: BaseObserver) -> None:
        parent = self._path.parent
        if parent.is_dir():
            observer.schedule(self._link_handler, parent, event_filter=list(_LINK_EVENTS))
        self._tree_watch = None
        if self._target is not None:
            self._tree_watch = observer.schedule(
                self._tree_handler,
                self._target.path,
                recursive=True,
                event_filter=list(_TREE_EVENTS),
            )

    def _retarget(self) -> bool:
        """Follow ``path`` to a new directory if it was swapped; True if it was."""
        target = _resolve(self._path)
        current = self._target
        if target is not None and current is not None and target.same_dir(current):
            self._target = target  # a `git init` may have added an index lock to wait for
            return False
        if target is None and current is None:
            return False
        self._log.info(
            "config dir %s now resolves to %s", self._path, target.path if target else "nothing"
        )
        self._target = target
        observer = self._observer
        if observer is None:
            return True
        if self._tree_watch is not None:
            with contextlib.suppress(KeyError):
                observer.unschedule(self._tree_watch)
            self._tree_watch = None
        if target is not None:
            try:
                self._tree_watch = observer.schedule(
                    self._tree_handler, target.path, recursive=True, event_filter=list(_TREE_EVENTS)
                )
            except OSError as exc:
                if exc.errno not in _INOTIFY_EXHAUSTED or self._polling:
                    raise
                observer.stop()
                observer.join()
                self._observer = self._start_polling(exc)
        return True

    # events (observer thread)

    def _on_tree_event(self, event: FileSystemEvent) -> None:
        target = self._target
        if target is None:
            return
        paths = _event_paths(event)
        if target.index_lock is not None and target.index_lock in paths:
            with self._cond:
                self._cond.notify_all()
            return
        if any(
            is_relevant(os.path.relpath(p, target.path), is_directory=event.is_directory)
            for p in paths
        ):
            self._changed(event)
        else:
            self._log.debug("ignoring %s %s", event.event_type, " -> ".join(paths))

    def _on_link_event(self, event: FileSystemEvent) -> None:
        if str(self._path) in _event_paths(event):
            self._changed(event)

    def _changed(self, event: FileSystemEvent) -> None:
        self._log.debug("change: %s %s", event.event_type, " -> ".join(_event_paths(event)))
        with self._cond:
            self._debouncer.event(time.monotonic())
            self._cond.notify_all()

    # worker thread

    def _index_lock_identity(self) -> tuple[int, int] | None:
        target = self._target
        if target is None or target.index_lock is None:
            return None
        try:
            st = os.lstat(target.index_lock)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _index_locked(self) -> bool:
        identity = self._index_lock_identity()
        return identity is not None and identity != self._stale_lock

    def _next_action(self) -> Literal["fire", "resync"] | None:
        """Wait until it is time to fire or resync; None once stopping."""
        debouncer = self._debouncer
        lock_poll = max(debouncer.quiet, _MIN_LOCK_POLL)
        warned_stale = False
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._next_resync is not None and now >= self._next_resync:
                    return "resync"
                timeout: float | None
                held_since = debouncer.held_since
                if held_since is not None:
                    if not self._index_locked():
                        self._log.debug("git index lock released")
                        debouncer.release(now)
                        continue
                    lock_name = self._target.index_lock if self._target else "the git index lock"
                    if now - held_since >= self._stale_lock_after:
                        self._stale_lock = self._index_lock_identity()
                        self._log.warning(
                            "%s has stayed for %.0f s: taking it for a lock left by a git "
                            "that died, and reading the config as it is; remove it",
                            lock_name,
                            now - held_since,
                        )
                        debouncer.release(now)
                        continue
                    if not warned_stale and now - held_since > _STALE_LOCK_WARNING:
                        warned_stale = True
                        self._log.warning(
                            "still waiting for %s to go away; remove it if no git runs",
                            lock_name,
                        )
                    timeout = lock_poll
                elif debouncer.due(now):
                    if self._index_locked():
                        self._log.info("git operation in progress; waiting for its index lock")
                        debouncer.hold(now)
                        continue
                    debouncer.fired()
                    return "fire"
                else:
                    deadline = debouncer.deadline()
                    timeout = None if deadline is None else deadline - now
                if self._next_resync is not None:
                    until_resync = self._next_resync - now
                    timeout = until_resync if timeout is None else min(timeout, until_resync)
                self._cond.wait(timeout)
        return None

    def _run(self) -> None:
        while (action := self._next_action()) is not None:
            try:
                if action == "fire":
                    self._fire()
                else:
                    self._resync()
            except Exception:
                self._log.exception("config watcher: %s failed", action)
            if self._resync_interval is not None:
                with self._cond:
                    self._next_resync = time.monotonic() + self._resync_interval

    def _fire(self) -> None:
        self._retarget()
        fingerprint = self._safe_fingerprint()
        try:
            self._on_change()
        except Exception:
            self._log.exception("config change callback failed")
            fingerprint = None
        self._last_fingerprint = fingerprint

    def _resync(self) -> None:
        swapped = self._retarget()
        with self._cond:
            if self._debouncer.pending and not swapped:
                return  # the coming call takes a fresh fingerprint anyway
        fingerprint = self._safe_fingerprint()
        if swapped or (fingerprint is not None and fingerprint != self._last_fingerprint):
            self._log.info("resync: config changed without a file event; reloading")
            with self._cond:
                self._debouncer.force(time.monotonic())

    def _safe_fingerprint(self) -> str | None:
        try:
            return self._fingerprint()
        except Exception:
            self._log.exception("config fingerprint failed")
            return None
