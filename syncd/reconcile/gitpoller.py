"""Following a git remote: fetch on an interval (or at once when a webhook says
so), judge the new commit, check it out, and hand it to the daemon.

Each step is another module's (``gitmirror`` fetches, ``gitverify`` checks
signatures, ``gitcheckout`` writes and swaps); this one decides. A commit is
applied only when it is signed as ``--git-verify`` asks and, with
``--git-forbid-rewrites``, descends from the applied one; a rejected commit is
reported once (the daemon records it as a failed attempt, naming the commit)
and not fetched again until the ref moves. A fetch that fails or times out
changes nothing: the applied checkout stays, the error is in the status, and
the next try comes after a backoff that doubles up to its cap. A trigger
during a fetch makes one more fetch after it, however many arrive: a push
the running fetch missed is never lost, and a burst costs one fetch.

The first fetch after a start always checks out anew, even the commit already
current: the flags (``--git-path``, ``--git-verify``, ``--git-max-size``) may
have changed, and a checkout written before a power cut may be short.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from syncd.config.discovery import ConfigFiles
from syncd.config.secrets import redact
from syncd.reconcile import gitcheckout, gitcredential
from syncd.reconcile.gitcheckout import Checkouts, Tree, TreeRefused, Written
from syncd.reconcile.gitcommand import GitError, Repo
from syncd.reconcile.gitmirror import LOCAL_TIMEOUT, Fetched, Mirror
from syncd.reconcile.gitsource import GitSource
from syncd.reconcile.gitverify import GNUPG, Verifier

log = logging.getLogger("syncd")

FetchResult = Literal["changed", "unchanged", "rejected", "failed"]
RejectionKind = Literal["unverified", "rewrite", "tree"]
Ancestry = Literal["first", "descends", "rewrite", "unknown"]


@dataclass(frozen=True)
class PollTiming:
    """When fetches happen: every ``interval`` seconds plus up to ``jitter`` of it
    (so that daemons started together do not fetch together); after failures,
    from ``backoff_base`` (at most the interval) doubling up to ``backoff_cap``
    (at least the interval), with the same jitter."""

    interval: float = 60.0
    jitter: float = 0.1
    backoff_base: float = 5.0
    backoff_cap: float = 300.0

    def delay(self, failures: int, draw: float) -> float:
        """Seconds until the next fetch after ``failures`` failures in a row (0: the
        last one worked); ``draw`` is a random number in [0, 1)."""
        if failures == 0:
            base = self.interval
        else:
            first = min(self.backoff_base, self.interval)
            base = min(max(self.backoff_cap, self.interval), first * 2 ** (failures - 1))
        return base * (1 + self.jitter * draw)


@dataclass
class PollSchedule:
    """When the next fetch is due; pure, on the clock values it is given."""

    timing: PollTiming
    due: float = 0.0
    wanted: bool = True  # the first fetch runs at once
    failures: int = 0

    def wait(self, now: float) -> float:
        """Seconds to wait before fetching (0: fetch now)."""
        return 0.0 if self.wanted else max(0.0, self.due - now)

    def begin(self) -> None:
        """A fetch starts: a trigger from now on asks for another."""
        self.wanted = False

    def trigger(self) -> None:
        self.wanted = True

    def done(self, now: float, ok: bool, draw: float) -> float:
        """A fetch ended; the seconds until the next."""
        self.failures = 0 if ok else self.failures + 1
        delay = self.timing.delay(self.failures, draw)
        self.due = now + delay
        return delay


@dataclass(frozen=True)
class Checkout:
    """A commit checked out and made current; the daemon reconciles ``link`` (or
    ``directory``, the checkout it names now). ``written`` files were copied out
    of git, ``linked`` ones linked from the checkout it replaced."""

    commit: str
    ref: str
    directory: Path
    link: Path
    ancestry: Ancestry = "first"
    written: int = 0
    linked: int = 0

    @property
    def revision(self) -> str:
        return f"git:{self.commit}"


@dataclass(frozen=True)
class Rejected:
    """A fetched commit that is not applied; ``reason`` names it."""

    commit: str
    ref: str
    kind: RejectionKind
    reason: str

    @property
    def revision(self) -> str:
        return f"git:{self.commit}"


@dataclass(frozen=True)
class FetchReport:
    """One fetch, for metrics and logs."""

    result: FetchResult
    duration: float
    commit: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class GitStatus:
    """What ``/status`` shows of the git source; ``error`` is redacted."""

    remote: str
    ref: str
    path: str
    fetched: str | None = None  # the commit the last fetch found the ref at
    # The commit last checked out and made current (before the first fetch after a
    # start, the one current on disk).
    applied: str | None = None
    last_fetch_at: float | None = None  # wall-clock time
    last_success_at: float | None = None
    error: str | None = None
    failures: int = 0
    next_fetch_in: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "ref": self.ref,
            "path": self.path,
            "fetched": self.fetched,
            "applied": self.applied,
            "last_fetch_at": self.last_fetch_at,
            "last_success_at": self.last_success_at,
            "error": self.error,
            "failures": self.failures,
            "next_fetch_in": self.next_fetch_in,
        }


def _ignore(_: object) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """What the poller tells the daemon. ``checked_out`` runs on the poller's thread
    with the new checkout current; old checkouts are removed after it returns."""

    checked_out: Callable[[Checkout], None]
    rejected: Callable[[Rejected], None] = _ignore
    fetched: Callable[[FetchReport], None] = _ignore


@dataclass(frozen=True)
class Clocks:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    draw: Callable[[], float] = random.random


@dataclass
class _State:
    fetched: str | None = None
    applied: str | None = None
    served: bool = False  # a checkout was handed over since the start
    rejected: str | None = None  # the commit last rejected, not judged again
    last_fetch_at: float | None = None
    last_success_at: float | None = None
    error: str | None = None
    prepared: bool = False
    # The current checkout, if this poller wrote it: the next one links from it.
    tree: Tree | None = None


class GitPoller:
    """Follows ``source`` in ``root`` (a directory of the state dir, made here)."""

    def __init__(
        self,
        source: GitSource,
        root: Path,
        hooks: Hooks,
        *,
        files: ConfigFiles | None = None,
        timing: PollTiming | None = None,
        clocks: Clocks | None = None,
    ) -> None:
        self.source = source
        self.root = root
        self._hooks = hooks
        self._files = files or ConfigFiles()
        self._clocks = clocks or Clocks()
        self.mirror = Mirror(root, source)
        self.checkouts = Checkouts(root)
        self.verifier = Verifier(source.verify, root / GNUPG) if source.verify else None
        self._schedule = PollSchedule(timing or PollTiming(interval=source.interval))
        self._cond = threading.Condition()
        self._polling = threading.Lock()
        self._swapping = threading.RLock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        current = self.checkouts.current()
        self._state = _State(applied=current.commit if current else None)

    @property
    def link(self) -> Path:
        """The path the daemon reads the config from: a link to the current checkout."""
        return self.checkouts.link

    def holding(self) -> AbstractContextManager[object]:
        """Held while the config is read through the link: no swap happens inside,
        so a read sees one checkout whole, and the revision names it. The poller
        holds it while it writes a checkout (whose links move the ctime of the
        current one's files), across the swap and the ``checked_out`` call after
        it (which may read the config on the poller's thread: it is re-entrant)."""
        return self._swapping

    def revision(self, config_dir: Path, digest: str) -> str:
        """The revision of a set read through the link: ``git:<commit>`` of the
        checkout current (read under :meth:`holding`); the content hash when there
        is none yet. The signature of ``git.Revisions.revision``."""
        current = self.checkouts.current()
        return f"git:{current.commit}" if current else "sha256:" + digest[:16]

    def changes(self, old: str, new: str) -> frozenset[str] | None:
        """The paths, relative to ``--git-path``, whose files differ between the
        checkouts of commits ``old`` and ``new`` written by this poller (the same
        flags chose their files); None when the mirror cannot tell."""
        try:
            return self.mirror.changed(old, new, self.source.path)
        except GitError as exc:
            log.info("git: what changed from %s to %s is unknown: %s", old, new, exc)
            return None

    def prepare(self) -> None:
        """Make the directories, import the keyring, and remove what a crash left;
        GitSourceError when a file the flags name cannot be used."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.verifier is not None:
            self.verifier.prepare()
        self.checkouts.prune()
        self._state.prepared = True

    # the thread

    def start(self) -> None:
        """Fetch at once, then on the schedule, on a thread of its own."""
        if not self._state.prepared:
            self.prepare()
        self._thread = threading.Thread(target=self._run, name="syncd-git-poller", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Fetch as soon as the one running (if any) ends; triggers collapse into one."""
        with self._cond:
            self._schedule.trigger()
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop; a fetch under way is cut. False when the thread is still running
        after ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while self._next():
            try:
                self.poll()
            except Exception:
                log.exception("git poller: fetch failed")

    def _next(self) -> bool:
        """Wait until a fetch is due; False once stopping."""
        with self._cond:
            while not self._stopping:
                wait = self._schedule.wait(self._clocks.monotonic())
                if wait <= 0:
                    self._schedule.begin()
                    return True
                self._cond.wait(wait)
        return False

    # one fetch

    def poll(self) -> FetchReport:
        """One fetch and what follows from it, on the caller's thread."""
        with self._polling:
            if not self._state.prepared:
                self.prepare()
            started = self._clocks.monotonic()
            self._state.last_fetch_at = self._clocks.wall()
            try:
                result, commit = self._attempt()
                error = None
            except (GitError, OSError) as exc:
                result, commit, error = "failed", None, self._redacted(exc)
            report = FetchReport(result, self._clocks.monotonic() - started, commit, error)
            self._settle(report)
        self._hooks.fetched(report)
        return report

    def _attempt(self) -> tuple[FetchResult, str]:
        base = self._state.applied
        fetched = self.mirror.fetch(base, cancelled=lambda: self._stopping)
        commit = fetched.commit
        self._state.fetched = commit
        if self._state.served and commit == base:
            self._state.error = None
            return "unchanged", commit
        if commit == self._state.rejected:
            return "unchanged", commit
        try:
            self._apply(fetched, base)
        except _Rejection as rejection:
            self._reject(rejection.rejected)
            return "rejected", commit
        return "changed", commit

    def _apply(self, fetched: Fetched, base: str | None) -> None:
        commit = fetched.commit
        self._judge_signature(commit)
        ancestry = self._ancestry(fetched, base)
        self._judge_rewrite(commit, base, ancestry)
        current = self._linkable()
        chosen = self._choose(commit, current)
        # Held from the write on: its links move the ctime of the current
        # checkout's files, which a reconcile must not see before the swap.
        with self._swapping:
            tree, written = self._write(commit, chosen, current)
            replaced = self.checkouts.current()
            self.checkouts.make_current(tree.directory)
            self._state.applied, self._state.served = commit, True
            self._state.rejected, self._state.error = None, None
            self._state.tree = tree
            log.info(
                "git: %s is at %s; checked out (%d file(s) written, %d linked)",
                self.source.ref_name,
                commit,
                written.written,
                written.linked,
            )
            self._hand_over(
                Checkout(
                    commit,
                    self.source.ref_name,
                    tree.directory,
                    self.link,
                    ancestry,
                    written=written.written,
                    linked=written.linked,
                )
            )
        # The checkout just replaced stays until the next swap: a reader that
        # resolved the link a moment ago may still be reading it.
        self.checkouts.prune(keep=[replaced.directory] if replaced else [])
        self._upkeep(commit)

    def _upkeep(self, commit: str) -> None:
        """After the hand-over, off the way to the reconcile: the mirror keeps the
        applied commit (until then, and after a crash, the fetched ref holds it),
        and is packed when due. Neither undoes the checkout when it fails."""
        try:
            self.mirror.keep(commit)
            self.mirror.tidy()
        except GitError as exc:
            log.warning("git: could not keep or pack the mirror: %s", self._redacted(exc))

    def _hand_over(self, checkout: Checkout) -> None:
        """Tell the daemon; what goes wrong in it is logged, and the checkout stays."""
        if self._stopping:
            return
        try:
            self._hooks.checked_out(checkout)
        except Exception:
            log.exception("git: handing over the checkout of %s failed", checkout.commit)

    def _judge_signature(self, commit: str) -> None:
        if self.verifier is None:
            return
        repo = self._verify_repo(self.verifier)
        reason = self.verifier.check(repo, commit, LOCAL_TIMEOUT)
        if reason is not None:
            raise _Rejection(Rejected(commit, self.source.ref_name, "unverified", reason))

    def _verify_repo(self, verifier: Verifier) -> Repo:
        repo = self.mirror.repo
        return replace(
            repo,
            options=repo.options + verifier.options,
            env={**repo.env, **verifier.environment},
        )

    def _ancestry(self, fetched: Fetched, base: str | None) -> Ancestry:
        if base is None or not self.mirror.has(base):
            return "first"
        if fetched.commit == base:
            return "descends"
        if fetched.history_cut:
            return "unknown"
        return "descends" if self.mirror.descends(base, fetched.commit) else "rewrite"

    def _judge_rewrite(self, commit: str, base: str | None, ancestry: Ancestry) -> None:
        if ancestry in ("first", "descends"):
            return
        ref = self.source.ref_name
        what = (
            f"{ref} moved from {base} to {commit}, which does not descend from it (a force push)"
            if ancestry == "rewrite"
            else f"{ref} moved from {base} to {commit}, and whether it descends from it is "
            "unknown: the history between them is over --git-max-size"
        )
        if self.source.forbid_rewrites:
            reason = f"commit {commit} rejected: {what}; --git-forbid-rewrites is set"
            raise _Rejection(Rejected(commit, ref, "rewrite", reason))
        log.warning("git: %s; following it", what)

    def _linkable(self) -> Tree | None:
        """The checkout the next one links from: the current one, if this poller
        wrote it."""
        tree, on_disk = self._state.tree, self.checkouts.current()
        if tree is None or on_disk is None or on_disk.directory != tree.directory:
            return None
        return tree

    def _choose(self, commit: str, current: Tree | None) -> list[gitcheckout.Entry]:
        """The files of the commit to check out; a rejection when its tree cannot be."""
        known = current.blobs if current is not None else ()
        try:
            entries = gitcheckout.list_tree(
                self.mirror.repo, commit, self.source.path, LOCAL_TIMEOUT
            )
            return gitcheckout.select(entries, self._files, self.source.max_size, known)
        except TreeRefused as exc:
            raise self._refused(commit, exc) from None

    def _write(
        self, commit: str, chosen: list[gitcheckout.Entry], current: Tree | None
    ) -> tuple[Tree, Written]:
        directory = self.checkouts.fresh(commit)
        try:
            written = gitcheckout.write_tree(
                self.mirror.repo, chosen, directory, LOCAL_TIMEOUT, current
            )
        except TreeRefused as exc:
            self._remove(directory)
            raise self._refused(commit, exc) from None
        except BaseException:
            self._remove(directory)
            raise
        return Tree.of(directory, chosen), written

    def _refused(self, commit: str, exc: TreeRefused) -> _Rejection:
        reason = f"commit {commit} rejected: {exc}"
        return _Rejection(Rejected(commit, self.source.ref_name, "tree", reason))

    def _remove(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)

    def _reject(self, rejected: Rejected) -> None:
        self._state.rejected = rejected.commit
        self._state.error = rejected.reason
        log.error("git: %s", rejected.reason)
        self._hooks.rejected(rejected)

    def _settle(self, report: FetchReport) -> None:
        now = self._clocks.monotonic()
        ok = report.result != "failed"
        with self._cond:
            failures = self._schedule.failures
            delay = self._schedule.done(now, ok, self._clocks.draw())
        if ok:
            self._state.last_success_at = self._state.last_fetch_at
            if failures:
                log.info("git: fetching %s works again", self.source.remote.display)
            return
        self._state.error = report.error
        if self._stopping:
            return  # cut by the stop: nothing to say
        log.warning(
            "git: fetch %d of %s failed (next try in %.0f s): %s",
            failures + 1,
            self.source.remote.display,
            delay,
            report.error,
        )

    def _redacted(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return redact(text, self._secrets())

    def _secrets(self) -> list[str]:
        if self.source.token_file is None:
            return []
        try:
            return [gitcredential.read_token(self.source.token_file)]
        except (OSError, ValueError):
            return []

    def status(self) -> GitStatus:
        state = self._state
        with self._cond:
            wait = self._schedule.wait(self._clocks.monotonic())
            failures = self._schedule.failures
        return GitStatus(
            remote=self.source.remote.display,
            ref=self.source.ref_name,
            path=self.source.path,
            fetched=state.fetched,
            applied=state.applied,
            last_fetch_at=state.last_fetch_at,
            last_success_at=state.last_success_at,
            error=state.error,
            failures=failures,
            next_fetch_in=None if self._thread is None else wait,
        )


class _Rejection(Exception):
    def __init__(self, rejected: Rejected) -> None:
        super().__init__(rejected.reason)
        self.rejected = rejected


def fetch_once(
    source: GitSource, root: Path, files: ConfigFiles | None = None
) -> Checkout | Rejected:
    """One fetch and checkout into ``root`` (a fresh directory), for the commands
    that read a ref once (``plan``, ``validate``); GitError when the fetch fails."""
    told: list[Checkout | Rejected] = []
    poller = GitPoller(source, root, Hooks(told.append, told.append), files=files)
    report = poller.poll()
    if report.result == "failed" or not told:
        raise GitError(report.error or "git fetch failed")
    return told[-1]
