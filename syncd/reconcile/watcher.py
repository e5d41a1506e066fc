"""Watch the config directory and call a reconcile callback once changes settle.

The callback is handed the files that changed in the burst, so that one edit
among thousands costs one file; when the watcher cannot name them (a
directory moved, the config dir swapped, a forced reload) it hands None and
the callback reads the whole set. A periodic comparison (the resync) covers
whatever inotify misses (queue overflow, changes made through another path to
the same inode, a swap of an ancestor symlink). It runs on a thread of its
own, so a resync that walks 50,000 files never holds back a change's call;
given ``resync``, it hands on the files that differ, and the call reads those.

This module is the I/O side: watchdog's observer, the worker thread and the
resync. What counts as a change is ``pathfilter``'s; when to act on it is
``debounce``'s; what the directory resolves to is ``watchdir``'s.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
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

from syncd.reconcile.debounce import LockVerdict, ReloadSchedule, WatchTiming
from syncd.reconcile.pathfilter import PathFilter, is_relevant
from syncd.reconcile.watchdir import WatchTarget, fingerprint_dir, lock_identity, resolve_target

__all__ = ["Changed", "ConfigWatcher"]

# The paths, relative to the config dir, that changed; None: anything may have.
Changed = frozenset[str] | None

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


def _event_paths(event: FileSystemEvent) -> list[str]:
    paths = [os.fsdecode(event.src_path)]
    if event.event_type == EVENT_TYPE_MOVED and event.dest_path:
        paths.append(os.fsdecode(event.dest_path))
    return [p for p in paths if p]


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _swapped(current: WatchTarget | None, target: WatchTarget | None) -> bool:
    if current is None or target is None:
        return current is not target
    return not target.same_dir(current)


class _Handler(FileSystemEventHandler):
    def __init__(self, on_event: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._on_event = on_event

    def dispatch(self, event: FileSystemEvent) -> None:
        self._on_event(event)


class ConfigWatcher:
    """Calls ``on_change(changed)`` once a burst of changes under ``config_dir`` has
    settled. It returns the fingerprint of what it read, which the next resync
    compares with (None: the watcher takes one itself); with ``resync``, what it
    returns is not used.

    ``on_change`` runs on one worker thread, so it never overlaps itself, and
    whatever changes while it runs leads to exactly one more call. ``config_dir``
    may be a symlink that gets atomically replaced (git-sync, kubelet volumes):
    the link's parent directory is watched too and the watch follows the new
    target. Every ``resync_interval`` seconds (``<= 0`` disables it), on the
    resync thread, ``resync()`` names the files that changed unreported (empty:
    none; None: read everything) and the call that follows reads them; without
    ``resync``, ``fingerprint`` is compared with its value at the last call, and
    a difference has everything read. After a failed call the next resync reads
    everything.
    ``git_dir`` is the checkout the operator named, whose index lock is waited
    for; without it, only a checkout whose top is the config dir is.
    A git index lock that stays ``stale_lock_after`` seconds is taken for one
    left by a git that died: it is logged and no longer waited for, so config
    changes are not held forever. ``path_filter`` decides which changed paths
    count; the default counts what the loader reads.
    """

    def __init__(
        self,
        config_dir: Path,
        on_change: Callable[[Changed], str | None],
        *,
        quiet: float = 0.15,
        max_wait: float = 1.0,
        resync_interval: float = 60.0,
        fingerprint: Callable[[], str] | None = None,
        resync: Callable[[], Changed] | None = None,
        logger: logging.Logger | None = None,
        stale_lock_after: float = 600.0,
        path_filter: PathFilter = is_relevant,
        git_dir: Path | None = None,
    ) -> None:
        self._path = Path(os.path.abspath(config_dir))
        self._git_dir = git_dir
        self._on_change = on_change
        timing = WatchTiming(
            quiet=quiet,
            max_wait=max_wait,
            resync_interval=resync_interval if resync_interval > 0 else None,
            stale_lock_after=stale_lock_after,
        )
        self._reloads = ReloadSchedule(timing)
        self._fingerprint = fingerprint or (lambda: fingerprint_dir(self._path))
        self._resync_changes = resync
        self._path_filter = path_filter
        self._log = logger or logging.getLogger(__name__)
        self._cond = threading.Condition()
        self._started = False
        self._stopping = False
        self._target: WatchTarget | None = None
        self._observer: BaseObserver | None = None
        self._polling = False
        self._tree_watch: ObservedWatch | None = None
        self._tree_handler = _Handler(self._on_tree_event)
        self._link_handler = _Handler(self._on_link_event)
        self._worker: threading.Thread | None = None
        self._resyncer: threading.Thread | None = None
        self._resync_due = False
        self._fires = 0  # calls begun, for a resync to tell whether one ran meanwhile
        self._last_fingerprint: str | None = None
        self._retry = False  # the last call failed: the next resync reads everything
        self._changes: set[str] = set()
        self._anything = False  # a change no path names: the next call reads everything

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

    def start(self, *, first_call: bool = False) -> None:
        """Start watching; changes from now on are seen, and the resync baseline is taken.

        With ``first_call``, the worker calls ``on_change(None)`` at once and what
        it returns is the baseline: the caller's thread reads nothing, so a config
        slow to read holds only the worker.
        """
        with self._cond:
            if self._started or self._stopping:
                raise RuntimeError("a ConfigWatcher can be started only once")
            self._started = True
        self._target = self._resolve()
        if self._target is None:
            self._log.warning("config dir %s does not exist yet; waiting for it", self._path)
        self._observer = self._start_observer()
        if not first_call and self._resync_changes is None:
            self._last_fingerprint = self._safe_fingerprint()
        with self._cond:
            self._reloads.resync_after(time.monotonic())
            if first_call:
                self._anything = True
                self._reloads.force(time.monotonic())
        self._worker = threading.Thread(target=self._run, name="syncd-config-watcher", daemon=True)
        self._worker.start()
        if self._reloads.timing.resync_interval is not None:
            self._resyncer = threading.Thread(
                target=self._resyncs, name="syncd-config-resync", daemon=True
            )
            self._resyncer.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop and join the threads, waiting up to ``timeout`` (None: for ever) for a
        running callback. False when one still runs: it is left to end on its own
        (the worker is a daemon thread), and nothing is called after it. Safe to
        call twice."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        observer = self._observer
        if observer is not None:
            observer.stop()
            if observer.is_alive() and observer is not threading.current_thread():
                observer.join(_left(deadline))
        stopped = True
        for thread in (self._worker, self._resyncer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(_left(deadline))
                stopped = stopped and not thread.is_alive()
        return stopped

    def trigger(self) -> None:
        """Ask for a call now (SIGHUP, a reload request), merged with any pending one."""
        with self._cond:
            self._anything = True
            self._reloads.force(time.monotonic())
            self._cond.notify_all()

    # observer

    def _start_observer(self) -> BaseObserver:
        observer: BaseObserver | None = None
        try:
            observer = Observer()
            self._watch(observer)
            observer.start()
            return observer
        except OSError as exc:
            if exc.errno not in _INOTIFY_EXHAUSTED:
                raise
            if observer is not None:
                observer.stop()
            return self._start_polling(exc)

    def _start_polling(self, reason: OSError) -> BaseObserver:
        interval = max(self._reloads.timing.max_wait, 0.1)
        self._log.warning(
            "cannot watch %s with inotify (%s); polling every %.1fs instead. "
            "Raise fs.inotify.max_user_watches / max_user_instances to fix",
            self._path,
            reason,
            interval,
        )
        self._polling = True
        observer = PollingObserver(timeout=interval)
        self._watch(observer)
        observer.start()
        return observer

    def _watch(self, observer: BaseObserver) -> None:
        parent = self._path.parent
        if parent.is_dir():
            observer.schedule(self._link_handler, parent, event_filter=list(_LINK_EVENTS))
        self._tree_watch = None
        if self._target is not None:
            self._tree_watch = self._watch_tree(observer, self._target)

    def _watch_tree(self, observer: BaseObserver, target: WatchTarget) -> ObservedWatch:
        return observer.schedule(
            self._tree_handler, target.path, recursive=True, event_filter=list(_TREE_EVENTS)
        )

    def _resolve(self) -> WatchTarget | None:
        return resolve_target(self._path, self._git_dir)

    def _retarget(self) -> bool:
        """Follow the config path to a new directory if it was swapped; True if it was."""
        target = self._resolve()
        swapped = _swapped(self._target, target)
        # Even the same dir is taken anew: a `git init` may have added an index lock to wait for.
        self._target = target
        if swapped:
            self._log.info(
                "config dir %s now resolves to %s", self._path, target.path if target else "nothing"
            )
            self._rewatch_tree(target)
        return swapped

    def _rewatch_tree(self, target: WatchTarget | None) -> None:
        observer = self._observer
        if observer is None:
            return
        if self._tree_watch is not None:
            with contextlib.suppress(KeyError):
                observer.unschedule(self._tree_watch)
            self._tree_watch = None
        if target is None:
            return
        try:
            self._tree_watch = self._watch_tree(observer, target)
        except OSError as exc:
            if exc.errno not in _INOTIFY_EXHAUSTED or self._polling:
                raise
            observer.stop()
            observer.join()
            self._observer = self._start_polling(exc)

    # events (observer thread)

    def _on_tree_event(self, event: FileSystemEvent) -> None:
        target = self._target
        if target is None:
            return
        paths = _event_paths(event)
        if target.index_lock is not None and target.index_lock in paths:
            with self._cond:
                self._reloads.lock_touched()
                self._cond.notify_all()
        elif any(self._counts(target, p, event.is_directory) for p in paths):
            named = None if event.is_directory else [os.path.relpath(p, target.path) for p in paths]
            self._changed(event, named)
        else:
            self._log.debug("ignoring %s %s", event.event_type, " -> ".join(paths))

    def _counts(self, target: WatchTarget, path: str, is_directory: bool) -> bool:
        return self._path_filter(os.path.relpath(path, target.path), is_directory=is_directory)

    def _on_link_event(self, event: FileSystemEvent) -> None:
        if str(self._path) in _event_paths(event):
            self._changed(event, None)

    def _changed(self, event: FileSystemEvent, paths: Iterable[str] | None) -> None:
        self._log.debug("change: %s %s", event.event_type, " -> ".join(_event_paths(event)))
        if not self.polling:  # polling sees no closes, so it cannot wait for one
            self._track_writer(event)
        self.changed(paths)

    def _track_writer(self, event: FileSystemEvent) -> None:
        path = os.fsdecode(event.src_path)
        with self._cond:
            if isinstance(event, FileModifiedEvent):
                self._reloads.writing(path, time.monotonic())
            elif isinstance(event, FileClosedEvent | FileDeletedEvent | FileMovedEvent):
                self._reloads.closed(path, time.monotonic())

    def changed(self, paths: Iterable[str] | None = None) -> None:
        """Count as a change of ``paths`` (None: of anything): a call follows after
        the quiet period."""
        with self._cond:
            if paths is None:
                self._anything = True
            else:
                self._changes.update(paths)
            self._reloads.change(time.monotonic())
            self._cond.notify_all()

    # worker thread

    def _next_action(self) -> Literal["fire", "resync"] | None:
        """Wait until it is time to fire or resync; None once stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                step = self._reloads.next_step(now)
                match step.action:
                    case "fire" | "resync" as action:
                        return action
                    case "check_lock":
                        index_lock = self._target.index_lock if self._target else None
                        verdict = self._reloads.observe_lock(now, lock_identity(index_lock))
                        self._report_lock(verdict, index_lock)
                    case "wait":
                        self._cond.wait(None if step.until is None else step.until - now)
        return None

    def _report_lock(self, verdict: LockVerdict, index_lock: str | None) -> None:
        name = index_lock or "the git index lock"
        match verdict:
            case "locked":
                self._log.info("git operation in progress; waiting for its index lock")
            case "released":
                self._log.debug("git index lock released")
            case "long_wait":
                self._log.warning("still waiting for %s to go away; remove it if no git runs", name)
            case "stale":
                self._log.warning(
                    "%s has stayed for %.0f s: taking it for a lock left by a git "
                    "that died, and reading the config as it is; remove it",
                    name,
                    self._reloads.timing.stale_lock_after,
                )

    def _run(self) -> None:
        while (action := self._next_action()) is not None:
            handed_on = False
            try:
                if action == "fire":
                    self._fire()
                else:
                    handed_on = self._begin_resync()
            except Exception:
                self._log.exception("config watcher: %s failed", action)
            if not handed_on:  # else the resync thread starts the period when done
                with self._cond:
                    self._reloads.resync_after(time.monotonic())

    def _fire(self) -> None:
        with self._cond:
            changed = None if self._anything else frozenset(self._changes)
            self._changes, self._anything = set(), False
            self._fires += 1
        if self._retarget():
            changed = None
        try:
            fingerprint = self._on_change(changed)
        except Exception:
            self._log.exception("config change callback failed")
            with self._cond:
                self._last_fingerprint = None
                self._retry = True
            return
        if changed is None:
            with self._cond:
                self._retry = False
        if self._resync_changes is not None:
            return  # the resync compares with what the call read, not with a value
        if not (fingerprint or self._stopping):  # reading everything again is no use then
            fingerprint = self._safe_fingerprint()
        with self._cond:
            self._last_fingerprint = fingerprint

    def _begin_resync(self) -> bool:
        """On the worker thread, which alone moves the watch: follow a swapped config
        path at once, else hand the comparison to the resync thread (True)."""
        swapped = self._retarget()
        with self._cond:
            if swapped:
                self._log.info("resync: config dir swapped without a file event; reloading")
                self._anything = True
                self._reloads.force(time.monotonic())
                return False
            if self._resync_changes is None and self._reloads.pending:
                return False  # the coming call takes a fresh fingerprint anyway
            self._resync_due = True
            self._cond.notify_all()
            return True

    # resync thread

    def _resyncs(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._resync_due or self._stopping)
                if self._stopping:
                    return
                self._resync_due = False
                fires = self._fires
            try:
                self._resync(fires)
            except Exception:
                self._log.exception("config watcher: resync failed")
            with self._cond:
                self._reloads.resync_after(time.monotonic())
                self._cond.notify_all()

    def _resync(self, fires: int) -> None:
        found = self._found(fires)
        if found is not None and not found:
            self._log.debug("resync: no change")
            return
        with self._cond:
            if self._stopping:
                return
            if found is None:
                self._log.info("resync: config changed without a file event; reloading")
                self._anything = True
            else:
                self._log.info(
                    "resync: %d file(s) changed without a file event; reading them", len(found)
                )
                self._changes.update(found)
            self._reloads.force(time.monotonic())
            self._cond.notify_all()

    def _found(self, fires: int) -> Changed:
        """What the resync must have read: the files named, empty for nothing, None
        for everything."""
        if self._resync_changes is not None:
            return None if self._retry else self._resync_changes()
        fingerprint = self._safe_fingerprint()
        with self._cond:
            if self._fires != fires or self._reloads.pending or fingerprint is None:
                # A call ran meanwhile, or one is coming: either takes a fresh
                # baseline, which the next resync compares with.
                return frozenset()
            return frozenset() if fingerprint == self._last_fingerprint else None

    def _safe_fingerprint(self) -> str | None:
        try:
            return self._fingerprint()
        except Exception:
            self._log.exception("config fingerprint failed")
            return None
