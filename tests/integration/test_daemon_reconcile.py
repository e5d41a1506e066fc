"""The daemon in this process: real files, the real watchdog observer, real git."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests

from syncd.config.plan import Plan
from syncd.registry import Outcome, Snapshot
from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files
from tests.support.daemons import running_daemon
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for


class Recorder:
    """Keeps every snapshot that changed the registry, for "never partial" checks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snapshots: list[Snapshot] = []

    def __call__(self, plan: Plan, snapshot: Snapshot) -> None:
        if plan.changed:
            with self.lock:
                self.snapshots.append(snapshot)

    def uids(self) -> list[list[str]]:
        with self.lock:
            return [sorted(s.notifiers) for s in self.snapshots]


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "daemon-test-token")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_files(tmp_path / "config", ("a.yaml", minimal("a")))


def start(config_dir: Path, **options: float) -> tuple[Daemon, Recorder]:
    state = config_dir.parent / f"state-{config_dir.name}"
    daemon = Daemon(DaemonConfig(config_dir, state_dir=state, port=0, **options))  # type: ignore[arg-type]
    recorder = Recorder()
    daemon.registry.add_listener(recorder)
    assert daemon.start().ok
    return daemon, recorder


@pytest.fixture
def running(config_dir: Path) -> Iterator[tuple[Daemon, Recorder]]:
    daemon, recorder = start(config_dir)
    yield daemon, recorder
    daemon.shutdown()


def uids(daemon: Daemon) -> list[str]:
    return sorted(daemon.registry.snapshot.notifiers)


def test_edit_updates_the_registry(config_dir: Path, running: tuple[Daemon, Recorder]) -> None:
    daemon, _ = running
    (config_dir / "a.yaml").write_text(minimal("a") + "    state: disabled\n")
    wait_for(lambda: daemon.registry.snapshot.notifiers["a"].integration.state == "disabled")


def test_atomic_save_by_rename(config_dir: Path, running: tuple[Daemon, Recorder]) -> None:
    daemon, _ = running
    tmp = config_dir / ".a.yaml.tmp123"
    tmp.write_text(minimal("a") + "    state: stopped\n")
    os.replace(tmp, config_dir / "a.yaml")
    wait_for(lambda: daemon.registry.snapshot.notifiers["a"].integration.state == "stopped")


def test_vim_style_save(config_dir: Path, running: tuple[Daemon, Recorder]) -> None:
    daemon, _ = running
    target = config_dir / "a.yaml"
    (config_dir / "4913").write_text("")
    (config_dir / "4913").unlink()
    os.rename(target, config_dir / "a.yaml~")
    target.write_text(minimal("a") + "    state: disabled\n")
    (config_dir / "a.yaml~").unlink()
    wait_for(lambda: daemon.registry.snapshot.notifiers["a"].integration.state == "disabled")


def test_new_file_creates_and_delete_prunes(
    config_dir: Path, running: tuple[Daemon, Recorder]
) -> None:
    daemon, _ = running
    (config_dir / "b.yaml").write_text(minimal("b"))
    wait_for(lambda: uids(daemon) == ["a", "b"])
    (config_dir / "b.yaml").unlink()
    wait_for(lambda: uids(daemon) == ["a"])


def test_invalid_edit_keeps_last_known_good_then_fix_recovers(
    config_dir: Path, running: tuple[Daemon, Recorder]
) -> None:
    daemon, _ = running
    good = daemon.registry.snapshot
    (config_dir / "b.yaml").write_text(minimal("b").replace("1234567", "0"))
    wait_for(lambda: daemon.registry.last_failure is not None)
    assert daemon.registry.snapshot is good
    status = requests.get(daemon.server.url + "/status", timeout=5).json()
    assert status["applied_revision"] == good.revision
    assert status["last_reconcile"]["ok"] is False
    assert status["last_reconcile"]["diagnostics"] == [
        f"{config_dir}/b.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: "
        "0 is less than the minimum 1"
    ]
    (config_dir / "b.yaml").write_text(minimal("b"))
    wait_for(lambda: uids(daemon) == ["a", "b"])
    assert daemon.registry.last_attempt is not None and daemon.registry.last_attempt.ok


def test_git_checkout_of_20_files_is_one_reconcile_of_the_final_state(
    tmp_path: Path, git_repo: GitRepo
) -> None:
    repo, git = git_repo.path, git_repo
    (repo / "a.yaml").write_text(minimal("a"))
    git("add", "-A")
    git("commit", "-qm", "one file")
    git("checkout", "-q", "-b", "many")
    for i in range(20):
        (repo / f"f{i:02}.yaml").write_text(minimal(f"f{i:02}"))
    git("add", "-A")
    git("commit", "-qm", "twenty more")
    final_commit = git("rev-parse", "HEAD")
    git("checkout", "-q", "main")

    daemon, recorder = start(repo)
    try:
        assert recorder.uids() == [["a"]]
        git("checkout", "-q", "many")
        wait_for(lambda: len(recorder.uids()) == 2, what="the reconcile after checkout")
        assert len(recorder.uids()[1]) == 21
        assert daemon.registry.snapshot.revision == "git:" + final_commit
        # Nothing else is pending: a partial reconcile would have added a snapshot.
        daemon.reload()
        assert len(recorder.uids()) == 2
    finally:
        daemon.shutdown()


def test_symlink_swap_of_the_whole_dir(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "rev-1", tmp_path / "rev-2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "a.yaml").write_text(minimal("a"))
    (v2 / "a.yaml").write_text(minimal("a"))
    (v2 / "b.yaml").write_text(minimal("b"))
    link = tmp_path / "current"
    link.symlink_to(v1)
    daemon, _ = start(link)
    try:
        tmp_link = tmp_path / "current.tmp"
        tmp_link.symlink_to(v2)
        os.replace(tmp_link, link)
        wait_for(lambda: uids(daemon) == ["a", "b"], what="the swapped-in directory")
        (v2 / "c.yaml").write_text(minimal("c"))
        wait_for(lambda: uids(daemon) == ["a", "b", "c"], what="an edit in the new target")
    finally:
        daemon.shutdown()


def test_a_token_is_read_with_its_file_and_on_reload(
    config_dir: Path, running: tuple[Daemon, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit reads the edited file's tokens only; a reload reads them all."""
    daemon, _ = running
    (config_dir / "b.yaml").write_text(minimal("b"))
    wait_for(lambda: uids(daemon) == ["a", "b"])
    monkeypatch.setenv("HIPCHAT_TOKEN", "rotated-token")
    (config_dir / "b.yaml").write_text(minimal("b") + "    state: stopped\n")

    def tokens() -> dict[str, str]:
        notifiers = daemon.registry.snapshot.notifiers
        return {uid: notifiers[uid].tokens["1234567"] for uid in ("a", "b")}

    wait_for(lambda: tokens()["b"] == "rotated-token", what="b's new token")
    assert tokens()["a"] == "daemon-test-token"
    assert requests.post(daemon.server.url + "/-/reload", json={}, timeout=10).status_code == 200
    assert tokens() == {"a": "rotated-token", "b": "rotated-token"}


def test_reload_endpoint(config_dir: Path, running: tuple[Daemon, Recorder]) -> None:
    daemon, _ = running
    attempts = daemon.registry.attempts
    ok = requests.post(daemon.server.url + "/-/reload", json={}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["ok"] is True
    assert daemon.registry.attempts == attempts + 1
    (config_dir / "a.yaml").write_text("version: 1\nintegrations: [\n")
    bad = requests.post(daemon.server.url + "/-/reload", json={}, timeout=10)
    assert bad.status_code == 500
    body = bad.json()["error"]
    assert body["message"] == "config rejected; last-known-good stays active"
    assert body["diagnostics"][0].startswith(f"{config_dir}/a.yaml:2:15: error: YAML syntax")
    assert uids(daemon) == ["a"]


def test_reload_requests_during_a_reconcile_share_the_next_one(
    running: tuple[Daemon, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is promised: each POST /-/reload answers after a reconcile that started
    after it; the requests that come while one runs are served by a single next one.
    The first reconcile is held until every request has asked, so the count is exact."""
    daemon, _ = running
    before = daemon.registry.attempts
    gate, entered = threading.Event(), threading.Event()
    asked = Counter()
    reconcile, trigger = daemon.reconciler.reconcile, daemon.reloads._trigger

    def held(changed: Iterable[str] | None = None) -> Outcome:
        entered.set()
        gate.wait(10)
        return reconcile(changed)

    def counted() -> None:
        asked.add()
        trigger()

    monkeypatch.setattr(daemon.reconciler, "reconcile", held)
    monkeypatch.setattr(daemon.reloads, "_trigger", counted)
    results: list[int] = []

    def post() -> None:
        results.append(
            requests.post(daemon.server.url + "/-/reload", json={}, timeout=30).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    threads[0].start()
    wait_for(entered.is_set, what="the first reconcile to start")
    for t in threads[1:]:
        t.start()
    wait_for(lambda: asked.value == 8, what="every request to ask for a reconcile")
    gate.set()
    for t in threads:
        t.join()
    assert results == [200] * 8
    assert daemon.registry.attempts - before == 2


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def test_ready_and_health(running: tuple[Daemon, Recorder]) -> None:
    daemon, _ = running
    assert requests.get(daemon.server.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(daemon.server.url + "/readyz", timeout=5).status_code == 200
    registry = requests.get(daemon.server.url + "/v1/registry", timeout=5).json()
    assert [i["uid"] for i in registry["integrations"]] == ["a"]
    assert "daemon-test-token" not in str(registry)


def test_a_return_to_the_set_in_use_is_logged_at_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    caplog.set_level(logging.INFO, logger="syncd")
    with running_daemon(tmp_path) as daemon:
        broken = tmp_path / "config" / "b.yaml"
        broken.write_text("version: 1\nintegrations: [{uid: b}]\n")
        outcome = daemon.reload(timeout=20)
        assert outcome is not None and not outcome.ok
        broken.unlink()
        again = daemon.reload(timeout=20)
        assert again is not None and again.ok and not again.changed
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"config {again.revision} is valid again; it matches the set in use" in infos


def test_the_watcher_leaves_out_what_exclude_leaves_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "config" / "deploy").mkdir(parents=True)
    caplog.set_level(logging.DEBUG, logger="syncd")
    with running_daemon(tmp_path, exclude=("deploy/*",)) as daemon:
        (daemon.config.config_dir / "deploy" / "k8s.yaml").write_text("kind: Deployment\n")
        (daemon.config.config_dir / "zz-sentinel.txt").write_text("last")
        # Events come in order: once the sentinel is ignored, the manifest was seen.
        wait_for(lambda: "zz-sentinel.txt" in caplog.text, what="the sentinel event")
        changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("change:")]
        assert changes == []
