"""The reconcile step of the config flow: load the config dir, apply it to the
registry, and keep the last-known-good copy of what was applied.

Loading (``configset``: discovery, YAML, schema, semantics) and planning
(``plan``) are pure of side effects on the running set; ``registry.apply`` is
the one place the active set changes, all or nothing. This module runs that
sequence, names the revision (``git``), and decides what is logged.

After the first one, every reconcile runs on the watcher's worker thread,
whatever asked for it (a file change, the periodic resync, SIGHUP or
``POST /-/reload``), so a burst of requests collapses into one; a lock keeps
the first from overlapping with one the watcher starts. :class:`Reloads`
counts them so that a caller can wait for one that started after its request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from syncd.config.configset import ConfigSet
from syncd.config.diagnostics import Diagnostic
from syncd.config.discovery import PathNotFoundError
from syncd.config.filecache import ConfigLoader
from syncd.reconcile import git, lastgood
from syncd.registry import Outcome, Registry

log = logging.getLogger("syncd")


class Reconciler:
    def __init__(
        self, config_dir: Path, state_dir: Path, loader: ConfigLoader, registry: Registry
    ) -> None:
        self.config_dir = config_dir
        self.last_known_good_dir = state_dir / "last-known-good"
        self.loader = loader
        self.registry = registry
        self._loading = threading.Lock()  # the loader's cache is not thread-safe
        self._reconciling = threading.Lock()
        self._to_save: tuple[ConfigSet, str] | None = None
        self.unsettled: tuple[str, ...] = ()
        # What the last reconcile read, for the watcher's resync to compare with.
        self.digest: str | None = None
        self.revisions = git.Revisions()

    def load(self, *, trust_stat: bool, changed: Iterable[str] | None = None) -> ConfigSet:
        try:
            with self._loading:
                return self.loader.load([self.config_dir], trust_stat=trust_stat, changed=changed)
        except PathNotFoundError as exc:
            return self._unusable(str(exc))

    def _unusable(self, message: str) -> ConfigSet:
        """An invalid set that says what broke, so the attempt is recorded as failed."""
        return ConfigSet((), (Diagnostic(str(self.config_dir), 1, 1, "", message),))

    def fingerprint(self) -> str:
        """What the watcher compares to tell a real change from a no-op."""
        return self.load(trust_stat=False).digest

    def reconcile(self, changed: Iterable[str] | None = None) -> Outcome:
        """One attempt; whatever goes wrong in it is a failed attempt, never a dead thread.

        ``changed`` names the paths (relative to the config dir) that changed; only
        those files are read, and only their integrations' tokens resolved. None
        (at start, on SIGHUP or a reload request, after a resync found a change)
        stats every file and resolves every token.
        """
        with self._reconciling:
            last = self.registry.last_attempt
            failed_before = last is not None and not last.ok
            try:
                config = self.load(trust_stat=True, changed=changed)
                self.unsettled = config.unsettled
                self.digest = config.digest
                revision = self.revisions.revision(self.config_dir, config.digest)
                outcome = self.registry.apply(
                    config, revision, source=str(self.config_dir), reuse_tokens=changed is not None
                )
            except Exception as exc:
                log.exception("reconcile failed")
                self.digest = None
                config = self._unusable(f"reconcile failed: {type(exc).__name__}: {exc}")
                revision = "unknown"
                outcome = self.registry.apply(config, revision)
            if outcome.ok and (outcome.changed or not self.last_known_good_dir.exists()):
                self._to_save = (config, revision)
            self._log(outcome, failed_before)
            return outcome

    def _log(self, outcome: Outcome, failed_before: bool) -> None:
        if outcome.ok and outcome.plan is not None and outcome.changed:
            log.info("applied %s: %s", outcome.revision, outcome.plan.done())
        elif outcome.ok and failed_before:
            log.info("config %s is valid again; it matches the set in use", outcome.revision)
        elif outcome.ok:
            log.debug("reconciled %s: no changes", outcome.revision)
        else:
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
        """Copy the last applied set; run off the reconcile's path (a housekeeping chore)."""
        pending, self._to_save = self._to_save, None
        if pending is None:
            return
        config, revision = pending
        try:
            lastgood.save(self.last_known_good_dir, config, revision, self.config_dir)
        except (OSError, ValueError) as exc:
            log.warning("could not save the last-known-good config: %s", exc)

    def start_on_last_known_good(self) -> Outcome | None:
        saved = lastgood.load(self.last_known_good_dir, self.loader.options)
        if saved is None:
            return None
        outcome = self.registry.restore(*saved)
        if not outcome.ok:
            return None
        log.warning(
            "the config in %s is invalid; started on the last-known-good set %s saved in %s",
            self.config_dir,
            saved[1],
            self.last_known_good_dir,
        )
        return outcome


class Reloads:
    """Counts reconciles run on the watcher's thread, for callers that wait on one."""

    def __init__(
        self,
        reconciler: Reconciler,
        trigger: Callable[[], None],
        on_done: Callable[[bool], None],
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

    def on_change(self, changed: Iterable[str] | None = None) -> str | None:
        """The watcher's callback: one reconcile, then tell who waits; returns the
        digest of what was read."""
        with self._done:
            self._started += 1
            notify_ready, self._notify_ready = self._notify_ready, False
        try:
            self._reconciler.reconcile(changed)
            if self._reconciler.unsettled:
                log.info(
                    "%s changed while read; reading again after the quiet period",
                    ", ".join(self._reconciler.unsettled),
                )
                self._again()
        finally:
            with self._done:
                self._finished += 1
                self._done.notify_all()
            self._on_done(notify_ready)
        return self._reconciler.digest

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
