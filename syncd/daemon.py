"""``syncd run``: wiring of loader, registry, watcher, outbox, delivery and
the HTTP server; signals and the systemd protocol.

After the first one, every reconcile runs on the watcher's one worker thread,
whatever asked for it (a file change, the periodic resync, SIGHUP or
``POST /-/reload``), so a burst of requests collapses into one; a lock keeps
the first from overlapping with one the watcher starts.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from syncd import lastgood, logs, semantics, systemd
from syncd.configset import ConfigLoader, ConfigSet, PathNotFoundError
from syncd.diagnostics import Diagnostic
from syncd.dispatch import DispatchConfig, Dispatcher
from syncd.hipchat import HipChatClient
from syncd.ingest import Ingest, validate_events
from syncd.metrics import ConfigGauges, Metrics
from syncd.model import integration_to_data
from syncd.outbox import Outbox
from syncd.plan import Plan
from syncd.registry import Outcome, Registry, RoomHealth, Snapshot
from syncd.server import HTTPServer, Request, Response, Routes
from syncd.watcher import ConfigWatcher

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
    workers: int = 4
    max_age: float = 24 * 3600.0
    drain_timeout: float = 10.0
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    housekeeping_interval: float = 1.0
    retry_base: float = 1.0
    retry_cap: float = 300.0


class ConfigurationError(Exception):
    """The daemon cannot start as configured; the message says why."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_revision(config_dir: Path, digest: str) -> str:
    """The git commit of a checkout, as Flux records it; else the content hash."""
    try:
        result = subprocess.run(
            ["git", "-C", str(config_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        result = None
    if result is not None and result.returncode == 0 and result.stdout.strip():
        return "git:" + result.stdout.strip()
    return "sha256:" + digest[:16]


def outcome_to_data(outcome: Outcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    data: dict[str, object] = {
        "ok": outcome.ok,
        "revision": outcome.revision,
        "at": outcome.at,
        "diagnostics": [str(d) for d in outcome.diagnostics],
    }
    if outcome.plan is not None:
        data["plan"] = {
            "create": [i.uid for i in outcome.plan.create],
            "update": [u.uid for u in outcome.plan.update],
            "delete": [i.uid for i in outcome.plan.delete],
            "keep": len(outcome.plan.keep),
        }
    return data


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        registry: Registry | None = None,
        notify: systemd.Notifier | None = None,
    ) -> None:
        if not _is_loopback(config.host) and not config.ingest_token:
            raise ConfigurationError(
                f"refusing to listen on {config.host} without an ingest token "
                "(set SYNCD_INGEST_TOKEN, or listen on 127.0.0.1)"
            )
        self.config = config
        self.registry = registry or Registry()
        self.notify = notify or systemd.Notifier({})
        self._notify_ready = False
        self._lkg_pending: tuple[ConfigSet, str] | None = None
        self._loading = threading.Lock()  # the loader's cache is not thread-safe
        self._reconciling = threading.Lock()
        try:
            config.state_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = Outbox(config.state_dir / "outbox.db", synchronous=config.synchronous)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"cannot open the state dir {config.state_dir}: {exc}"
            ) from None
        self.metrics = Metrics()
        self.client = HipChatClient(backoff_base=config.retry_base, backoff_cap=config.retry_cap)
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
        self.registry.add_listener(self._on_applied)
        self._housekeeping = threading.Thread(
            target=self._housekeep, name="syncd-housekeeping", daemon=True
        )
        self.loader = ConfigLoader(
            semantics.Options(allow_plaintext_tokens=config.allow_plaintext_tokens)
        )
        self._done = threading.Condition()
        self._started = 0
        self._finished = 0
        self._stop = threading.Event()
        self.watcher = ConfigWatcher(
            config.config_dir,
            self._on_change,
            quiet=config.quiet,
            max_wait=config.max_wait,
            resync_interval=config.resync_interval,
            fingerprint=self._fingerprint,
            logger=log,
        )
        self.server = HTTPServer(config.host, config.port, self.routes())

    # reconcile

    def _load(self, *, trust_stat: bool) -> ConfigSet:
        try:
            with self._loading:
                return self.loader.load([self.config.config_dir], trust_stat=trust_stat)
        except PathNotFoundError as exc:
            missing = Diagnostic(str(self.config.config_dir), 1, 1, "", str(exc))
            return ConfigSet((), (missing,), ())

    def _on_applied(self, plan: Plan, snapshot: Snapshot) -> None:
        for integration in plan.delete:
            cancelled = self.outbox.cancel_integration(integration.uid, "integration removed")
            if cancelled:
                log.info(
                    "%s removed: %d pending notification(s) cancelled", integration.uid, cancelled
                )

    def _housekeep(self) -> None:
        last_expiry = 0.0
        failing = False
        while not self._stop.wait(self.config.housekeeping_interval):
            try:
                pending, self._lkg_pending = self._lkg_pending, None
                if pending is not None:
                    self._save_last_known_good(*pending)
                self.ingest.flush_due()
                if time.monotonic() - last_expiry > 60:
                    last_expiry = time.monotonic()
                    expired = self.outbox.expire(self.config.max_age)
                    if expired:
                        log.warning("%d notification(s) expired undelivered", expired)
                    self.outbox.prune_finished(7 * 24 * 3600)
                failing = False
            except sqlite3.Error as exc:
                if not failing:
                    log.error("housekeeping cannot write the outbox: %s", exc)
                failing = True
            except Exception:
                log.exception("housekeeping failed")

    def _fingerprint(self) -> str:
        return self._load(trust_stat=False).digest

    @property
    def last_known_good_dir(self) -> Path:
        return self.config.state_dir / "last-known-good"

    def _save_last_known_good(self, config: ConfigSet, revision: str) -> None:
        try:
            lastgood.save(self.last_known_good_dir, config, revision, self.config.config_dir)
        except (OSError, ValueError) as exc:
            log.warning("could not save the last-known-good config: %s", exc)

    def _start_on_last_known_good(self) -> Outcome | None:
        saved = lastgood.load(self.last_known_good_dir, self.loader.options)
        if saved is None:
            return None
        outcome = self.registry.apply(*saved)
        if not outcome.ok:
            return None
        log.warning(
            "the config in %s is invalid; started on the last-known-good set %s saved in %s",
            self.config.config_dir,
            saved[1],
            self.last_known_good_dir,
        )
        return outcome

    def reconcile(self) -> Outcome:
        with self._reconciling:
            return self._reconcile()

    def _reconcile(self) -> Outcome:
        config = self._load(trust_stat=True)
        revision = config_revision(self.config.config_dir, config.digest)
        outcome = self.registry.apply(config, revision)
        if outcome.ok and (outcome.changed or not self.last_known_good_dir.exists()):
            # Saved by the housekeeping thread, off the reconcile's path.
            self._lkg_pending = (config, revision)
        if outcome.ok and outcome.changed:
            assert outcome.plan is not None
            log.info("applied %s: %s", revision, outcome.plan.summary())
        elif outcome.ok:
            log.debug("reconciled %s: no changes", revision)
        else:
            log.error(
                "config %s rejected, keeping %s: %d problem(s)",
                revision,
                self.registry.snapshot.revision or "nothing",
                len(outcome.diagnostics),
            )
            for diagnostic in outcome.diagnostics:
                log.error("%s", diagnostic)
        return outcome

    def _on_change(self) -> None:
        with self._done:
            self._started += 1
            notify_ready, self._notify_ready = self._notify_ready, False
        try:
            self.reconcile()
        finally:
            with self._done:
                self._finished += 1
                self._done.notify_all()
            if notify_ready:
                self.notify.ready(self.status_line())
            else:
                self.notify.status(self.status_line())

    def request_reload(self, *, notify_ready: bool = False) -> None:
        """Ask for a reconcile; with ``notify_ready``, tell systemd READY=1 after it."""
        with self._done:
            self._notify_ready = self._notify_ready or notify_ready
        self.watcher.trigger()

    def reload(self, timeout: float | None = None) -> Outcome | None:
        """Force a reconcile and wait for one that started after this call."""
        with self._done:
            target = self._started + 1
        self.watcher.trigger()
        with self._done:
            self._done.wait_for(
                lambda: self._finished >= target, timeout or self.config.reload_timeout
            )
            return self.registry.last_attempt if self._finished >= target else None

    # HTTP

    def routes(self) -> Routes:
        return {
            ("GET", "/healthz"): lambda _: Response.text(200, "ok\n"),
            ("GET", "/readyz"): self._ready,
            ("POST", "/-/reload"): self._reload,
            ("GET", "/v1/registry"): self._registry,
            ("GET", "/status"): self._status,
            ("POST", "/v1/events"): self._events,
            ("GET", "/metrics"): self._metrics,
        }

    def _metrics(self, _: Request) -> Response:
        reg = self.registry
        gauges = ConfigGauges(
            last_reload_successful=reg.last_attempt is not None and reg.last_attempt.ok,
            last_success_time=reg.last_success.at if reg.last_success else None,
            config_hash=reg.snapshot.config_hash,
        )
        text = self.metrics.render(gauges, sum(self.outbox.depth().values()))
        return Response.text(200, text, "text/plain; version=0.0.4")

    def _events(self, request: Request) -> Response:
        token = self.config.ingest_token
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Response.error(401, "a valid bearer token is required")
        if self._stop.is_set():
            return Response.error(503, "shutting down")
        try:
            payload = request.json()
            # Lone surrogates (JSON "\ud800") are valid JSON but not text.
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return Response.error(400, f"body is not usable JSON: {message}")
        events, problems = validate_events(payload)
        if problems:
            return Response.error(
                400,
                "invalid event",
                problems=[{"path": p.path, "message": p.message} for p in problems],
            )
        try:
            accepted = self.ingest.submit(events)
            self.metrics.received(len(events))
        except sqlite3.Error as exc:
            log.error("could not store %d event(s): %s", len(events), exc)
            return Response.error(503, "could not store the events; retry later")
        return Response.json(
            202,
            {
                "accepted": len(accepted.ids),
                "ids": list(accepted.ids),
                "notifications": accepted.notifications,
            },
        )

    def _ready(self, _: Request) -> Response:
        if self.registry.last_success is None:
            return Response.text(503, "not ready: no config applied yet\n")
        return Response.text(200, "ready\n")

    def _reload(self, _: Request) -> Response:
        outcome = self.reload()
        if outcome is None:
            return Response.error(504, "reload did not finish in time")
        if not outcome.ok:
            return Response.error(
                500,
                "config rejected; last-known-good stays active",
                diagnostics=[str(d) for d in outcome.diagnostics],
            )
        return Response.json(200, outcome_to_data(outcome))

    def _registry(self, _: Request) -> Response:
        snap = self.registry.snapshot
        return Response.json(
            200,
            {
                "revision": snap.revision,
                "config_hash": snap.config_hash,
                "integrations": [
                    integration_to_data(n.integration) for n in snap.notifiers.values()
                ],
            },
        )

    def _status(self, _: Request) -> Response:
        reg = self.registry
        snap = reg.snapshot
        depth = self.outbox.depth()
        return Response.json(
            200,
            {
                "applied_revision": snap.revision,
                "attempted_revision": reg.last_attempt.revision if reg.last_attempt else None,
                "config_hash": snap.config_hash,
                "reconcile_attempts": reg.attempts,
                "last_reconcile": outcome_to_data(reg.last_attempt),
                "last_failure": outcome_to_data(reg.last_failure),
                "outbox_depth": sum(depth.values()),
                "integrations": {
                    uid: {
                        "state": n.integration.state,
                        "project": n.integration.project,
                        "name": n.integration.name,
                        "generation": n.generation,
                        "queue_depth": depth.get(uid, 0),
                        "rooms": {
                            room.id: asdict(n.state.rooms.get(room.id, RoomHealth()))
                            for room in n.integration.rooms
                        },
                    }
                    for uid, n in snap.notifiers.items()
                },
            },
        )

    # lifecycle

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
            outcome = self._start_on_last_known_good() or outcome
        if not outcome.ok:
            return outcome
        self.dispatcher.start()
        self._housekeeping.start()
        self.server.start()
        host, port = self.server.address
        log.info("listening on http://%s:%d, watching %s", host, port, self.config.config_dir)
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
        self.server.stop()
        self.watcher.stop()
        if not self.dispatcher.stop(self.config.drain_timeout):
            log.warning(
                "sends still in flight after %.0f s; they will be retried",
                self.config.drain_timeout,
            )
        self.client.close()
        self.outbox.close()


def install_signals(daemon: Daemon, notify: systemd.Notifier) -> None:
    def on_hup(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading")
        notify.reloading("reloading configuration")
        daemon.request_reload(notify_ready=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        daemon.stop()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def run(config: DaemonConfig, log_format: logs.LogFormat = "auto") -> int:
    notify = systemd.Notifier()
    try:
        daemon = Daemon(config, notify=notify)
    except (ConfigurationError, OSError) as exc:
        logs.setup(list, log_format)
        log.error("%s", exc)
        return 1
    logs.setup(lambda: daemon.registry.snapshot.secrets(), log_format)
    install_signals(daemon, notify)
    first = daemon.start()
    if not first.ok:
        daemon.shutdown()
        log.error("no valid config to start on; fix the errors above")
        return 1
    notify.ready(daemon.status_line())
    try:
        interval = notify.watchdog_interval
        while not daemon.wait(interval):
            if daemon.healthy():
                notify.watchdog()
    finally:
        notify.stopping("draining: finishing sends in flight")
        daemon.shutdown()
    return 0
