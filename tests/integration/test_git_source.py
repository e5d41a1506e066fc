"""Following a git remote on real git: fetch into the mirror, check out, swap the
link; what a fetch may bring; force pushes; and a webhook's trigger during a
fetch. Remotes are served by the tests on loopback (``tests.support.gitserver``)
or read through ``file://``."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.reconcile.gitcheckout import Checkouts
from syncd.reconcile.gitcommand import GitError
from syncd.reconcile.gitpoller import (
    Checkout,
    FetchReport,
    GitPoller,
    Hooks,
    PollTiming,
    Rejected,
    fetch_once,
)
from syncd.reconcile.gitsource import GitSource, GitSourceError
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.gitserver import (
    Seen,
    git_daemon,
    processes,
    remote_error,
    smart_http,
    stalling_server,
)
from tests.support.waiting import wait_for


class Recorder:
    """What a poller told the daemon."""

    def __init__(self) -> None:
        self.checkouts: list[Checkout] = []
        self.rejected: list[Rejected] = []
        self.reports: list[FetchReport] = []

    @property
    def hooks(self) -> Hooks:
        return Hooks(self.checkouts.append, self.rejected.append, self.reports.append)


def follow(source: GitSource, root: Path, **kwargs: object) -> tuple[GitPoller, Recorder]:
    recorder = Recorder()
    return GitPoller(source, root, recorder.hooks, **kwargs), recorder  # type: ignore[arg-type]


def files_under(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    """A repository with one integration under integrations/, and a README."""
    repo = make_repo(tmp_path / "served" / "origin")
    write_files(repo.path, ("integrations/a.yaml", minimal("a")), ("README.md", "hello"))
    repo.commit_all("a")
    return repo


def file_url(repo: GitRepo) -> str:
    return f"file://{repo.path}"


def test_a_fetch_checks_out_the_ref_s_config_and_makes_it_current(
    origin: GitRepo, tmp_path: Path
) -> None:
    source = GitSource(file_url(origin), path="integrations")
    poller, seen = follow(source, tmp_path / "state" / "git")
    report = poller.poll()
    head = origin("rev-parse", "HEAD")
    assert (report.result, report.commit) == ("changed", head)
    [checkout] = seen.checkouts
    assert checkout.revision == f"git:{head}"
    assert poller.link.resolve() == checkout.directory.resolve()
    assert files_under(poller.link) == {"a.yaml": minimal("a")}  # the README is no config
    assert poller.status().applied == head


def test_a_new_commit_replaces_the_checkout_and_the_one_before_it_goes(
    origin: GitRepo, tmp_path: Path
) -> None:
    poller, seen = follow(GitSource(file_url(origin), path="integrations"), tmp_path / "git")
    poller.poll()
    for uid in ("b", "c"):
        write_files(origin.path, (f"integrations/{uid}.yaml", minimal(uid)))
        origin.commit_all(uid)
        assert poller.poll().result == "changed"
    assert files_under(poller.link) == {f"{u}.yaml": minimal(u) for u in "abc"}
    # The current checkout and the one it replaced are kept; older ones are removed.
    kept = sorted(p.name for p in (tmp_path / "git" / "checkouts").iterdir())
    assert kept == sorted(c.directory.name for c in seen.checkouts[-2:])


def test_an_unchanged_ref_is_not_checked_out_again_until_a_restart(
    origin: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    poller, seen = follow(GitSource(file_url(origin)), root)
    poller.poll()
    assert poller.poll().result == "unchanged"
    assert len(seen.checkouts) == 1
    # After a restart the first fetch checks out again: the flags may have changed.
    again, _ = follow(GitSource(file_url(origin), path="integrations"), root)
    assert again.status().applied == origin("rev-parse", "HEAD")
    assert again.poll().result == "changed"
    assert files_under(again.link) == {"a.yaml": minimal("a")}


def test_a_git_path_that_is_no_directory_rejects_the_commit(
    origin: GitRepo, tmp_path: Path
) -> None:
    poller, seen = follow(GitSource(file_url(origin), path="nowhere"), tmp_path / "git")
    assert poller.poll().result == "rejected"
    [rejected] = seen.rejected
    assert rejected.kind == "tree"
    assert "--git-path nowhere is not a directory" in rejected.reason
    assert origin("rev-parse", "HEAD") in rejected.reason
    assert not poller.link.exists()
    assert poller.poll().result == "unchanged"  # judged once per commit
    assert len(seen.rejected) == 1


def test_a_token_reaches_the_server_through_the_credential_helper(
    origin: GitRepo, tmp_path: Path
) -> None:
    token = "s3cr3t-token-value"
    token_file = write_files(tmp_path / "creds", ("token", token + "\n")) / "token"
    with smart_http(origin.path.parent, token=token) as server:
        source = GitSource(
            server.repo_url("origin"),
            token_file=token_file,
            allow_http=True,
            path="integrations",
        )
        poller, _ = follow(source, tmp_path / "git")
        assert poller.poll().result == "changed"
    assert any(s.authorization for s in server.seen)


def test_a_wrong_token_fails_the_fetch_without_showing_it(
    origin: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "wrong-token-value-1234"
    token_file = write_files(tmp_path / "creds", ("token", token)) / "token"
    caplog.set_level(logging.DEBUG)
    with smart_http(origin.path.parent, token="the-right-one") as server:
        source = GitSource(server.repo_url("origin"), token_file=token_file, allow_http=True)
        poller, _ = follow(source, tmp_path / "git")
        report = poller.poll()
    assert report.result == "failed"
    assert report.error is not None and "Authentication failed" in report.error
    assert token not in repr(poller.status()) + caplog.text + report.error


def test_the_token_is_never_in_a_process_s_arguments_or_environment(
    origin: GitRepo, tmp_path: Path
) -> None:
    """While git waits on the server's answer, every process is looked at."""
    token = "tok-in-flight-5678"
    token_file = write_files(tmp_path / "creds", ("token", token)) / "token"
    found: list[str] = []
    gits: list[bytes] = []

    def look(_: object) -> None:
        for pid, cmdline, environ in processes():
            if pid == os.getpid():
                continue
            if b"git" in cmdline:
                gits.append(cmdline)
            if token.encode() in cmdline + environ:
                found.append(cmdline.decode(errors="replace"))

    with smart_http(origin.path.parent, token=token, on_request=look) as server:
        source = GitSource(server.repo_url("origin"), token_file=token_file, allow_http=True)
        poller, _ = follow(source, tmp_path / "state" / "git")
        assert poller.poll().result == "changed"
    assert any(b"remote-http" in c for c in gits), "no git process was seen mid-fetch"
    assert found == []
    # Nor is it in any file of the state dir.
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path


def test_a_fetch_from_a_server_that_never_answers_is_cut_at_the_timeout(tmp_path: Path) -> None:
    timeout = 1.0
    with stalling_server() as port:
        source = GitSource(f"http://127.0.0.1:{port}/repo", timeout=timeout, allow_http=True)
        poller, _ = follow(source, tmp_path / "git")
        report = poller.poll()
        assert report.result == "failed"
        assert report.error == f"git fetch timed out after {timeout:g} s"
        assert timeout <= report.duration < timeout + 2
        # Nothing git started is left connected to the server.
        assert [c for _, c, _ in processes() if str(port).encode() in c] == []


def test_stopping_the_poller_cuts_a_fetch_under_way(tmp_path: Path) -> None:
    with stalling_server() as port:
        source = GitSource(f"http://127.0.0.1:{port}/repo", timeout=60, allow_http=True)
        poller, seen = follow(source, tmp_path / "git")
        poller.start()
        wait_for(lambda: poller.status().last_fetch_at is not None, what="a fetch")
        assert poller.stop(timeout=5)
    assert seen.reports[0].result == "failed"


def test_a_trigger_during_a_fetch_makes_exactly_one_more(origin: GitRepo, tmp_path: Path) -> None:
    hold = threading.Event()
    held = threading.Event()

    def gate(seen: object) -> None:
        if not held.is_set():
            held.set()
            hold.wait(10)

    with smart_http(origin.path.parent, on_request=gate) as server:
        source = GitSource(server.repo_url("origin"), allow_http=True, interval=3600)
        poller, seen = follow(source, tmp_path / "git")
        poller.start()
        try:
            held.wait(10)
            for _ in range(5):
                poller.trigger()
            hold.set()
            wait_for(lambda: len(seen.reports) >= 2, what="two fetches")
            # Nothing else is due for an hour: no third fetch comes.
            assert not _happens(lambda: len(seen.reports) > 2, within=0.5)
        finally:
            poller.stop(5)
    assert [r.result for r in seen.reports] == ["changed", "unchanged"]


def _happens(predicate: Callable[[], bool], within: float) -> bool:
    event = threading.Event()
    deadline = within
    step = 0.02
    while deadline > 0:
        if predicate():
            return True
        event.wait(step)
        deadline -= step
    return predicate()


def test_a_remote_down_changes_nothing_and_the_fetch_after_catches_up(
    origin: GitRepo, tmp_path: Path
) -> None:
    served = origin.path
    poller, _ = follow(GitSource(file_url(origin), path="integrations"), tmp_path / "git")
    poller.poll()
    first = poller.link.resolve()
    moved = served.with_name("away")
    served.rename(moved)
    for attempt in (1, 2):
        report = poller.poll()
        assert report.result == "failed"
        assert poller.status().failures == attempt
        assert poller.link.resolve() == first
    assert poller.status().error is not None
    moved.rename(served)
    write_files(served, ("integrations/b.yaml", minimal("b")))
    head = GitRepo(served).commit_all("b")
    assert poller.poll().result == "changed"
    status = poller.status()
    assert (status.applied, status.failures, status.error) == (head, 0, None)


def test_checkouts_left_by_a_crash_are_removed_at_the_start(
    origin: GitRepo, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    poller, _ = follow(GitSource(file_url(origin)), root)
    poller.poll()
    current = poller.link.resolve()
    (root / "checkouts" / "0123-half-written").mkdir()
    (root / ".current-123").symlink_to("checkouts/0123-half-written")
    follow(GitSource(file_url(origin)), root)[0].prepare()
    assert [p for p in (root / "checkouts").iterdir()] == [current]
    assert not (root / ".current-123").is_symlink()
    assert Checkouts(root).current() is not None


def test_timing_defaults_follow_the_interval() -> None:
    assert PollTiming(interval=10).delay(0, 0.0) == 10


def test_https_with_a_token_and_the_operator_s_certificate_authority(
    origin: GitRepo, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    token_file = write_files(tmp_path / "creds", ("token", "https-token-0042")) / "token"
    with smart_http(origin.path.parent, token="https-token-0042", tls=context) as server:
        url = server.repo_url("origin")
        unknown, _ = follow(GitSource(url, token_file=token_file), tmp_path / "other")
        report = unknown.poll()
        assert report.result == "failed"
        assert report.error is not None and "certificate" in report.error
        source = GitSource(url, token_file=token_file, ca_file=ca_file, path="integrations")
        poller, _ = follow(source, tmp_path / "git")
        assert poller.poll().result == "changed"
    assert files_under(poller.link) == {"a.yaml": minimal("a")}


def test_git_protocol_is_taken_only_with_allow_http_git(origin: GitRepo, tmp_path: Path) -> None:
    with git_daemon(origin.path.parent) as base:
        with pytest.raises(GitSourceError, match="--allow-http-git"):
            GitSource(f"{base}/origin")
        poller, _ = follow(GitSource(f"{base}/origin", allow_http=True), tmp_path / "git")
        assert poller.poll().result == "changed"


def test_no_swap_happens_while_the_config_is_read(origin: GitRepo, tmp_path: Path) -> None:
    """A reader holding the poller sees one checkout whole and names it right."""
    poller, seen = follow(GitSource(file_url(origin), path="integrations"), tmp_path / "git")
    poller.poll()
    first = origin("rev-parse", "HEAD")
    write_files(origin.path, ("integrations/b.yaml", minimal("b")))
    second = origin.commit_all("b")
    polled = threading.Thread(target=poller.poll)
    with poller.holding():
        polled.start()
        assert not _happens(lambda: len(seen.checkouts) == 2, within=0.5)
        assert files_under(poller.link) == {"a.yaml": minimal("a")}
        assert poller.revision(poller.link, "f" * 64) == f"git:{first}"
    polled.join(10)
    assert poller.revision(poller.link, "f" * 64) == f"git:{second}"
    assert sorted(files_under(poller.link)) == ["a.yaml", "b.yaml"]


def test_a_command_reads_a_ref_once(origin: GitRepo, tmp_path: Path) -> None:
    checkout = fetch_once(GitSource(file_url(origin), path="integrations"), tmp_path / "once")
    assert isinstance(checkout, Checkout)
    assert files_under(checkout.directory) == {"a.yaml": minimal("a")}
    with pytest.raises(GitError, match="git fetch failed"):
        fetch_once(GitSource(f"file://{tmp_path}/nowhere"), tmp_path / "again")


def test_a_server_that_echoes_the_token_in_its_error_has_it_redacted(
    origin: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "echoed-token-9999"
    token_file = write_files(tmp_path / "creds", ("token", token)) / "token"
    caplog.set_level(logging.DEBUG)

    def echo(seen: Seen) -> bytes | None:
        return remote_error(f"your token {token} has expired")

    with smart_http(origin.path.parent, token=token, answer=echo) as server:
        source = GitSource(server.repo_url("origin"), token_file=token_file, allow_http=True)
        poller, _ = follow(source, tmp_path / "git")
        report = poller.poll()
    assert report.error == "git fetch failed: remote error: your token *** has expired"
    assert token not in repr(poller.status()) + caplog.text


def test_a_failing_hand_over_is_logged_and_the_checkout_stays(
    origin: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(checkout: Checkout) -> None:
        raise RuntimeError("the daemon's reconcile broke")

    poller = GitPoller(GitSource(file_url(origin)), tmp_path / "git", Hooks(broken))
    assert poller.poll().result == "changed"
    assert "handing over the checkout of" in caplog.text
    assert poller.status().applied == origin("rev-parse", "HEAD")
    assert poller.poll().result == "unchanged"
