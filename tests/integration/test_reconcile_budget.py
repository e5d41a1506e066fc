"""A reconcile's budget (``--reconcile-timeout``) and a reconcile abandoned at a stop,
on a real loader and registry over real files; time is a clock the test moves."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from syncd.config.configset import ConfigSet
from syncd.config.filecache import ConfigLoader
from syncd.config.plan import Plan
from syncd.reconcile import lastgood
from syncd.reconcile.reconciler import OVER_BUDGET, Budget, Reconciler
from syncd.registry import Registry, Snapshot
from tests.support.configs import minimal, write_files
from tests.support.waiting import wait_for


class Clock:
    """A monotonic clock that moves on by ``step`` each time it is read: the loader
    reads it before each file, so a load costs ``step`` per file."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Recording(ConfigLoader):
    """Records the deadline each load is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[Any] = []

    def load(self, paths: Iterable[Path], **kwargs: Any) -> ConfigSet:
        self.handed.append(kwargs.get("deadline"))
        return super().load(paths, **kwargs)


class HeldLoader(ConfigLoader):
    """A load that waits for ``release`` once ``hold`` is set: a reconcile under way."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def load(self, paths: Iterable[Path], **kwargs: Any) -> ConfigSet:
        if self.hold:
            self.entered.set()
            self.release.wait(20)
        return super().load(paths, **kwargs)


class Published:
    """A registry listener: every plan published."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []

    def __call__(self, plan: Plan, snapshot: Snapshot) -> None:
        self.plans.append(plan)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "budget-test-token")


def reconciler(tmp_path: Path, loader: ConfigLoader, clock: Clock | None = None) -> Reconciler:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    budget = Budget(30.0, clock) if clock is not None else Budget(30.0)
    return Reconciler(config, tmp_path / "state", loader, Registry(), budget=budget)


def test_a_set_that_takes_past_its_budget_is_rejected_and_the_set_in_use_stays(
    tmp_path: Path,
) -> None:
    clock = Clock()
    rec = reconciler(tmp_path, ConfigLoader(), clock)
    first = rec.reconcile()
    assert first is not None and first.ok
    served = rec.registry.snapshot
    write_files(rec.config_dir, *((f"b{n:02}.yaml", minimal(f"b{n:02}")) for n in range(40)))
    clock.step = 1.0  # 41 files at a second each: past the 30 s budget

    late = rec.reconcile()

    assert late is not None and not late.ok
    (cut,) = late.diagnostics
    assert str(cut).startswith(f"{rec.config_dir}:1:1: error: the config set took more than ")
    assert "(--reconcile-timeout) and was rejected" in cut.message
    assert rec.registry.snapshot is served
    assert rec.registry.last_failure is late
    # While the set stays cut, a resync compares what the files hold without
    # checking them again: no budget spent, no reconcile after reconcile.
    assert rec.digest is not None and rec.digest.startswith(OVER_BUDGET)
    read_at = clock.now
    assert rec.fingerprint() == rec.digest
    assert clock.now == read_at  # nothing loaded
    write_files(rec.config_dir, ("b00.yaml", minimal("b00") + "    state: stopped\n"))
    assert rec.fingerprint() != rec.digest  # a change inotify missed is still seen
    clock.step = 0.5  # 41 files in 20.5 s
    again = rec.reconcile()
    assert again is not None and again.ok
    assert len(rec.registry.snapshot.notifiers) == 41


def test_the_loader_is_handed_the_deadline_of_the_budget(tmp_path: Path) -> None:
    """The budget started when the reconcile did: a load that first waited for the
    loader still says the budget it was given (not what was left of it)."""
    clock = Clock()
    loader = Recording()
    rec = reconciler(tmp_path, loader, clock)
    rec.reconcile()
    clock.now = 2000.0
    rec.reconcile()
    assert [(d.at, d.budget, d.clock) for d in loader.handed] == [
        (1030.0, 30.0, clock),
        (2030.0, 30.0, clock),
    ]


def test_the_last_known_good_set_is_not_served_when_its_copy_reads_past_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    rec = reconciler(tmp_path, ConfigLoader(), clock)
    outcome = rec.reconcile()
    assert outcome is not None and outcome.ok
    rec.save_last_known_good()
    clock.step = 100.0
    caplog.set_level(logging.WARNING, logger="syncd")
    assert rec.serve_last_known_good() is None
    assert "cannot be served" in caplog.text and "--reconcile-timeout" in caplog.text
    clock.step = 0.0
    saved = lastgood.load(rec.last_known_good_dir, rec.loader.options, Budget(30, clock).start())
    assert saved is not None and saved[0].valid


def test_a_reconcile_under_way_when_the_daemon_stops_applies_nothing(tmp_path: Path) -> None:
    loader = HeldLoader()
    rec = reconciler(tmp_path, loader)
    first = rec.reconcile()
    assert first is not None and first.ok
    published = Published()
    rec.registry.add_listener(published)
    attempts, served = rec.registry.attempts, rec.registry.snapshot
    write_files(rec.config_dir, ("b.yaml", minimal("b")))
    loader.hold = True
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(rec.reconcile()))
    worker.start()
    wait_for(loader.entered.is_set, what="the reconcile to be loading")

    assert rec.close(timeout=5)  # nothing was being applied: no wait

    loader.release.set()
    worker.join(10)
    assert results == [None]
    assert published.plans == []
    assert (rec.registry.attempts, rec.registry.snapshot) == (attempts, served)
    assert rec.reconcile() is None
    assert rec.serve_last_known_good() is None


def test_close_waits_for_a_set_being_applied_at_most_its_timeout(tmp_path: Path) -> None:
    rec = reconciler(tmp_path, ConfigLoader())
    applying, done = threading.Event(), threading.Event()

    def slow_listener(plan: Plan, snapshot: Snapshot) -> None:
        applying.set()
        done.wait(20)

    rec.registry.add_listener(slow_listener)
    worker = threading.Thread(target=rec.reconcile)
    worker.start()
    wait_for(applying.is_set, what="the set to be applied")
    assert not rec.close(timeout=0.05)
    done.set()
    worker.join(10)
    assert sorted(rec.registry.snapshot.notifiers) == ["a"]  # begun before the stop
