"""A daemon following a git remote, in this process: a push of one file among
many costs that file, in the checkout (one file written, the rest linked), in
the reconcile (one file read) and in the resyncs after it; and problems are
named as the repository names the files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from syncd.config.configset import load_config_set
from syncd.config.plan import Plan
from syncd.registry import Snapshot
from syncd.service.daemon import Daemon, DaemonConfig, GitSettings
from tests.support.configs import minimal, write_files
from tests.support.daemons import TEST_REACH
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.waiting import wait_for

FILES = 400
BROKEN = "version: 1\nintegrations:\n  - uid: int-3\n    project: [not, a, string]\n"


def name(n: int) -> str:
    return f"int-{n:04}.yaml"


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "git-push-test-token")


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "origin")
    files = [(f"integrations/{name(n)}", minimal(f"int-{n}")) for n in range(FILES)]
    write_files(repo.path, *files, ("README.md", "not config"))
    repo.commit_all("first")
    return repo


@contextmanager
def following(origin: GitRepo, tmp_path: Path, resync: float = 3600) -> Iterator[Daemon]:
    git = GitSettings(f"file://{origin.path}", path="integrations", interval=3600)
    config = DaemonConfig(
        tmp_path / "unused",
        tmp_path / "state",
        port=0,
        resync_interval=resync,
        reach=TEST_REACH,
        git=git,
    )
    running = Daemon(config)
    try:
        assert running.start().ok
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def daemon(origin: GitRepo, tmp_path: Path) -> Iterator[Daemon]:
    with following(origin, tmp_path) as running:
        yield running


def push(origin: GitRepo, n: int, text: str) -> str:
    write_files(origin.path, (f"integrations/{name(n)}", text))
    return origin.commit_all(f"edit {n}")


class Applied:
    """The loader's read count when each set was applied, by revision (the first
    time it was)."""

    def __init__(self, daemon: Daemon) -> None:
        self.reads: dict[str, int] = {}
        self._loader = daemon.reconciler.loader
        daemon.registry.add_listener(self)

    def __call__(self, plan: Plan, snapshot: Snapshot) -> None:
        self.reads.setdefault(snapshot.revision, self._loader.reads)


def settle(daemon: Daemon) -> None:
    """Until every file is trusted by its stat: a file read just after it was
    written is read again at the next look (it could change unseen)."""

    def trusted() -> bool:
        daemon.reload()
        return daemon.reconciler.resync() == frozenset()

    wait_for(trusted, timeout=20, what="every file trusted by its stat")


def apply(daemon: Daemon, sha: str) -> None:
    assert daemon.poller is not None
    daemon.poller.trigger()
    wait_for(lambda: daemon.registry.snapshot.revision == f"git:{sha}", timeout=20)


def fresh(daemon: Daemon) -> list[object]:
    assert daemon.poller is not None
    return list(load_config_set([daemon.poller.link]).integrations)


def test_a_one_file_push_reads_one_file_and_the_resyncs_after_it_at_most_those_pushed(
    daemon: Daemon, origin: GitRepo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    settle(daemon)
    applied = Applied(daemon)
    before = daemon.reconciler.loader.reads

    first = push(origin, 7, minimal("int-7") + "    state: disabled\n")
    apply(daemon, first)
    assert applied.reads[f"git:{first}"] - before == 1
    assert f"checked out (1 file(s) written, {FILES - 1} linked)" in caplog.text
    assert daemon.registry.snapshot.notifiers["int-7"].integration.state == "disabled"
    found = daemon.reconciler.resync()
    assert found is not None and found <= {name(7)}

    # The checkout before the last goes now: the ctime of the files it shares
    # with the current one moves again, after the reconcile.
    second = push(origin, 11, minimal("int-11") + "    state: disabled\n")
    apply(daemon, second)
    checkouts = daemon.config.state_dir.absolute() / "git" / "checkouts"
    wait_for(lambda: len(list(checkouts.iterdir())) == 2, what="the oldest checkout pruned")
    found = daemon.reconciler.resync()
    assert found is not None and found <= {name(7), name(11)}
    reads = daemon.reconciler.loader.reads
    assert daemon.reload() is not None  # a full reload: a walk that stats every file
    assert daemon.reconciler.loader.reads - reads <= 2
    assert [n.integration for n in daemon.registry.snapshot.notifiers.values()] == fresh(daemon)


def test_a_force_push_is_followed_to_the_set_a_fresh_load_gives(
    daemon: Daemon, origin: GitRepo
) -> None:
    push(origin, 5, minimal("int-5") + "    state: disabled\n")
    origin("reset", "-q", "--hard", "HEAD~1")
    write_files(origin.path, ("integrations/new.yaml", minimal("new")))
    (origin.path / "integrations" / name(6)).unlink()
    rewritten = origin.commit_all("rewritten")
    apply(daemon, rewritten)
    integrations = [n.integration for n in daemon.registry.snapshot.notifiers.values()]
    assert integrations == fresh(daemon)
    assert "new" in daemon.registry.snapshot.notifiers
    assert "int-6" not in daemon.registry.snapshot.notifiers


def test_problems_in_status_name_the_files_as_the_repository_does(
    daemon: Daemon, origin: GitRepo, tmp_path: Path
) -> None:
    broken = push(origin, 3, BROKEN)
    assert daemon.poller is not None
    daemon.poller.trigger()

    def judged() -> bool:
        failure = daemon.registry.last_failure
        return failure is not None and failure.revision == f"git:{broken}"

    wait_for(judged, timeout=20, what="the broken commit judged")
    status = requests.get(daemon.server.url + "/status", timeout=5).json()
    diagnostics = status["last_failure"]["diagnostics"]
    assert diagnostics, status
    assert all(d.startswith(f"integrations/{name(3)}:") for d in diagnostics), diagnostics
    assert any(d.startswith(f"integrations/{name(3)}:4:14: error") for d in diagnostics)
    assert not any(str(tmp_path) in d for d in diagnostics)


def test_the_link_s_own_event_after_a_swap_reads_nothing_but_a_reload_reads_everything(
    daemon: Daemon, origin: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher sees the swap too (the link replaced) and asks for a reconcile
    of everything: the checkout was read already, so it reads no file and
    resolves no token again. A reload asked for (SIGHUP, POST /-/reload) does:
    a rotated token is taken then."""
    sha = push(origin, 2, minimal("int-2") + "    state: disabled\n")
    apply(daemon, sha)
    monkeypatch.setenv("HIPCHAT_TOKEN", "rotated-token")
    attempts, reads = daemon.registry.attempts, daemon.reconciler.loader.reads
    daemon.watcher.changed()  # what the link's event does
    wait_for(lambda: daemon.registry.attempts > attempts, what="the reconcile it asks for")
    assert daemon.reconciler.loader.reads == reads
    notifiers = daemon.registry.snapshot.notifiers
    assert notifiers["int-9"].tokens == {"1234567": "git-push-test-token"}
    assert daemon.reload() is not None
    assert daemon.registry.snapshot.notifiers["int-9"].tokens == {"1234567": "rotated-token"}


def test_a_file_changed_in_the_checkout_behind_the_daemon_s_back_is_found_by_the_resync(
    origin: GitRepo, tmp_path: Path
) -> None:
    """Nothing but the poller writes a checkout; what else does is read at the
    next resync, as in a config dir."""
    with following(origin, tmp_path, resync=0.3) as daemon:
        sha = push(origin, 4, minimal("int-4") + "    state: disabled\n")
        apply(daemon, sha)
        assert daemon.poller is not None
        (daemon.poller.link / name(5)).write_text(minimal("int-5") + "    state: disabled\n")
        notifiers = daemon.registry.snapshot.notifiers
        wait_for(
            lambda: daemon.registry.snapshot.notifiers["int-5"].integration.state == "disabled",
            timeout=20,
            what="the resync to read the file",
        )
        assert notifiers["int-5"].integration.state == "enabled"
