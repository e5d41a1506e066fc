"""ConfigWatcher: the pure debounce and noise rules, then the real observer on real files."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver

from syncd.reconcile import watcher as watcher_module
from syncd.reconcile.git import index_lock as git_index_lock
from syncd.reconcile.watchdir import fingerprint_dir
from syncd.reconcile.watcher import Changed, ConfigWatcher
from tests.support.gitrepo import make_repo
from tests.support.waiting import wait_for

QUIET = 0.05
MAX_WAIT = 0.25


def stays(predicate: Callable[[], object], duration: float, what: str = "") -> None:
    """Check ``predicate`` every 10 ms for ``duration``; fail as soon as it is false."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"no longer true: {what or predicate}"
        time.sleep(0.01)


def absence_window(max_wait: float) -> float:
    """How long to watch for a call that must not come: any pending call would
    have fired within ``max_wait`` of its first event, so 3x leaves a wide margin."""
    return 3 * max_wait


def read_tree(root: Path) -> dict[str, str]:
    """What a reload would read: the YAML files outside hidden directories."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                path = Path(dirpath) / name
                found[str(path.relative_to(root))] = path.read_text()
    return found


class Recorder:
    """The on_change callback: records the config set as each call saw it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.snapshots: list[dict[str, str]] = []
        self.changed: list[Changed] = []

    def __call__(self, changed: Changed) -> None:
        snapshot = read_tree(self.root)
        with self.lock:
            self.snapshots.append(snapshot)
            self.changed.append(changed)

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.snapshots)

    @property
    def last(self) -> dict[str, str]:
        with self.lock:
            return self.snapshots[-1]


class Records(logging.Handler):
    """Keeps the watcher's log records; its debug lines say which events counted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.guard = threading.Lock()  # not ``lock``: Handler.handle() holds that one in emit()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        with self.guard:
            return [r.getMessage() for r in self.records if r.levelno >= level]

    def has(self, fragment: str, level: int = logging.DEBUG) -> bool:
        return any(fragment in m for m in self.messages(level))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    yield handler


@pytest.fixture
def logger(records: Records, request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    log = logging.getLogger(f"tests.watcher.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.addHandler(records)
    yield log
    log.removeHandler(records)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    (path / "a.yaml").write_text("a: 1\n")
    return path


@pytest.fixture
def make_watcher(logger: logging.Logger) -> Iterator[Callable[..., ConfigWatcher]]:
    """Start watchers with test-sized windows; stop them all at teardown."""
    started: list[ConfigWatcher] = []

    def make(path: Path, on_change: Callable[[Changed], None], **options: Any) -> ConfigWatcher:
        options = {"quiet": QUIET, "max_wait": MAX_WAIT, "logger": logger, **options}
        watcher = ConfigWatcher(path, on_change, **options)
        started.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in started:
        watcher.stop()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


# the real observer


def test_edit_fires_once_with_the_new_content(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "a.yaml").write_text("a: 2\n")
    wait_for(lambda: recorder.calls >= 1, what="a call after the edit")
    assert recorder.last == {"a.yaml": "a: 2\n"}
    stays(lambda: recorder.calls == 1, absence_window(MAX_WAIT), "exactly one call")


def test_a_call_names_the_files_that_changed(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    """So that the loader reads those files only; what no file event names (a
    directory removed, a forced reload) is None, and the whole set is read."""
    recorder = Recorder(cfg)
    watcher = make_watcher(cfg, recorder)
    (cfg / "b.yaml").write_text("b: 1\n")
    (cfg / "sub").mkdir()
    (cfg / "sub" / "c.yaml").write_text("c: 1\n")
    os.replace(cfg / "a.yaml", cfg / "d.yaml")
    wait_for(lambda: recorder.calls >= 1 and "d.yaml" in (recorder.changed[-1] or ()))
    named = [changed for changed in recorder.changed if changed is not None]
    assert len(named) == recorder.calls  # a slow box may split the burst, never lose a name
    assert set().union(*named) == {"a.yaml", "b.yaml", "sub/c.yaml", "d.yaml"}
    calls = recorder.calls
    watcher.trigger()
    wait_for(lambda: recorder.calls > calls, what="the forced call")
    assert recorder.changed[-1] is None
    calls = recorder.calls
    shutil.rmtree(cfg / "sub")
    wait_for(lambda: recorder.calls > calls, what="the call after the directory went")
    assert recorder.changed[-1] is None


def test_no_call_at_start(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "sentinel.txt").write_text("x")
    wait_for(lambda: records.has("sentinel.txt"), what="the sentinel event")
    assert recorder.calls == 0


def test_atomic_save_by_rename_fires(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    tmp = cfg / ".a.yaml.tmp-1234"
    tmp.write_text("a: 3\n")
    os.replace(tmp, cfg / "a.yaml")
    wait_for(lambda: recorder.calls >= 1, what="a call after the rename")
    assert recorder.last == {"a.yaml": "a: 3\n"}
    assert records.has("change: moved")


def test_vim_style_save_fires(cfg: Path, make_watcher: Callable[..., ConfigWatcher]) -> None:
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "4913").write_text("")
    (cfg / "4913").unlink()
    (cfg / "a.yaml").rename(cfg / "a.yaml~")
    (cfg / "a.yaml").write_text("a: 4\n")
    (cfg / "a.yaml~").unlink()
    wait_for(lambda: recorder.calls >= 1, what="a call after the save")
    assert recorder.last == {"a.yaml": "a: 4\n"}


def test_editor_noise_alone_does_not_fire(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    swap = cfg / ".a.yaml.swp"
    swap.write_bytes(b"\0" * 64)
    swap.write_bytes(b"\1" * 64)
    (cfg / "4913").write_text("")
    (cfg / "4913").unlink()
    shutil.copyfile(cfg / "a.yaml", cfg / "a.yaml~")
    (cfg / "a.yaml~").unlink()
    (cfg / ".#a.yaml").symlink_to("user@host.1234:1700000000")
    (cfg / ".#a.yaml").unlink()
    (cfg / ".goutputstream-ABC123").write_text("x")
    (cfg / ".goutputstream-ABC123").unlink()
    (cfg / "a.yaml___jb_tmp___").write_text("x")
    (cfg / "a.yaml___jb_tmp___").unlink()
    (cfg / "empty").mkdir()
    (cfg / ".git").mkdir()
    (cfg / ".git" / "HEAD.yaml").write_text("ref: refs/heads/main\n")
    (cfg / "notes.txt").write_text("not config")
    swap.unlink()
    (cfg / "zz-sentinel.txt").write_text("last")
    # Events arrive in order: once the last one is ignored, all the noise was seen.
    wait_for(lambda: records.has("zz-sentinel.txt"), what="the sentinel event")
    assert [m for m in records.messages() if m.startswith("change:")] == []
    assert recorder.calls == 0


def test_a_path_filter_given_replaces_the_default(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    def json_only(path: str, *, is_directory: bool) -> bool:
        return not is_directory and path.endswith(".json")

    recorder = Recorder(cfg)
    make_watcher(cfg, recorder, path_filter=json_only)
    (cfg / "a.yaml").write_text("a: ignored\n")
    wait_for(lambda: records.has("ignoring closed"), what="the yaml edit to be ignored")
    assert recorder.calls == 0
    (cfg / "b.json").write_text("{}")
    wait_for(lambda: recorder.calls >= 1, what="a call for the json file")


def test_deleting_a_yaml_file_fires(cfg: Path, make_watcher: Callable[..., ConfigWatcher]) -> None:
    (cfg / "b.yaml").write_text("b: 1\n")
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "b.yaml").unlink()
    wait_for(lambda: recorder.calls >= 1, what="a call after the delete")
    assert recorder.last == {"a.yaml": "a: 1\n"}


def test_removing_a_subdirectory_fires(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], tmp_path: Path
) -> None:
    (cfg / "team").mkdir()
    (cfg / "team" / "b.yaml").write_text("b: 1\n")
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "team").rename(tmp_path / "moved-out")
    wait_for(lambda: recorder.calls >= 1, what="a call after the move out")
    assert recorder.last == {"a.yaml": "a: 1\n"}


@needs_git
def test_git_checkout_of_20_files_fires_once_with_the_final_state(
    tmp_path: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    git = make_repo(tmp_path / "repo")
    repo = git.path
    for i in range(20):
        (repo / f"f{i:02}.yaml").write_text(f"main: {i}\n")
    git("add", "-A")
    git("commit", "-qm", "main")
    git("checkout", "-q", "-b", "other")
    for i in range(20):
        (repo / f"f{i:02}.yaml").write_text(f"other: {i}\n" + "x: 1\n" * i)
    git("add", "-A")
    git("commit", "-qm", "other")
    expected = read_tree(repo)
    git("checkout", "-q", "main")
    assert read_tree(repo) != expected

    recorder = Recorder(repo)
    max_wait = 0.4
    make_watcher(repo, recorder, quiet=0.1, max_wait=max_wait)
    git("checkout", "-q", "other")
    wait_for(lambda: recorder.calls >= 1, what="a call after the checkout")
    assert recorder.last == expected
    stays(lambda: recorder.calls == 1, absence_window(max_wait), "exactly one call")


def index_lock(cfg: Path) -> Path:
    """A git operation in progress, as git marks it."""
    (cfg / ".git").mkdir()
    lock = cfg / ".git" / "index.lock"
    lock.write_text("")
    return lock


def test_index_lock_holds_the_call_until_it_is_gone(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    lock = index_lock(cfg)
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)
    (cfg / "a.yaml").write_text("a: half\n")
    wait_for(lambda: records.has("waiting for its index lock"), what="the watcher to hold")
    (cfg / "b.yaml").write_text("b: 1\n")
    (cfg / "a.yaml").write_text("a: done\n")
    stays(lambda: recorder.calls == 0, absence_window(MAX_WAIT), "no call while locked")
    lock.unlink()
    wait_for(lambda: recorder.calls >= 1, what="a call after the lock is gone")
    assert recorder.last == {"a.yaml": "a: done\n", "b.yaml": "b: 1\n"}
    stays(lambda: recorder.calls == 1, absence_window(MAX_WAIT), "exactly one call")


def test_a_lock_left_by_a_dead_git_is_waited_for_only_so_long(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    lock = index_lock(cfg)
    recorder = Recorder(cfg)
    stale_after = 1.0
    make_watcher(cfg, recorder, stale_lock_after=stale_after)
    started = time.monotonic()
    (cfg / "a.yaml").write_text("a: 1\n")
    wait_for(lambda: recorder.calls >= 1, what="a call despite the stale lock")
    assert time.monotonic() - started >= stale_after
    assert recorder.last == {"a.yaml": "a: 1\n"}
    assert any("taking it for a lock left by a git" in m for m in records.messages(logging.WARNING))

    lock.unlink()
    lock.write_text("")  # a new git operation: waited for again
    (cfg / "a.yaml").write_text("a: 2\n")
    wait_for(
        lambda: (
            records.messages().count("git operation in progress; waiting for its index lock") >= 2
        ),
        what="the watcher to hold again",
    )
    lock.unlink()
    wait_for(lambda: recorder.calls >= 2, what="a call once the new lock is gone")
    assert recorder.last == {"a.yaml": "a: 2\n"}


def test_symlink_swap_of_the_whole_dir(
    tmp_path: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    v1, v2 = tmp_path / "rev-1", tmp_path / "rev-2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "a.yaml").write_text("a: 1\n")
    (v2 / "a.yaml").write_text("a: 2\n")
    (v2 / "b.yaml").write_text("b: 2\n")
    link = tmp_path / "current"
    link.symlink_to(v1.name)
    recorder = Recorder(link)
    watcher = make_watcher(link, recorder)
    assert watcher.target == v1.resolve()

    new_link = tmp_path / "current.tmp"
    new_link.symlink_to(v2.name)
    os.replace(new_link, link)
    wait_for(lambda: recorder.calls >= 1, what="a call after the swap")
    assert recorder.last == {"a.yaml": "a: 2\n", "b.yaml": "b: 2\n"}
    assert watcher.target == v2.resolve()

    calls = recorder.calls
    (v2 / "c.yaml").write_text("c: 2\n")
    wait_for(lambda: recorder.calls > calls, what="a call after an edit in the new target")
    assert recorder.last == {"a.yaml": "a: 2\n", "b.yaml": "b: 2\n", "c.yaml": "c: 2\n"}


def test_kubernetes_style_data_link_swap_inside_the_dir(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    (cfg / "a.yaml").unlink()
    (cfg / "..2024_01_01_00_00_00.1").mkdir()
    (cfg / "..2024_01_01_00_00_00.1" / "a.yaml").write_text("a: 1\n")
    (cfg / "..data").symlink_to("..2024_01_01_00_00_00.1")
    (cfg / "a.yaml").symlink_to("..data/a.yaml")
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder)

    (cfg / "..2024_01_01_00_01_00.2").mkdir()
    (cfg / "..2024_01_01_00_01_00.2" / "a.yaml").write_text("a: 2\n")
    (cfg / "..data_tmp").symlink_to("..2024_01_01_00_01_00.2")
    os.replace(cfg / "..data_tmp", cfg / "..data")
    wait_for(lambda: recorder.calls >= 1, what="a call after the ..data swap")
    assert recorder.last == {"a.yaml": "a: 2\n"}
    changes = [m for m in records.messages() if m.startswith("change:")]
    assert changes == [f"change: moved {cfg / '..data_tmp'} -> {cfg / '..data'}"]


def test_missing_dir_is_picked_up_when_created(
    tmp_path: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    path = tmp_path / "config"
    recorder = Recorder(path)
    watcher = make_watcher(path, recorder)
    assert watcher.target is None
    assert records.has("does not exist yet", logging.WARNING)
    path.mkdir()
    wait_for(lambda: recorder.calls >= 1 and watcher.target is not None, what="the new dir")
    calls = recorder.calls
    (path / "a.yaml").write_text("a: 1\n")
    wait_for(lambda: recorder.calls > calls, what="a call after the first file")
    assert recorder.last == {"a.yaml": "a: 1\n"}


class CountingFingerprint:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self) -> str:
        with self.lock:
            self.count += 1
        return fingerprint_dir(self.root)


def test_resync_catches_a_change_that_sent_no_event(
    tmp_path: Path, cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    # A second name for a.yaml outside the watched tree: inotify reports writes
    # through it to that other directory only, like a dropped event.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(cfg / "a.yaml", elsewhere / "a.yaml")
    recorder = Recorder(cfg)
    make_watcher(cfg, recorder, resync_interval=0.2, fingerprint=CountingFingerprint(cfg))
    with (elsewhere / "a.yaml").open("w") as f:
        f.write("a: changed behind our back\n")
    wait_for(lambda: recorder.calls >= 1, what="the resync call")
    assert recorder.last == {"a.yaml": "a: changed behind our back\n"}
    assert records.has("resync: config changed without a file event", logging.INFO)
    assert not any(m.startswith("change:") for m in records.messages())


def test_resync_without_a_change_does_not_fire(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    recorder = Recorder(cfg)
    fingerprint = CountingFingerprint(cfg)
    make_watcher(cfg, recorder, resync_interval=0.05, fingerprint=fingerprint)
    wait_for(lambda: fingerprint.count >= 6, what="the baseline and five resyncs")
    assert recorder.calls == 0


def test_trigger_fires_without_changes_and_merges_with_pending_events(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    recorder = Recorder(cfg)
    watcher = make_watcher(cfg, recorder, quiet=0.2, max_wait=0.4)
    watcher.trigger()
    wait_for(lambda: recorder.calls == 1, what="the triggered call")

    (cfg / "a.yaml").write_text("a: 5\n")
    wait_for(lambda: records.has("change: closed"), what="the edit's last event")
    watcher.trigger()
    wait_for(lambda: recorder.calls == 2, what="the call merging edit and trigger")
    assert recorder.last == {"a.yaml": "a: 5\n"}
    stays(lambda: recorder.calls == 2, absence_window(0.4), "no separate call for the edit")


def test_callback_never_overlaps_and_changes_during_it_cause_one_more_call(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    entered = threading.Event()
    release = threading.Event()
    lock = threading.Lock()
    active = 0
    overlaps = 0
    snapshots: list[dict[str, str]] = []

    def on_change(_changed: Changed) -> None:
        nonlocal active, overlaps
        with lock:
            active += 1
            overlaps += active > 1
        entered.set()
        release.wait(10)
        snapshots.append(read_tree(cfg))
        with lock:
            active -= 1

    watcher = make_watcher(cfg, on_change)
    watcher.trigger()
    assert entered.wait(5)
    (cfg / "a.yaml").write_text("a: 6\n")
    wait_for(lambda: records.has("change: closed"), what="the edit's last event")
    watcher.trigger()
    release.set()
    wait_for(lambda: len(snapshots) == 2, what="the second call")
    assert snapshots[1] == {"a.yaml": "a: 6\n"}
    assert overlaps == 0
    stays(lambda: len(snapshots) == 2, absence_window(MAX_WAIT), "exactly two calls")


def test_callback_exception_is_logged_and_watching_goes_on(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher], records: Records
) -> None:
    calls: list[int] = []

    def on_change(_changed: Changed) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    make_watcher(cfg, on_change)
    (cfg / "a.yaml").write_text("a: 7\n")
    wait_for(lambda: len(calls) == 1, what="the failing call")
    wait_for(lambda: records.has("config change callback failed", logging.ERROR))
    failure = next(r for r in records.records if r.levelno == logging.ERROR)
    assert failure.exc_info is not None and "boom" in str(failure.exc_info[1])
    (cfg / "a.yaml").write_text("a: 8\n")
    wait_for(lambda: len(calls) == 2, what="the next call")


def test_a_failed_call_is_retried_by_the_next_resync(
    cfg: Path, make_watcher: Callable[..., ConfigWatcher]
) -> None:
    calls: list[int] = []

    def on_change(_changed: Changed) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    make_watcher(cfg, on_change, resync_interval=0.2)
    (cfg / "a.yaml").write_text("a: 9\n")
    wait_for(lambda: len(calls) == 2, what="the retry by the resync")


def _no_inotify_instances() -> BaseObserver:
    raise OSError(errno.EMFILE, "inotify instance limit reached")


class _NoInotifyWatches(InotifyObserver):
    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


@pytest.mark.parametrize("observer", [_no_inotify_instances, _NoInotifyWatches])
def test_falls_back_to_polling_when_inotify_is_exhausted(
    cfg: Path,
    make_watcher: Callable[..., ConfigWatcher],
    records: Records,
    monkeypatch: pytest.MonkeyPatch,
    observer: Callable[[], BaseObserver],
) -> None:
    monkeypatch.setattr(watcher_module, "Observer", observer)
    recorder = Recorder(cfg)
    watcher = make_watcher(cfg, recorder)
    assert watcher.polling
    assert records.has("polling every", logging.WARNING)
    (cfg / "a.yaml").write_text("a: polled, and longer\n")
    wait_for(lambda: recorder.calls >= 1, what="a call found by polling")
    assert recorder.last == {"a.yaml": "a: polled, and longer\n"}


def test_other_observer_errors_are_not_swallowed(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> BaseObserver:
        raise OSError(errno.EACCES, "permission denied")

    monkeypatch.setattr(watcher_module, "Observer", broken)
    with pytest.raises(PermissionError):
        ConfigWatcher(cfg, lambda _changed: None).start()


def _watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "syncd-config-watcher"]


def test_context_manager_and_stop_are_idempotent(cfg: Path, logger: logging.Logger) -> None:
    recorder = Recorder(cfg)
    before = len(_watcher_threads())
    with ConfigWatcher(cfg, recorder, quiet=QUIET, max_wait=MAX_WAIT, logger=logger) as watcher:
        assert len(_watcher_threads()) == before + 1
        (cfg / "a.yaml").write_text("a: 10\n")
        wait_for(lambda: recorder.calls >= 1)
    assert len(_watcher_threads()) == before
    watcher.stop()
    watcher.trigger()
    with pytest.raises(RuntimeError, match="only once"):
        watcher.start()


def test_index_lock_is_the_config_dir_s_own_or_that_of_the_checkout_named(
    tmp_path: Path,
) -> None:
    """A repository in a parent directory is not the config dir's unless the operator
    names it: whoever can write there could otherwise hold every reload."""
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "integrations").mkdir()
    assert git_index_lock(tmp_path / "repo" / "integrations") is None
    assert git_index_lock(tmp_path / "repo" / "integrations", tmp_path / "repo") == str(
        tmp_path / "repo" / ".git" / "index.lock"
    )
    assert git_index_lock(tmp_path / "repo") == str(tmp_path / "repo" / ".git" / "index.lock")
    worktree = tmp_path / "worktrees" / "rev-1"
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text("gitdir: ../../repo/.git/worktrees/rev-1\n")
    assert git_index_lock(worktree) == str(
        tmp_path / "repo" / ".git" / "worktrees" / "rev-1" / "index.lock"
    )
