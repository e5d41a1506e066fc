"""The daemon in this process, its config slow to load on purpose: what is served
while the first reconcile runs, a reload that cannot wait for one, and a stop
during one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.config.configset import ConfigSet
from syncd.config.plan import Plan
from syncd.registry import Snapshot
from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files
from tests.support.lastgood import holds
from tests.support.waiting import wait_for

EVENT = {"project": "checkout", "fingerprint": "f1", "timestamp": "2026-11-26T12:00:00Z"}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "start-test-token")


class Held:
    """Makes the daemon's loads wait for ``release`` while ``on``: a reconcile that
    takes as long as the test wants."""

    def __init__(self, daemon: Daemon) -> None:
        self.on = True
        self.entered = threading.Event()
        self.release = threading.Event()
        self._load = daemon.reconciler.loader.load
        daemon.reconciler.loader.load = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> ConfigSet:
        if self.on:
            self.entered.set()
            self.release.wait(30)
        return self._load(*args, **kwargs)


def daemon_on(config: Path, state: Path, **options: Any) -> Daemon:
    return Daemon(DaemonConfig(config, state, port=0, **options))


@contextmanager
def shut_down_after(daemon: Daemon, held: Held | None = None) -> Iterator[Daemon]:
    try:
        yield daemon
    finally:
        if held is not None:
            held.release.set()
        daemon.shutdown()


def get(daemon: Daemon, path: str) -> requests.Response:
    return requests.get(daemon.server.url + path, timeout=10)


def post(daemon: Daemon, path: str, body: object) -> requests.Response:
    return requests.post(daemon.server.url + path, json=body, timeout=30)


def saved_last_known_good(config: Path, state: Path) -> None:
    """One run that applied ``config`` and saved it as the last-known-good set."""
    with shut_down_after(daemon_on(config, state)) as first:
        assert first.start().ok
        wait_for(lambda: holds(state / "last-known-good", "a.yaml"), what="the copy")


def test_probes_answer_while_the_first_reconcile_runs_and_nothing_is_served_before_it(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = daemon_on(config, tmp_path / "state")
    held = Held(daemon)
    with shut_down_after(daemon, held):
        daemon.begin()
        wait_for(held.entered.is_set, what="the first reconcile to be loading")
        assert get(daemon, "/healthz").status_code == 200
        ready = get(daemon, "/readyz")
        assert (ready.status_code, ready.text) == (503, "not ready: first reconcile running\n")
        refused = post(daemon, "/v1/events", [EVENT])
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1")
        assert not daemon.dispatcher.alive
        held.release.set()
        wait_for(lambda: get(daemon, "/readyz").status_code == 200, what="ready")
        assert post(daemon, "/v1/events", [EVENT]).status_code == 202
        # The set is served (and ingest open) a moment before delivery starts.
        wait_for(lambda: daemon.dispatcher.alive, what="delivery started")


def test_the_last_known_good_set_is_served_while_the_first_reconcile_runs(
    tmp_path: Path,
) -> None:
    config, state = write_files(tmp_path / "config", ("a.yaml", minimal("a"))), tmp_path / "state"
    saved_last_known_good(config, state)
    write_files(config, ("b.yaml", minimal("b")))  # changed while the daemon was down
    daemon = daemon_on(config, state)
    held = Held(daemon)
    with shut_down_after(daemon, held):
        daemon.begin()
        wait_for(held.entered.is_set, what="the first reconcile to be loading")
        assert get(daemon, "/readyz").status_code == 200
        assert list(daemon.registry.snapshot.notifiers) == ["a"]
        accepted = post(daemon, "/v1/events", [EVENT])
        assert accepted.status_code == 202 and accepted.json()["notifications"] == 1
        assert daemon.dispatcher.alive  # the saved set names every integration queued for
        held.release.set()
        wait_for(lambda: sorted(daemon.registry.snapshot.notifiers) == ["a", "b"])


def test_delivery_waits_when_the_outbox_holds_notifications_the_saved_set_does_not_know(
    tmp_path: Path,
) -> None:
    """A worker cancels what it claims for an integration the set served lacks: one
    created just before a crash, before its copy was saved, would lose its queue."""
    config, state = write_files(tmp_path / "config", ("a.yaml", minimal("a"))), tmp_path / "state"
    saved_last_known_good(config, state)
    write_files(config, ("b.yaml", minimal("b").replace("project: checkout", "project: shop")))
    with shut_down_after(daemon_on(config, state, max_age=3600)) as second:
        # No copy saved this time: b is applied and queued for, the copy names a only.
        second.housekeeping.chores = ()
        assert second.start().ok
        queued = post(second, "/v1/events", [{**EVENT, "project": "shop"}])
        assert queued.json()["notifications"] == 1
    daemon = daemon_on(config, state)
    held = Held(daemon)
    with shut_down_after(daemon, held):
        daemon.begin()
        wait_for(held.entered.is_set, what="the first reconcile to be loading")
        assert list(daemon.registry.snapshot.notifiers) == ["a"]
        assert not daemon.dispatcher.alive
        held.release.set()
        wait_for(lambda: daemon.dispatcher.alive, what="delivery after the first reconcile")
        assert daemon.outbox.undelivered_uids() == {"b"}  # still queued, not cancelled


def test_a_reload_during_a_long_reconcile_answers_504_saying_why(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = daemon_on(config, tmp_path / "state", reconcile_timeout=7, reload_timeout=0.2)
    with shut_down_after(daemon) as running:
        assert running.start().ok
        held = Held(running)
        running.request_reload()
        wait_for(held.entered.is_set, what="a reconcile to be loading")
        late = post(running, "/-/reload", {})
        assert late.status_code == 504
        message = late.json()["error"]["message"]
        assert message.startswith("reload did not finish within 0.2 s: a reconcile has been ")
        assert message.endswith(
            "(one may take up to --reconcile-timeout 7 s); the reload runs after it, "
            "and /status will show its result"
        )
        held.on = False
        held.release.set()
        assert post(running, "/-/reload", {}).status_code == 200


def test_shutdown_during_a_long_reconcile_takes_the_drain_time_at_most_and_applies_nothing(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = daemon_on(config, tmp_path / "state", drain_timeout=0.5)
    published: list[Plan] = []

    def listener(plan: Plan, snapshot: Snapshot) -> None:
        published.append(plan)

    assert daemon.start().ok
    daemon.registry.add_listener(listener)
    held = Held(daemon)
    try:
        write_files(config, ("b.yaml", minimal("b")))
        wait_for(held.entered.is_set, what="the reconcile of b to be loading")
        attempts, served = daemon.registry.attempts, daemon.registry.snapshot
        began = time.monotonic()
        daemon.shutdown()
        assert time.monotonic() - began < 3  # the reconcile is held for 30 s
    finally:
        held.release.set()
    wait_for(lambda: not daemon.watcher.alive, what="the abandoned reconcile to end")
    assert published == []
    assert (daemon.registry.attempts, daemon.registry.snapshot) == (attempts, served)


def test_an_outbox_gone_before_the_first_write_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared database restarting between the daemon's opening of it and its first
    write once ended the daemon with "internal error": it is an address that does
    not work now, for the supervisor to try again."""
    from syncd.errors import UsageError
    from syncd.store.contract import StoreUnavailable
    from syncd.store.sqlite import Outbox

    def gone(self: Outbox) -> int:
        raise StoreUnavailable("the server closed the connection")

    monkeypatch.setattr(Outbox, "recover", gone)
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    try:
        with pytest.raises(UsageError, match=r"cannot use --state-dir .*closed the connection"):
            daemon.begin()
    finally:
        daemon.outbox.close()
