"""The periodic resync on real files, with the real watcher, reconciler and loader:
it compares stat fingerprints with what the loader read, reads only the files
that differ, and never holds back an edit while it walks."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from syncd.config.filecache import Baseline, ConfigLoader
from syncd.reconcile.reconciler import Reconciler, Reloads
from syncd.reconcile.watcher import Changed, ConfigWatcher
from syncd.registry import Registry
from tests.support.configs import minimal
from tests.support.filetimes import later_wall, next_tick
from tests.support.waiting import wait_for

FILES = 200
Wiring = Literal["resync", "fingerprint"]


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "resync-test-token")


class Running:
    """A reconciler fed by a started watcher, wired as the daemon wires them; the
    watcher's resync is counted. ``wiring``: the watcher asks ``resync`` for the
    files that differ, or compares ``fingerprint`` with the last digest."""

    def __init__(
        self, config: Path, state: Path, loader: ConfigLoader, interval: float, wiring: Wiring
    ) -> None:
        self.rec = Reconciler(config, state, loader, Registry())
        self.loader = loader
        self.resyncs = 0
        self.calls: list[Changed] = []  # what each call of the watcher named
        self._lock = threading.Lock()
        self.reloads = Reloads(
            self.rec, lambda: self.watcher.trigger(), lambda _o, _n: None, again=self.changed
        )
        compare: dict[str, Any] = (
            {"resync": self._counted(self.rec.resync)}
            if wiring == "resync"
            else {"fingerprint": self._counted(self.rec.fingerprint)}
        )
        self.watcher = ConfigWatcher(
            config,
            self._on_change,
            quiet=0.05,
            max_wait=0.25,
            resync_interval=interval,
            logger=logging.getLogger("tests.resync"),
            **compare,
        )
        self.watcher.start(first_call=True)

    def changed(self) -> None:
        self.watcher.changed()

    def _on_change(self, changed: Changed) -> str | None:
        self.calls.append(changed)
        return self.reloads.on_change(changed)

    def _counted(self, compare: Callable[[], Any]) -> Callable[[], Any]:
        def counted() -> Any:
            found = compare()
            with self._lock:
                self.resyncs += 1
            return found

        return counted

    def resyncs_after(self, count: int) -> Callable[[], bool]:
        with self._lock:
            target = self.resyncs + count
        return lambda: self.resyncs >= target

    def name_of(self, uid: str) -> object:
        notifier = self.rec.registry.snapshot.notifiers.get(uid)
        return None if notifier is None else notifier.integration.name

    def stop(self) -> None:
        self.watcher.stop(timeout=10)
        self.rec.close(timeout=10)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "team").mkdir(parents=True)
    for n in range(FILES):
        where = root / "team" if n % 2 else root
        (where / f"i{n:03}.yaml").write_text(minimal(f"i{n:03}"))
    return root


@pytest.fixture
def run(tmp_path: Path, config: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        loader: ConfigLoader | None = None, interval: float = 0.05, wiring: Wiring = "resync"
    ) -> Running:
        running = Running(
            config, tmp_path / "state", loader or ConfigLoader(wall=later_wall), interval, wiring
        )
        started.append(running)
        wait_for(
            lambda: len(running.rec.registry.snapshot.notifiers) == FILES,
            what="the first reconcile",
        )
        return running

    yield start
    for running in started:
        running.stop()


def renamed(uid: str, name: str) -> str:
    """The file of ``uid``, same size, another name."""
    text = minimal(uid)
    return text.replace(f"name: {uid}", f"name: {name}")


def behind_the_watch(tmp_path: Path, path: Path) -> Path:
    """A second name for ``path`` outside the watched tree: what is written through it
    sends the config dir's watch no event, like an event the kernel dropped."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    other = elsewhere / path.name
    os.link(path, other)
    return other


@pytest.mark.parametrize("wiring", ["resync", "fingerprint"])
def test_a_resync_with_nothing_changed_reads_no_file(
    run: Callable[..., Running], wiring: Wiring
) -> None:
    running = run(wiring=wiring)
    reads, attempts = running.loader.reads, running.rec.registry.attempts
    assert reads == FILES
    wait_for(running.resyncs_after(5), what="five resyncs")
    assert running.loader.reads == reads
    assert running.rec.registry.attempts == attempts  # and nothing reconciled


@pytest.mark.parametrize("wiring", ["resync", "fingerprint"])
def test_a_file_changed_without_an_event_is_read_by_the_resync(
    tmp_path: Path, config: Path, run: Callable[..., Running], wiring: Wiring
) -> None:
    path = config / "team" / "i007.yaml"
    other = behind_the_watch(tmp_path, path)
    running = run(wiring=wiring)
    reads = running.loader.reads
    other.write_text(renamed("i007", "i007x"))  # same size, a later mtime
    wait_for(lambda: running.name_of("i007") == "i007x", what="the resync to read it")
    assert running.loader.reads == reads + 1  # that file alone


@pytest.mark.parametrize("wiring", ["resync", "fingerprint"])
def test_an_edit_that_restores_size_and_mtime_is_caught_through_the_ctime(
    tmp_path: Path, config: Path, run: Callable[..., Running], wiring: Wiring
) -> None:
    path = config / "i010.yaml"
    other = behind_the_watch(tmp_path, path)
    running = run(wiring=wiring)
    wait_for(running.resyncs_after(1), what="a resync before the edit")
    reads, before = running.loader.reads, path.stat()
    next_tick(path)
    other.write_text(renamed("i010", "i01x"))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    wait_for(lambda: running.name_of("i010") == "i01x", what="the resync to read it")
    assert running.loader.reads == reads + 1


class HeldScan(ConfigLoader):
    """A loader whose resync walk, once ``hold`` is set, stops at its first
    directory until ``release``."""

    def __init__(self) -> None:
        super().__init__(wall=later_wall)
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def differences(
        self, directory: Path, baseline: Baseline, tick: Callable[[], None] = lambda: None
    ) -> frozenset[str] | None:
        def held() -> None:
            if self.hold:
                self.entered.set()
                self.release.wait(30)
            tick()

        return super().differences(directory, baseline, held)


def test_an_edit_during_a_resync_is_applied_without_waiting_for_it(
    config: Path, run: Callable[..., Running]
) -> None:
    loader = HeldScan()
    running = run(loader, interval=0.05)
    loader.hold = True
    try:
        assert loader.entered.wait(10), "no resync began"
        resyncs = running.resyncs
        (config / "i020.yaml").write_text(renamed("i020", "during the resync"))
        wait_for(
            lambda: running.name_of("i020") == "during the resync",
            what="the edit, while the resync walks",
        )
        assert not loader.release.is_set() and running.resyncs == resyncs  # still walking
    finally:
        loader.hold = False
        loader.release.set()
    wait_for(running.resyncs_after(1), what="the held resync to end")


class HeldBoth(HeldScan):
    """A :class:`HeldScan` whose loads, once ``hold_load`` is set, wait inside for
    ``release_load``; and which records each tick of the walk that returned."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_load = False
        self.load_entered = threading.Event()
        self.release_load = threading.Event()
        self.ticked = threading.Event()

    def load(self, paths: Any, **options: Any) -> Any:
        if self.hold_load:
            self.load_entered.set()
            self.release_load.wait(30)
        return super().load(paths, **options)

    def differences(
        self, directory: Path, baseline: Baseline, tick: Callable[[], None] = lambda: None
    ) -> frozenset[str] | None:
        def recorded() -> None:
            tick()
            if self.release.is_set():
                self.ticked.set()

        return super().differences(directory, baseline, recorded)


def test_a_resync_walk_waits_while_an_edit_is_applied(
    config: Path, run: Callable[..., Running]
) -> None:
    """An edit's reconcile has the interpreter to itself: a walk under way goes on
    only once the edit is applied, so an edit at 50,000 files is not slowed by the
    walk's share of the CPU."""
    loader = HeldBoth()
    running = run(loader, interval=0.05)
    loader.hold = True
    try:
        assert loader.entered.wait(10), "no resync began"
        loader.hold_load = True
        (config / "i040.yaml").write_text(renamed("i040", "held"))
        assert loader.load_entered.wait(10), "the edit's reconcile did not begin"
        loader.release.set()  # the walk goes on to its next directory, and waits there
        assert not loader.ticked.wait(0.3), "the walk went on while the edit was applied"
    finally:
        loader.hold = loader.hold_load = False
        loader.release.set()
        loader.release_load.set()
    assert loader.ticked.wait(10), "the walk did not go on after the edit"
    wait_for(lambda: running.name_of("i040") == "held", what="the edit")


def test_a_resync_that_finds_a_change_hands_on_the_file_alone(
    tmp_path: Path, config: Path, run: Callable[..., Running]
) -> None:
    """The watcher is told the file, so the reconcile reads it and no walk runs."""
    other = behind_the_watch(tmp_path, config / "i030.yaml")
    running = run()
    other.write_text(renamed("i030", "i030x"))
    wait_for(lambda: running.name_of("i030") == "i030x", what="the resync to read it")
    assert running.calls[-1] == frozenset({"i030.yaml"})
