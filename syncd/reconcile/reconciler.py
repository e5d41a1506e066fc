"""The reconcile step of the config flow: load the config dir, apply it to the
registry, and keep the last-known-good copy of what was applied.

Loading (``configset``: discovery, YAML, schema, semantics) and planning
(``plan``) are pure of side effects on the running set; ``registry.apply`` is
the one place the active set changes, all or nothing. This module runs that
sequence, names the revision (``git``), and decides what is logged.

Every reconcile, the first included, runs on the watcher's worker thread,
whatever asked for it (a file change, the periodic resync, SIGHUP or
``POST /-/reload``), so a burst of requests collapses into one. The resync
itself (:meth:`Reconciler.resync`) runs on the watcher's resync thread: it
walks and stats the files without the loader, and takes the loader only to
compare, so an edit is applied while a resync walks 50,000 files.
:class:`Reloads` counts them so that a caller can wait for one that started
after its request. Each has a budget (``budget``) past which its set is
rejected; and once the daemon stops (:meth:`Reconciler.close`), a reconcile
still under way applies nothing: it is abandoned rather than waited for.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from syncd.config.budget import Clock, Deadline
from syncd.config.configset import ConfigSet
from syncd.config.diagnostics import Diagnostic
from syncd.config.discovery import PathNotFoundError
from syncd.config.filecache import ConfigLoader
from syncd.reconcile import git, lastgood
from syncd.reconcile.gitcheckout import RepoNames
from syncd.registry import Outcome, Registry

log = logging.getLogger("syncd")

# What a reconcile or fingerprint abandoned at shutdown reports as its digest.
CLOSED = "closed"
# How the digest of a set whose load its budget cut begins; the rest is a digest
# of the files' fingerprints (stat, not read), which the resync compares while
# the set stays cut, rather than spending the budget again on each resync.
OVER_BUDGET = "over-budget:"
# What fingerprint() answers once a resync found a difference: never a digest.
DIFFERS = "differs"
DEFAULT_BUDGET = 30.0

# Names the set read from a config dir with its content digest: ``git:<commit>``,
# ``sha256:<hash>`` (``git.Revisions.revision``, a git source's poller).
RevisionOf = Callable[[Path, str], str]


@dataclass(frozen=True)
class Budget:
    """How long one reconcile may spend reading and checking the config
    (``--reconcile-timeout``). Every reconcile runs on the watcher's one thread,
    so a set slow to check (a hostile file, or very many files) would otherwise
    hold every later change, reload and the daemon's stop for as long as it
    takes; past its budget the loader stops and the set is rejected."""

    seconds: float = DEFAULT_BUDGET
    clock: Clock = time.monotonic

    def start(self) -> Deadline:
        return Deadline.within(self.seconds, self.clock)


class Reconciler:
    def __init__(
        self,
        config_dir: Path,
        state_dir: Path,
        loader: ConfigLoader,
        registry: Registry,
        *,
        budget: Budget | None = None,
        git_dir: Path | None = None,
        revision: RevisionOf | None = None,
        names: RepoNames | None = None,
    ) -> None:
        """``revision`` names each set read (default: the commit of the checkout the
        config dir is, or ``--git-dir`` names, else the content hash); ``names``,
        with a git source, names its files as the repository does in what the
        daemon shows (``/status``, the log)."""
        self.config_dir = config_dir
        self.last_known_good_dir = state_dir / "last-known-good"
        self.loader = loader
        self.registry = registry
        self.budget = budget or Budget()
        self._loading = threading.Lock()  # the loader's cache is not thread-safe
        self._reconciling = threading.Lock()
        # Held while a set is applied; close() takes it, so none is applied after.
        self._applying = threading.Lock()
        self._closed = False
        self._last_good = lastgood.LastGood(self.last_known_good_dir)
        self._unsaved = lastgood.Pending()
        self._on_saved_set = False  # serving the last-known-good set, not yet the config dir's
        self.unsettled: tuple[str, ...] = ()
        # What the last reconcile read, for the watcher's resync to compare with.
        self.digest: str | None = None
        # When the reconcile under way started (the budget's clock), for who waits on it.
        self.running_since: float | None = None
        self._revision = revision or git.Revisions(git_dir).revision
        self._names = names

    def load(
        self, *, trust_stat: bool, changed: Iterable[str] | None = None, moved: bool = False
    ) -> ConfigSet:
        """The config dir's set, or an invalid one when it took past the budget;
        ``changed`` and ``moved`` as ``ConfigLoader.load`` takes them."""
        deadline = self.budget.start()
        try:
            with self._loading:
                try:
                    config = self.loader.load(
                        [self.config_dir],
                        trust_stat=trust_stat,
                        changed=changed,
                        moved=moved,
                        deadline=deadline,
                    )
                finally:
                    self._unsaved.note(self.loader.take_changes())
        except PathNotFoundError as exc:
            return self._unusable(str(exc))
        if config.valid or deadline.clock() < deadline.at:
            return config
        # Invalid once its deadline passed: cut there, or it would have been.
        return replace(config, digest=self._cut_digest())

    def _cut_digest(self) -> str:
        files = self.loader.scan(self.config_dir).files
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(f"{name}\0{files[name]}\0".encode("utf-8", "surrogateescape"))
        return OVER_BUDGET + digest.hexdigest()

    def _unusable(self, message: str) -> ConfigSet:
        """An invalid set that says what broke, so the attempt is recorded as failed."""
        return ConfigSet((), (Diagnostic(str(self.config_dir), 1, 1, "", message),))

    def resync(self) -> frozenset[str] | None:
        """What the periodic resync must read: the files whose stat fingerprint is
        not the one the loader read them with, and those added or removed (paths
        relative to the config dir; empty: nothing); None when everything must be
        read (the last reconcile failed outright, or the loader cannot name them).

        The loader is held only while its fingerprints are copied, a few
        milliseconds at 50,000 files; the walk that compares holds nothing, and
        gives way to a reconcile under way (see ``_check_open``).
        """
        if self._closed:
            return frozenset()
        digest = self.digest
        if digest is None:
            return None
        if digest.startswith(OVER_BUDGET):
            return frozenset() if self._cut_digest() == digest else None
        with self._loading:
            baseline = self.loader.baseline()
        try:
            return self.loader.differences(self.config_dir, baseline, self._check_open)
        except (OSError, _Closed):
            return frozenset()  # stopping, or a directory went: the next resync looks

    def _check_open(self) -> None:
        """At each directory of a resync's walk: stop when the daemon stops, and wait
        while a reconcile runs. Both are Python and share one interpreter lock;
        the walk giving way is what keeps an edit applied at 50,000 files as soon
        as it would be without a resync."""
        if self._closed:
            raise _Closed
        if self._reconciling.locked():
            with self._reconciling:
                pass
            if self._closed:
                raise _Closed

    def fingerprint(self) -> str:
        """The resync for a watcher that compares a value with the one its callback
        returned (``Reloads.on_change`` returns the digest): the digest while
        nothing differs, else a value no digest takes, after which the watcher
        reads everything. :meth:`resync` names the files instead."""
        if self._closed:
            return CLOSED
        found = self.resync()
        if found == frozenset() and self.digest is not None:
            return self.digest
        return DIFFERS

    def close(self, timeout: float) -> bool:
        """From now on no reconcile applies anything. Waits up to ``timeout`` for one
        applying a set at this moment; False if it was still at it."""
        self._closed = True
        if not self._applying.acquire(timeout=timeout):
            return False
        self._applying.release()
        return True

    def reconcile(
        self, changed: Iterable[str] | None = None, *, moved: bool = False
    ) -> Outcome | None:
        """One attempt; whatever goes wrong in it is a failed attempt, never a dead
        thread. None when the daemon stopped first: nothing was applied.

        ``changed`` names the paths (relative to the config dir) that changed; only
        those files are read, and only their integrations' tokens resolved. None
        (at start, on SIGHUP or a reload request, after a resync found a change)
        stats every file and resolves every token. ``moved``: the config dir is a
        link that now names another checkout, whose other files are hard links of
        the ones read (``ConfigLoader.load``).
        """
        with self._reconciling:
            if self._closed:
                return None
            self.running_since = self.budget.clock()
            try:
                return self._attempt(changed, moved)
            finally:
                self.running_since = None

    def _attempt(self, changed: Iterable[str] | None, moved: bool) -> Outcome | None:
        last = self.registry.last_attempt
        failed_before = last is not None and not last.ok
        try:
            config = self.load(trust_stat=True, changed=changed, moved=moved)
            self.unsettled = config.unsettled
            self.digest = config.digest
            revision = self._revision(self.config_dir, config.digest)
            outcome = self._apply(config, revision, reuse_tokens=changed is not None)
        except Exception as exc:
            if self._closed:
                return None
            log.exception("reconcile failed")
            self.digest = None
            config = self._unusable(f"reconcile failed: {type(exc).__name__}: {exc}")
            revision = "unknown"
            outcome = self._apply(config, revision, reuse_tokens=False)
        if outcome is None:
            return None
        if outcome.ok and (outcome.changed or not self._last_good.current):
            self._unsaved.put(config, revision, self.config_dir)
        self._log(outcome, failed_before)
        return outcome

    def _apply(self, config: ConfigSet, revision: str, *, reuse_tokens: bool) -> Outcome | None:
        source = str(self.config_dir)
        if self._names is not None:
            source = self._names.name(source)
            if config.diagnostics:
                config = replace(config, diagnostics=tuple(self._names.relabel(config.diagnostics)))
        with self._applying:
            if self._closed:
                return None
            return self.registry.apply(config, revision, source=source, reuse_tokens=reuse_tokens)

    def _log(self, outcome: Outcome, failed_before: bool) -> None:
        on_saved_set, self._on_saved_set = self._on_saved_set, False
        if not outcome.ok:
            self._log_rejected(outcome)
        elif outcome.plan is not None and outcome.changed:
            log.info("applied %s: %s", outcome.revision, outcome.plan.done())
        elif failed_before:
            log.info("config %s is valid again; it matches the set in use", outcome.revision)
        elif on_saved_set:
            log.info("config %s matches the last-known-good set in use", outcome.revision)
        else:
            log.debug("reconciled %s: no changes", outcome.revision)

    def _log_rejected(self, outcome: Outcome) -> None:
        serving = self.registry.snapshot.revision
        log.error(
            "config %s rejected%s: %d problem(s)",
            outcome.revision,
            f", keeping {serving}" if serving else "",
            len(outcome.diagnostics),
        )
        for diagnostic in outcome.diagnostics:
            log.error("%s", diagnostic)

    def save_last_known_good(self) -> None:
        """Save the last applied set; run off the reconcile's path (a housekeeping
        chore). What it costs is what changed since the last save."""
        pending = self._unsaved.take()
        if pending is None:
            return
        try:
            self._last_good.save(pending.config, pending.revision, pending.source, pending.changes)
        except (OSError, ValueError) as exc:
            log.warning("could not save the last-known-good config: %s", exc)

    def serve_last_known_good(self) -> Outcome | None:
        """Serve the set saved in the state dir, if there is one, it reads within the
        budget and its tokens resolve; None otherwise."""
        saved = lastgood.read(self.last_known_good_dir, self.loader.options, self.budget.start())
        if saved is None:
            return None
        with self._applying:
            if self._closed:
                return None
            outcome = self.registry.restore(saved.config, saved.revision)
        if not outcome.ok:
            log.warning(
                "the last-known-good set %s in %s cannot be served: %s",
                saved.revision,
                self.last_known_good_dir,
                outcome.diagnostics[0] if outcome.diagnostics else "invalid",
            )
            return None
        self._on_saved_set = True
        if saved.legacy is not None:
            # Saved in the older layout: the next save writes it in this one.
            self._unsaved.put(saved.config, saved.revision, saved.legacy)
        return outcome


class _Closed(Exception):
    """The daemon stopped while a resync walked: the walk ends there."""


class Reloads:
    """Counts reconciles run on the watcher's thread, for callers that wait on one.

    ``on_done`` is called after each with its outcome (None: abandoned at
    shutdown) and whether it was asked to report readiness."""

    def __init__(
        self,
        reconciler: Reconciler,
        trigger: Callable[[], None],
        on_done: Callable[[Outcome | None, bool], None],
        again: Callable[[], None] = lambda: None,
    ) -> None:
        self._reconciler = reconciler
        self._trigger = trigger
        self._on_done = on_done
        self._again = again
        self._done = threading.Condition()
        self._started = 0
        self._finished = 0
        self._notify_ready = False

    def on_change(self, changed: Iterable[str] | None = None, *, moved: bool = False) -> str | None:
        """The watcher's callback: one reconcile, then tell who waits; returns the
        digest of what was read. ``moved`` as :meth:`Reconciler.reconcile` takes it."""
        with self._done:
            self._started += 1
            notify_ready, self._notify_ready = self._notify_ready, False
        outcome = None
        try:
            reconcile = self._reconciler.reconcile
            outcome = reconcile(changed, moved=True) if moved else reconcile(changed)
            if outcome is not None and self._reconciler.unsettled:
                log.info(
                    "%s changed while read; reading again after the quiet period",
                    ", ".join(self._reconciler.unsettled),
                )
                self._again()
        finally:
            with self._done:
                self._finished += 1
                self._done.notify_all()
            self._on_done(outcome, notify_ready)
        return self._reconciler.digest if outcome is not None else CLOSED

    def request(self, *, notify_ready: bool = False) -> None:
        """Ask for a reconcile; with ``notify_ready``, the next one reports readiness."""
        with self._done:
            self._notify_ready = self._notify_ready or notify_ready
        self._trigger()

    def wait(self, timeout: float) -> Outcome | None:
        """Force a reconcile and wait for one that started after this call."""
        with self._done:
            target = self._started + 1
        self._trigger()
        with self._done:
            self._done.wait_for(lambda: self._finished >= target, timeout)
            finished = self._finished >= target
        return self._reconciler.registry.last_attempt if finished else None
