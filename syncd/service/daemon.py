"""``syncd run``: wiring, start and stop, signals, and the systemd protocol.

The config flow (watcher -> ``reconcile`` -> registry) and the event flow
(``api`` -> ``ingest`` -> outbox -> ``dispatch`` -> HipChat) meet only in the
registry's snapshot; ``housekeeping`` owns the upkeep between them. This
module builds them in the right order, starts them so that nothing is served
before a set is active, and stops them so that nothing accepted is lost.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from syncd.config import semantics
from syncd.config.filecache import ConfigLoader
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.delivery.dispatch import DEFAULT_WORKERS, DispatchConfig, Dispatcher
from syncd.delivery.housekeeping import Housekeeping
from syncd.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Failure, UsageError
from syncd.events.ingest import Ingest
from syncd.hipchat.client import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_SEND_TIMEOUT,
    HipChatClient,
)
from syncd.reconcile.pathfilter import relevant_to
from syncd.reconcile.reconciler import Reconciler, Reloads
from syncd.reconcile.watcher import ConfigWatcher
from syncd.registry import Outcome, Registry
from syncd.service import logs, systemd
from syncd.service.api import Api
from syncd.service.http import HTTPServer
from syncd.service.metrics import Metrics
from syncd.service.statedir import StateDir, create_private
from syncd.store.contract import StoreError, StoreUnusable
from syncd.store.sqlite import Outbox

log = logging.getLogger("syncd")


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
    reload_timeout: float = 30.0
    workers: int = DEFAULT_WORKERS
    max_age: float = 24 * 3600.0
    drain_timeout: float = 10.0
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    housekeeping_interval: float = 1.0
    retry_base: float = DEFAULT_BACKOFF_BASE
    retry_cap: float = DEFAULT_BACKOFF_CAP
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    reach: Reach = DEFAULT_REACH
    max_prune: int | None = None
    exclude: tuple[str, ...] = ()


class ConfigurationError(Failure):
    """The daemon refuses to start as configured; the message says which flag to change."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_outbox(config: DaemonConfig, ran_before: bool) -> tuple[Outbox, str | None]:
    """The outbox, and what to report when a state dir that ran before lost it."""
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
        self.registry = registry or Registry(max_prune=config.max_prune)
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
        self._stop = threading.Event()
        self.metrics = Metrics()
        self.client = HipChatClient(
            send_timeout=config.send_timeout,
            backoff_base=config.retry_base,
            backoff_cap=config.retry_cap,
        )
        self.dispatcher = Dispatcher(
            self.outbox,
            self.registry,
            self.client,
            DispatchConfig(workers=config.workers),
            on_result=lambda item, result, at: self.metrics.delivery(
                item.uid, result, at - item.created_at
            ),
        )
        self.ingest = Ingest(self.outbox, self.registry, on_enqueued=self.dispatcher.wake)
        options = semantics.Options(
            allow_plaintext_tokens=config.allow_plaintext_tokens,
            reach=config.reach,
            refuse_plaintext_tokens=True,
            exclude=config.exclude,
        )
        loader = ConfigLoader(options)
        self.reconciler = Reconciler(config.config_dir, config.state_dir, loader, self.registry)
        self.housekeeping = Housekeeping(
            self.outbox,
            self.ingest,
            max_age=config.max_age,
            interval=config.housekeeping_interval,
            chores=[self.reconciler.save_last_known_good],
        )
        self.registry.add_listener(self.housekeeping.on_applied)
        self.registry.add_listener(self.dispatcher.health.on_applied)
        self.watcher = ConfigWatcher(
            config.config_dir,
            lambda changed: self.reloads.on_change(changed),
            quiet=config.quiet,
            max_wait=config.max_wait,
            resync_interval=config.resync_interval,
            fingerprint=self.reconciler.fingerprint,
            logger=log,
            path_filter=relevant_to(options.files),
        )
        self.reloads = Reloads(
            self.reconciler, self.watcher.trigger, self._reconciled, again=self.watcher.changed
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
        )
        try:
            self.server = HTTPServer(config.host, config.port, api.routes())
        except BaseException:
            self.outbox.close()
            raise

    def _reconciled(self, notify_ready: bool) -> None:
        if notify_ready:
            self.notify.ready(self.status_line())
        else:
            self.notify.status(self.status_line())

    def reconcile(self) -> Outcome:
        return self.reconciler.reconcile()

    def request_reload(self, *, notify_ready: bool = False) -> None:
        """Ask for a reconcile; with ``notify_ready``, tell systemd READY=1 after it."""
        self.reloads.request(notify_ready=notify_ready)

    def reload(self, timeout: float | None = None) -> Outcome | None:
        """Force a reconcile and wait for one that started after this call."""
        return self.reloads.wait(timeout or self.config.reload_timeout)

    def start(self) -> Outcome:
        """Recover the outbox and reconcile in the caller's thread, then watch and serve.

        With no valid config and no last-known-good there is nothing to serve:
        nothing is started but the watcher, and the caller shuts down.
        """
        recovered = self.outbox.recover()
        if recovered:
            log.info("%d notification(s) in flight at the last stop will be sent again", recovered)
        # Watching starts first, so a change made during the first reconcile is not missed.
        self.watcher.start()
        outcome = self.reconcile()
        if not outcome.ok:
            outcome = self.reconciler.start_on_last_known_good() or outcome
        if not outcome.ok:
            return outcome
        self.housekeeping.cancel_removed(self.registry.snapshot)
        self.dispatcher.start()
        self.housekeeping.start()
        self.server.start()
        log.info("listening on %s, watching %s", self.server.url, self.config.config_dir)
        return outcome

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the daemon is asked to stop; False when ``timeout`` passed first."""
        return self._stop.wait(timeout)

    def healthy(self) -> bool:
        """What the systemd watchdog vouches for: the worker threads are alive."""
        return self.watcher.alive and self.dispatcher.alive

    def status_line(self) -> str:
        snap = self.registry.snapshot
        attempt = self.registry.last_attempt
        state = "ok" if attempt is None or attempt.ok else "last reload FAILED"
        depth = sum(self.outbox.depth().values())
        return (
            f"{len(snap.notifiers)} integrations, revision {snap.revision[:20] or '-'}, "
            f"outbox {depth}, config {state}"
        )

    def shutdown(self) -> None:
        """Stop intake first, then let sends in flight finish; the rest stays queued."""
        self._stop.set()
        self.housekeeping.stop(self.config.drain_timeout)
        self.server.stop()
        self.watcher.stop()
        if not self.dispatcher.stop(self.config.drain_timeout):
            log.warning(
                "sends still in flight after %.0f s; they will be retried",
                self.config.drain_timeout,
            )
        self.client.close()
        self.outbox.close()
        self.state_dir.release()


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
    UsageError."""
    # Everything the daemon writes (outbox, last-known-good copy) is private.
    os.umask(0o077)
    notify = systemd.ServiceManager()
    logs.setup(list, log_format)
    daemon = Daemon(config, notify=notify)
    logs.setup(lambda: daemon.registry.snapshot.secrets(), log_format)
    exit_status = install_signals(daemon, notify)
    first = daemon.start()
    if not first.ok:
        daemon.shutdown()
        log.error("no valid config to start on; fix the errors above")
        return EXIT_FAILED
    notify.ready(daemon.status_line())
    try:
        _serve(daemon, notify)
    finally:
        notify.stopping("draining: finishing sends in flight")
        daemon.shutdown()
    return exit_status()


def _serve(daemon: Daemon, notify: systemd.ServiceManager) -> None:
    """Sleep until a signal or the watchdog interval, in a way any signal ends.

    A signal may be caught by any thread; the main thread, which runs the
    Python handler, would sleep on in a lock wait. Waiting in select on the
    signal wakeup fd wakes it whichever thread the signal reached.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        while not daemon.wait(0):
            select.select([reader], [], [], notify.watchdog_interval)
            with contextlib.suppress(BlockingIOError):
                reader.recv(4096)
            if daemon.healthy():
                notify.watchdog()
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
