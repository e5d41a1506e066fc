"""``syncd run``: wiring, start and stop, signals, and the systemd protocol.

The config flow (watcher -> ``reconcile`` -> registry) and the event flow
(``api`` -> ``ingest`` -> outbox -> ``dispatch`` -> HipChat) meet only in the
registry's snapshot; ``housekeeping`` owns the upkeep between them. This
module builds them in the right order, starts them so that nothing is served
before a set is active, and stops them so that nothing accepted is lost.

A config can be slow to read and check, so nothing waits on the first
reconcile but readiness: the probes answer before it starts, the
last-known-good set (if any) is served while it runs on the watcher's
thread, and a stop abandons it after the drain time at most.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import urlsplit

from syncd.config import semantics
from syncd.config.configset import ConfigSet
from syncd.config.diagnostics import Diagnostic, printable
from syncd.config.filecache import ConfigLoader
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.config.secrets import Redactor
from syncd.delivery.dispatch import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_WORKERS,
    IDLE_WAIT,
    SHARED_IDLE_WAIT,
    DispatchConfig,
    Dispatcher,
)
from syncd.delivery.housekeeping import PRUNE_GRACE, Housekeeping
from syncd.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Failure, UsageError
from syncd.events.ingest import MAX_NOTIFICATIONS, Ingest
from syncd.hipchat.client import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_SEND_TIMEOUT,
    USER_AGENT,
    HipChatClient,
)
from syncd.reconcile.gitcheckout import Checkouts, RepoNames
from syncd.reconcile.gitpoller import Checkout, GitPoller, Hooks, Rejected
from syncd.reconcile.gitsource import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    VERIFY_KINDS,
    GitSource,
    GitSourceError,
    Verify,
    normalize_path,
    parse_size,
)
from syncd.reconcile.pathfilter import relevant_to
from syncd.reconcile.reconciler import DEFAULT_BUDGET, DIFFERS, Budget, Reconciler, Reloads
from syncd.reconcile.watcher import ConfigWatcher
from syncd.registry import Outcome, Registry
from syncd.service import collector, descriptors, logs, stores, systemd
from syncd.service.api import MAX_EVENT_BYTES, SKEW_WARNING, Api, GitHook, SharedStore
from syncd.service.http import Handler, HTTPServer, Request, Response, Routes
from syncd.service.metrics import Metrics
from syncd.service.recorder import DEFAULT_DAYS, Recorder
from syncd.service.statedir import StateDir, create_private
from syncd.store.contract import DEFAULT_LEASE, Store, StoreError, StoreUnusable
from syncd.store.sqlite import Outbox

log = logging.getLogger("syncd")

# The release a daemon tells the others it runs (the package's, as HipChat is told).
VERSION = USER_AGENT.removeprefix("syncd/")

# How long a stop waits for a reconcile still reading the config to end by itself.
RECONCILE_GRACE = 1.0


# The directory of the state dir a git source's mirror and checkouts live in.
GIT_ROOT = "git"


@dataclass(frozen=True)
class GitSettings:
    """``--git`` and its companion flags as given; :meth:`source` checks them. The
    command line builds it (``syncd run``, ``validate --git``, ``plan --git``) and
    reads ``webhook_secret_file`` into ``webhook_secret``."""

    url: str
    ref: str | None = None
    path: str = ""
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    token_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts: Path | None = None
    ca_file: Path | None = None
    max_size: str | None = None
    verify: tuple[str, Path] | None = None
    forbid_rewrites: bool = False
    allow_http: bool = False
    # ``--git-webhook-secret-file``, and the secret read from it; None: no webhook route.
    webhook_secret_file: Path | None = None
    webhook_secret: bytes | None = field(default=None, repr=False)

    def source(self) -> GitSource:
        """The source these flags name, every file they name checked readable;
        GitSourceError naming the flag to change."""
        source = GitSource(
            self.url,
            ref=self.ref,
            path=self.path,
            interval=self.interval,
            timeout=self.timeout,
            token_file=self.token_file,
            ssh_key_file=self.ssh_key_file,
            known_hosts=self.known_hosts,
            max_size=DEFAULT_MAX_SIZE if self.max_size is None else parse_size(self.max_size),
            verify=_verify(self.verify),
            forbid_rewrites=self.forbid_rewrites,
            allow_http=self.allow_http,
            ca_file=self.ca_file,
        )
        for flag, path in self.files():
            check_readable(flag, path)
        return source

    def files(self) -> list[tuple[str, Path]]:
        """Each file the flags name, with the flag that names it."""
        named = [
            ("--git-token-file", self.token_file),
            ("--git-ssh-key-file", self.ssh_key_file),
            ("--git-known-hosts", self.known_hosts),
            ("--git-ca-file", self.ca_file),
            ("--git-webhook-secret-file", self.webhook_secret_file),
            *([(f"--git-verify {self.verify[0]}", self.verify[1])] if self.verify else []),
        ]
        return [(flag, path) for flag, path in named if path is not None]


def check_readable(flag: str, path: Path) -> None:
    """GitSourceError naming ``flag`` and ``path`` unless ``path`` is a regular
    file this process can open: git and ssh would find out only at the first
    fetch, and keep failing at each. Nothing of the file is read."""
    shown = f"{flag} {printable(str(path))}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise GitSourceError(f"{shown}: no such file") from None
    except OSError as exc:
        raise GitSourceError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if stat.S_ISDIR(mode):
        raise GitSourceError(f"{shown}: a directory, not a file")
    if not stat.S_ISREG(mode):
        raise GitSourceError(f"{shown}: not a regular file")


def _verify(given: tuple[str, Path] | None) -> Verify | None:
    if given is None:
        return None
    kind, file = given
    for known in VERIFY_KINDS:
        if kind == known:
            return Verify(known, file)
    raise GitSourceError(
        f"--git-verify {kind!r}: give allowed-signers FILE (SSH signatures) or gpg KEYRING"
    )


def git_root(state_dir: Path) -> Path:
    """Where a git source's mirror and checkouts live; absolute, as git runs in
    directories of its own."""
    return state_dir.absolute() / GIT_ROOT


def git_config_dir(state_dir: Path) -> Path:
    """Where a git source's current checkout is read from: a link in the state dir."""
    return Checkouts(git_root(state_dir)).link


def lease_for(given: float | None, send_timeout: float) -> float:
    """The lease given, or the default stretched to twice a longer send: an operator
    who allows a send ten minutes need not also say that a claim outlasts it."""
    return given if given is not None else max(DEFAULT_LEASE, 2 * send_timeout)


@dataclass(frozen=True)
class DaemonConfig:
    config_dir: Path
    state_dir: Path = Path("/var/lib/syncd")
    host: str = "127.0.0.1"
    port: int = 8514
    ingest_token: str | None = field(default=None, repr=False)
    allow_plaintext_tokens: bool = False
    quiet: float = 0.15
    max_wait: float = 1.0
    resync_interval: float = 60.0
    # How long POST /-/reload waits for its reconcile; None: the reconcile timeout.
    reload_timeout: float | None = None
    reconcile_timeout: float = DEFAULT_BUDGET
    workers: int = DEFAULT_WORKERS
    # The most sends one HipChat server may have in flight (``--max-in-flight``).
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_age: float = 24 * 3600.0
    drain_timeout: float = 10.0
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    housekeeping_interval: float = 1.0
    retry_base: float = DEFAULT_BACKOFF_BASE
    retry_cap: float = DEFAULT_BACKOFF_CAP
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    # How long a claim on a room's next notification holds (``--lease``): what a
    # room waits at most when the daemon that claimed it dies.
    lease: float = DEFAULT_LEASE
    reach: Reach = DEFAULT_REACH
    max_prune: int | None = None
    exclude: tuple[str, ...] = ()
    git_dir: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_notifications_per_request: int = MAX_NOTIFICATIONS
    max_event_bytes: int = MAX_EVENT_BYTES
    prune_grace: float = PRUNE_GRACE
    # A shared PostgreSQL store (``--store``); None: the SQLite outbox in the state dir.
    store_url: str | None = field(default=None, repr=False)
    store_password: str | None = field(default=None, repr=False)
    # A git remote to follow (``--git``); the config dir is then its checkout's link.
    git: GitSettings | None = None
    # With a shared store: how long the daemons' revisions may disagree before
    # /status warns (``--skew-warning``).
    skew_warning: float = SKEW_WARNING
    # Where accepted events are recorded for ``syncd plan --replay``; None: not recorded.
    record_events: Path | None = None
    record_days: int = DEFAULT_DAYS
    # The clock events are routed by, and so the one mutes end on (the wall's).
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What the log must never show of the daemon's own flags: the store's
        password, given by file or in the URL, and the git webhook's secret."""
        given = _url_password(self.store_url)
        hook = self.git.webhook_secret.decode() if self.git and self.git.webhook_secret else None
        return tuple(s for s in (self.store_password, given, hook) if s)

    @property
    def reload_wait(self) -> float:
        return self.reconcile_timeout if self.reload_timeout is None else self.reload_timeout


def _repo_names(config: DaemonConfig) -> RepoNames | None:
    """A git source's files as the repository names them, in what the daemon
    shows (``/status``, the log): its checkout's path means nothing to a reader."""
    if config.git is None:
        return None
    return RepoNames(git_config_dir(config.state_dir), normalize_path(config.git.path))


class ConfigurationError(Failure):
    """The daemon refuses to start as configured; the message says which flag to change."""


def _url_password(url: str | None) -> str | None:
    """The password a ``postgresql://user:password@host`` URL carries, if any."""
    if url is None or "://" not in url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_outbox(config: DaemonConfig, ran_before: bool) -> tuple[Store, str | None]:
    """The outbox, and what to report when a state dir that ran before lost it.

    With ``--store`` the queue is the shared database's; the state dir keeps the
    lock and the last-known-good set, and nothing of the queue, so it loses none.
    """
    if config.store_url is not None:
        store = stores.open_postgres(config.store_url, password=config.store_password)
        log.info("the outbox is the shared store %s", stores.shown(config.store_url))
        return store, None
    path = config.state_dir / "outbox.db"
    fresh = not path.exists() or path.stat().st_size == 0
    lost = None
    if fresh and ran_before:
        lost = (
            f"{path} is {'missing' if not path.exists() else 'empty'} but this state dir "
            "has run before: notifications queued then are lost"
        )
        log.error("%s", lost)
    try:
        create_private(path)
        return Outbox(path, synchronous=config.synchronous), lost
    except StoreUnusable as exc:
        raise Failure(
            f"{path} is damaged ({exc}). Move it aside to start with an empty outbox "
            "(what it queued is lost), or restore it from a backup"
        ) from None
    except (OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot use --state-dir {config.state_dir}: {reason}") from None


def _dispatch_config(config: DaemonConfig, *, shared: bool) -> DispatchConfig:
    """The workers' settings; on a shared store an idle daemon looks at the queue
    every second, as what the other daemons queue wakes none of its workers."""
    return DispatchConfig(
        workers=config.workers,
        max_in_flight=config.max_in_flight,
        lease=config.lease,
        idle_wait=SHARED_IDLE_WAIT if shared else IDLE_WAIT,
    )


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        registry: Registry | None = None,
        notify: systemd.ServiceManager | None = None,
    ) -> None:
        if not _is_loopback(config.host) and not config.ingest_token:
            raise ConfigurationError(
                f"refusing to listen on {config.host} without an ingest token "
                "(set SYNCD_INGEST_TOKEN or --ingest-token-file, or --listen on 127.0.0.1)"
            )
        self.config = config
        # With a git source, its files as the repository names them (a registry
        # given names them as its maker chose).
        self.repo_names = _repo_names(config)
        relabel = self.repo_names.relabel if self.repo_names is not None else tuple
        self.registry = registry or Registry(max_prune=config.max_prune, relabel=relabel)
        self.notify = notify or systemd.ServiceManager({})
        self.state_dir = StateDir(config.state_dir)
        ran_before = self.state_dir.ran_before()
        self.state_dir.acquire()
        try:
            self._build(config, ran_before)
        except BaseException:
            self.state_dir.release()
            raise

    def _build(self, config: DaemonConfig, ran_before: bool) -> None:
        self.outbox, outbox_lost = _open_outbox(config, ran_before)
        shared = self.outbox if isinstance(self.outbox, SharedStore) else None
        elsewhere = shared.known_elsewhere if shared is not None else _nowhere
        self._stop = threading.Event()
        # Set once the first reconcile ended, or the daemon stopped: what start() waits for.
        self._settled = threading.Event()
        self._first: Outcome | None = None  # the set served after the first reconcile
        self._first_ended = False
        self._saved: Outcome | None = None  # the last-known-good set served at start
        self._lifecycle = threading.Lock()  # threads start, or the daemon stops: not both
        self._delivering = False
        self._upkeep = False
        self._wake: Callable[[], None] = lambda: None
        # With a git source: the checkout last handed over, and the one the loader
        # last read if the poller handed it over (else None), both under its hold;
        # and whether the next reconcile must walk the config dir (see _ask_walk).
        self._handed: Checkout | None = None
        self._loaded: Checkout | None = None
        self._asks = threading.Lock()
        self._walk_asked = False
        self.nothing_to_serve = False
        self.metrics = Metrics(git=config.git is not None)
        self.client = HipChatClient(
            send_timeout=config.send_timeout,
            backoff_base=config.retry_base,
            backoff_cap=config.retry_cap,
            allow_link_local=config.reach.allow_link_local,
        )
        self.dispatcher = Dispatcher(
            self.outbox,
            self.registry,
            self.client,
            _dispatch_config(config, shared=shared is not None),
            on_result=lambda item, result, at: self.metrics.delivery(
                item.uid, result, at - item.created_at
            ),
            elsewhere=elsewhere,
        )
        self.recorder = (
            Recorder(config.record_events, days=config.record_days)
            if config.record_events is not None
            else None
        )
        self.ingest = Ingest(
            self.outbox,
            self.registry,
            clock=config.clock,
            on_enqueued=self.dispatcher.wake,
            max_notifications=config.max_notifications_per_request,
            on_muted=self.metrics.muted,
        )
        options = semantics.Options(
            allow_plaintext_tokens=config.allow_plaintext_tokens,
            reach=config.reach,
            refuse_plaintext_tokens=True,
            exclude=config.exclude,
        )
        self.poller = self._git_poller(config, options) if config.git is not None else None
        if self.poller is not None:
            config = self.config = replace(config, config_dir=self.poller.link)
        poller = self.poller
        self.reconciler = Reconciler(
            config.config_dir,
            config.state_dir,
            ConfigLoader(options),
            self.registry,
            budget=Budget(config.reconcile_timeout),
            git_dir=config.git_dir,
            revision=poller.revision if poller is not None else None,
            names=self.repo_names,
        )
        self.housekeeping = Housekeeping(
            self.outbox,
            self.ingest,
            max_age=config.max_age,
            interval=config.housekeeping_interval,
            chores=[self.reconciler.save_last_known_good],
            prune_grace=config.prune_grace,
            wake=self.dispatcher.wake,
            elsewhere=elsewhere,
        )
        if shared is not None:
            # Before readers see the set: another daemon reads this one's row
            # before it claims or cancels what only this set has.
            self.registry.add_listener(
                lambda _plan, snap: shared.announce(VERSION, snap.revision, snap.notifiers)
            )
        self.registry.add_listener(self.housekeeping.on_applied)
        self.registry.add_listener(self.dispatcher.health.on_applied)
        self.watcher = ConfigWatcher(
            config.config_dir,
            self._on_change,
            quiet=config.quiet,
            max_wait=config.max_wait,
            resync_interval=config.resync_interval,
            fingerprint=self._fingerprint,
            logger=log,
            path_filter=relevant_to(options.files),
            git_dir=config.git_dir,
        )
        self.reloads = Reloads(
            self.reconciler, self.watcher.trigger, self._reconciled, again=self._read_again
        )
        api = Api(
            self.registry,
            self.outbox,
            self.ingest,
            self.metrics,
            self.dispatcher.health,
            reload=self.reload,
            stopping=self._stop.is_set,
            ingest_token=config.ingest_token,
            outbox_lost=outbox_lost,
            wake=self.dispatcher.wake,
            max_event_bytes=config.max_event_bytes,
            git=self._git_status if self.poller is not None else None,
            git_hook=self._git_hook(config.git),
            shared=shared,
            skew_warning=config.skew_warning,
            clock=config.clock,
        )
        try:
            self.server = HTTPServer(
                config.host,
                config.port,
                self._routes(api.routes()),
                allowed_hosts=config.allowed_hosts,
                # Each delivery worker may hold a socket to HipChat besides the rest.
                reserved_descriptors=config.workers + 64,
            )
        except BaseException:
            self.outbox.close()
            raise

    def _git_poller(self, config: DaemonConfig, options: semantics.Options) -> GitPoller:
        """The poller of ``--git``, its directories made; GitSourceError (a usage
        error) when a flag names what cannot be used."""
        assert config.git is not None
        hooks = Hooks(
            checked_out=self._checked_out,
            rejected=self._rejected,
            fetched=self.metrics.git_fetched,
        )
        root = git_root(config.state_dir)
        poller = GitPoller(config.git.source(), root, hooks, files=options.files)
        try:
            poller.prepare()
        except OSError as exc:
            raise UsageError(f"cannot use --state-dir {config.state_dir}: {exc}") from None
        return poller

    def _git_status(self) -> dict[str, Any]:
        return self.poller.status().to_data() if self.poller is not None else {}

    def _git_hook(self, settings: GitSettings | None) -> GitHook | None:
        """``POST /v1/hooks/git``, only with a webhook secret."""
        if self.poller is None or settings is None or settings.webhook_secret is None:
            return None
        return GitHook(settings.webhook_secret, self.poller.source.watches, self.poller.trigger)

    def _on_change(self, changed: Iterable[str] | None) -> str | None:
        """The watcher's callback; with a git source, the config is read while no
        checkout swap can happen, so a set is one commit's whole."""
        if self.poller is None:
            return self.reloads.on_change(changed)
        with self.poller.holding():
            handed = self._handed_current(self.poller)
            changed, moved = self._since_loaded(self.poller, changed, handed)
            try:
                return self.reloads.on_change(changed, moved=moved)
            finally:
                self._loaded = handed

    def _handed_current(self, poller: GitPoller) -> Checkout | None:
        """The checkout the link names, if the poller handed it over."""
        current, handed = poller.checkouts.current(), self._handed
        if current is None or handed is None or current.directory != handed.directory:
            return None
        return handed

    def _since_loaded(
        self, poller: GitPoller, changed: Iterable[str] | None, handed: Checkout | None
    ) -> tuple[Iterable[str] | None, bool]:
        """What to read: after a swap, the files that differ between the checkout
        the loader read and the one now current, when the poller wrote both
        (their other files are links); none when it read the current one already;
        else, or when a walk was asked for, what the watcher says, as for a
        config dir."""
        loaded = self._loaded
        with self._asks:
            asked, self._walk_asked = self._walk_asked, False
        if asked or handed is None or loaded is None:
            return changed, False
        if loaded.directory == handed.directory:
            # Read already; a change of anything is the link's own event after the
            # swap (what else needs a walk asks for one).
            return (() if changed is None else changed), False
        differ = poller.changes(loaded.commit, handed.commit)
        if differ is None:
            return None, False
        return differ, True

    def _checked_out(self, checkout: Checkout) -> None:
        """A new commit is current: reconcile it now, not after file events."""
        self._handed = checkout
        self.reloads.request()

    def _rejected(self, rejected: Rejected) -> None:
        """A commit not applied is a failed attempt like an invalid config: the set
        in use stays, and /status and the metrics name the commit and why."""
        where = f"{self.poller.source.remote.display} {rejected.ref}" if self.poller else ""
        refused = ConfigSet((), (Diagnostic(where, 1, 1, "", rejected.reason),))
        if rejected.kind == "unverified":
            self.metrics.unverified()
        self.registry.apply(refused, rejected.revision, source=where)

    def _routes(self, routes: Routes) -> Routes:
        """The API's routes, with what only the daemon knows: whether the first
        reconcile still runs, and why a reload is late."""
        ready, events, reload = (routes[r] for r in (_READYZ, _EVENTS, _RELOAD))

        def readyz(request: Request) -> Response:
            return ready(request) if self.serving else _not_ready(self._first_ended)

        def ingest(request: Request) -> Response:
            if not self.serving:
                return _not_ready(self._first_ended)
            answer = events(request)
            if answer.status == 202 and self.recorder is not None:
                self.recorder.record(request.body)
            return answer

        def reload_now(request: Request) -> Response:
            answer = reload(request)
            if answer.status != 504:
                return answer
            return Response.error(504, self._late_reload())

        handlers: dict[tuple[str, str], Handler] = {
            _READYZ: readyz,
            _EVENTS: ingest,
            _RELOAD: reload_now,
        }
        return {**routes, **handlers}

    def _late_reload(self) -> str:
        waited = f"reload did not finish within {self.config.reload_wait:g} s"
        since = self.reconciler.running_since
        if since is None:
            return f"{waited}; it still runs, and /status will show its result"
        running = self.reconciler.budget.clock() - since
        return (
            f"{waited}: a reconcile has been running for {running:.0f} s (one may take "
            f"up to --reconcile-timeout {self.config.reconcile_timeout:g} s); the reload "
            "runs after it, and /status will show its result"
        )

    @property
    def serving(self) -> bool:
        """True once a set is served: ingest and /readyz are open."""
        return bool(self.registry.snapshot.revision)

    def _reconciled(self, outcome: Outcome | None, notify_ready: bool) -> None:
        """After each reconcile, on the watcher's thread; None: abandoned at a stop."""
        if outcome is None or self._stop.is_set():
            return
        if not self._first_ended:
            self._first_ended = True
            self._after_first(outcome)
        elif notify_ready:
            self.notify.ready(self.status_line())
        else:
            self.notify.status(self.status_line())

    def _after_first(self, outcome: Outcome) -> None:
        """Serve what the first reconcile left: its set, the last-known-good one, or
        nothing, and then the daemon stops (``nothing_to_serve``)."""
        served = outcome if outcome.ok else self._saved
        if served is None:
            self._first = outcome
            self.nothing_to_serve = True
            self.stop()
            return
        if not outcome.ok:
            log.warning(
                "the config in %s is invalid; started on the last-known-good set %s saved in %s",
                self.config.config_dir,
                served.revision,
                self.reconciler.last_known_good_dir,
            )
        with self._lifecycle:
            if self._stop.is_set():
                return
            # Now that the config dir's answer is in: the set served is the one to keep.
            try:
                self.housekeeping.cancel_removed(self.registry.snapshot)
            except StoreError as exc:
                log.error("could not cancel what removed integrations left queued: %s", exc)
            self._start_delivery()
            if not self._upkeep:
                self._upkeep = True
                self.housekeeping.start()
        if self._saved is None:
            self.notify.ready(self.status_line())
        log.info("listening on %s, watching %s", self.server.url, self.config.config_dir)
        self._first = served
        self._settled.set()

    def _start_delivery(self) -> None:
        if not self._delivering:
            self._delivering = True
            self.dispatcher.start()

    def _serve_last_known_good(self) -> None:
        """Serve the saved set while the first reconcile runs. Delivery starts on it
        only if it names every integration the outbox holds notifications for: a
        worker would cancel those of one it does not know."""
        saved = self.reconciler.serve_last_known_good()
        if saved is None:
            return
        self._saved = saved
        log.info(
            "serving the last-known-good set %s saved in %s while the first reconcile of %s runs",
            saved.revision,
            self.reconciler.last_known_good_dir,
            self.config.config_dir,
        )
        if self._names_every_queued_integration():
            with self._lifecycle:
                if not self._stop.is_set():
                    self._start_delivery()
        else:
            log.info(
                "delivery waits for the first reconcile: the outbox holds notifications "
                "for integrations the last-known-good set lacks"
            )
        self.notify.ready(self.status_line())

    def _names_every_queued_integration(self) -> bool:
        try:
            queued = self.outbox.undelivered_uids()
        except StoreError:
            return False
        return queued <= set(self.registry.snapshot.notifiers)

    def reconcile(self) -> Outcome | None:
        return self.reconciler.reconcile()

    def request_reload(self, *, notify_ready: bool = False) -> None:
        """Ask for a reconcile; with ``notify_ready``, tell systemd READY=1 after it."""
        self._ask_walk()
        self.reloads.request(notify_ready=notify_ready)

    def reload(self, timeout: float | None = None) -> Outcome | None:
        """Force a reconcile and wait for one that started after this call."""
        self._ask_walk()
        return self.reloads.wait(timeout or self.config.reload_wait)

    def _ask_walk(self) -> None:
        """The next reconcile walks the config dir, reads every file whose stat
        changed and resolves every token, even with a git source: a reload asked
        for (SIGHUP, POST /-/reload), a resync that found a difference, files that
        changed while read."""
        with self._asks:
            self._walk_asked = True

    def _fingerprint(self) -> str:
        """The watcher's resync: the reconciler's, and a difference asks for a walk."""
        value = self.reconciler.fingerprint()
        if value == DIFFERS:
            self._ask_walk()
        return value

    def _read_again(self) -> None:
        """Files changed while read: a walk after the quiet period."""
        self._ask_walk()
        self.watcher.changed()

    def begin(self) -> None:
        """Recover the outbox, answer the probes, serve the last-known-good set if
        there is one, and start the first reconcile on the watcher's thread;
        returns without waiting for it.

        Once it ends, its set is served (or, if it was rejected, the
        last-known-good one stays); with neither, ``nothing_to_serve`` is set and
        the daemon stops.
        """
        # A store gone between its opening and this first write (a database restarting)
        # is told as at the opening: for the supervisor to try again.
        url = self.config.store_url
        try:
            with stores.told(url) if url is not None else contextlib.nullcontext():
                recovered = self.outbox.recover()
        except StoreUnusable:
            raise
        except StoreError as exc:
            raise UsageError(f"cannot use --state-dir {self.config.state_dir}: {exc}") from None
        if recovered:
            log.info("%d notification(s) in flight at the last stop will be sent again", recovered)
        self.server.start()
        log.info("answering /healthz on %s; ready once a config is served", self.server.url)
        self._serve_last_known_good()
        if self.poller is None:
            self.watcher.start(first_call=True)
            return
        # The checkout a restart finds is reconciled at once; with none yet, the
        # first fetch's checkout is.
        self.watcher.start(first_call=self.poller.link.is_dir())
        self.poller.start()

    def start(self) -> Outcome:
        """:meth:`begin`, then wait for the first reconcile: the set then served (the
        config dir's, or the last-known-good one), or the failed attempt when there
        is nothing to serve and the caller shuts down."""
        self.begin()
        self._settled.wait()
        if self._first is None:
            return Outcome(False, "", time.time())  # stopped before the first reconcile ended
        return self._first

    def on_stop(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when the daemon stops by itself, to rouse a thread waiting on it."""
        self._wake = wake

    def stop(self) -> None:
        self._stop.set()
        self._settled.set()
        self._wake()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the daemon is asked to stop; False when ``timeout`` passed first."""
        return self._stop.wait(timeout)

    def healthy(self) -> bool:
        """What the systemd watchdog vouches for: the worker threads are alive."""
        polling = self.poller is None or self.poller.alive
        return polling and self.watcher.alive and (self.dispatcher.alive or not self._delivering)

    def status_line(self) -> str:
        snap = self.registry.snapshot
        attempt = self.registry.last_attempt
        state = "ok" if attempt is None or attempt.ok else "last reload FAILED"
        try:
            depth = str(sum(self.outbox.depth().values()))
        except StoreError:
            depth = "unreadable"
        return (
            f"{len(snap.notifiers)} integrations, revision {snap.revision[:20] or '-'}, "
            f"outbox {depth}, config {state}"
        )

    def shutdown(self) -> None:
        """Stop intake first, then let sends in flight finish; the rest stays queued.

        A set being applied is waited for (up to the drain time); a reconcile
        still reading is abandoned after ``RECONCILE_GRACE`` at most: it applies
        nothing once this began, so waiting longer would only delay the stop.
        """
        with self._lifecycle:
            self.stop()
        drain = self.config.drain_timeout
        self.reconciler.close(drain)
        self.housekeeping.stop(drain)
        self.server.stop()
        if self.poller is not None and not self.poller.stop(min(drain, RECONCILE_GRACE)):
            log.warning("stopping with a git fetch under way: abandoned, it applies nothing")
        if not self.watcher.stop(min(drain, RECONCILE_GRACE)):
            log.warning("stopping with a reconcile under way: abandoned, it applies nothing")
        if not self.dispatcher.stop(drain):
            log.warning("sends still in flight after %.0f s; they will be retried", drain)
        self.client.close()
        self.outbox.close()
        if self.recorder is not None:
            self.recorder.close()
        self.state_dir.release()


def _nowhere(_fresh: bool = False) -> frozenset[str]:
    """No other daemon: a store of its own."""
    return frozenset()


_READYZ = ("GET", "/readyz")
_EVENTS = ("POST", "/v1/events")
_RELOAD = ("POST", "/-/reload")


def _not_ready(first_ended: bool) -> Response:
    reason = "no valid config to start on" if first_ended else "first reconcile running"
    answer = Response.text(503, f"not ready: {reason}\n")
    return replace(answer, headers={"Retry-After": "1"})


def install_signals(daemon: Daemon, notify: systemd.ServiceManager) -> Callable[[], int]:
    """Handlers for SIGHUP (reload), SIGTERM and SIGINT (stop); returns the exit
    status the stop earned: 0 for SIGTERM, a service manager's way to stop, and
    130 for Ctrl-C, as a shell reports an interrupted command."""
    stopped_by: list[int] = []

    def on_hup(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading")
        notify.reloading("reloading configuration")
        daemon.request_reload(notify_ready=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stopped_by.append(signum)
        daemon.stop()

    def exit_status() -> int:
        interrupted = stopped_by[:1] == [signal.SIGINT]
        return EXIT_INTERRUPTED if interrupted else EXIT_OK

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return exit_status


def run(config: DaemonConfig, log_format: logs.LogFormat = "auto") -> int:
    """Run until SIGTERM or SIGINT; a configuration the daemon cannot start on raises
    UsageError, and exits 1 when the first reconcile leaves nothing to serve."""
    # Everything the daemon writes (outbox, last-known-good copy) is private.
    os.umask(0o077)
    notify = systemd.ServiceManager()
    own = (Redactor.of(config.secrets),)
    logs.setup(lambda: own, log_format)
    descriptors.raise_open_files()  # before the HTTP front sizes its connection cap
    collector.pace_collector()
    daemon = Daemon(config, notify=notify)
    logs.setup(lambda: (*own, daemon.registry.snapshot.redactor), log_format)
    exit_status = install_signals(daemon, notify)
    try:
        daemon.begin()
        _serve(daemon, notify)
    finally:
        if not daemon.nothing_to_serve:
            notify.stopping("draining: finishing sends in flight")
        daemon.shutdown()
    if daemon.nothing_to_serve:
        log.error("no valid config to start on; fix the errors above")
        return EXIT_FAILED
    return exit_status()


def _serve(daemon: Daemon, notify: systemd.ServiceManager) -> None:
    """Sleep until a signal or the watchdog interval, in a way any signal ends.

    A signal may be caught by any thread; the main thread, which runs the
    Python handler, would sleep on in a lock wait. Waiting in select on the
    signal wakeup fd wakes it whichever thread the signal reached (poll, not
    select: with the raised descriptor limit the socket may be past 1,023).
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    poller = select.poll()
    poller.register(reader, select.POLLIN)
    interval = notify.watchdog_interval
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    daemon.on_stop(lambda: _poke(writer))
    try:
        while not daemon.wait(0):
            poller.poll(None if interval is None else interval * 1000)
            with contextlib.suppress(BlockingIOError):
                reader.recv(4096)
            if daemon.healthy():
                notify.watchdog()
    finally:
        daemon.on_stop(lambda: None)
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _poke(writer: socket.socket) -> None:
    with contextlib.suppress(OSError):
        writer.send(b"\0")
