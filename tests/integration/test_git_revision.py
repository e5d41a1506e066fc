"""The revision a reconcile reports, read from a real git checkout; and the
checkouts git is never run in (CVE-2022-24765: a repository planted where the
daemon would find it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from syncd.reconcile.git import Revisions
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import make_repo

DIGEST = "0123456789abcdef" * 4
OTHER_UID = 4242
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a checkout to another user needs root"
)


def give_away(top: Path) -> None:
    """Everything under ``top`` now belongs to another user."""
    for where, dirs, files in os.walk(top):
        for name in [where, *(os.path.join(where, n) for n in dirs + files)]:
            os.lchown(name, OTHER_UID, OTHER_UID)


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own git calls, like the test repo's, ignore the user's git config."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def test_a_clean_checkout_is_its_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    assert Revisions().revision(repo.path, DIGEST) == f"git:{commit}"


def test_a_config_dir_below_the_top_is_read_when_the_operator_names_the_checkout(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    assert Revisions().revision(config, DIGEST) == "sha256:0123456789abcdef"
    assert Revisions(repo.path).revision(config, DIGEST) == f"git:{commit}"


def test_a_config_dir_that_differs_from_its_commit_is_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    write_files(repo.path, ("README.md", "elsewhere in the repository"))
    commit = repo.commit_all("a")
    revisions = Revisions(repo.path)
    (repo.path / "README.md").write_text("an edit outside the config dir does not count")
    assert revisions.revision(config, DIGEST) == f"git:{commit}"
    (config / "a.yaml").write_text(minimal("a") + "    state: stopped\n")
    assert revisions.revision(config, DIGEST) == f"git:{commit}+dirty:0123456789abcdef"
    repo("checkout", "--", ".")
    write_files(config, ("b.yaml", minimal("b")))  # untracked, yet read
    assert revisions.revision(config, DIGEST) == f"git:{commit}+dirty:0123456789abcdef"


def test_a_directory_outside_any_checkout_is_its_content_hash(tmp_path: Path) -> None:
    config = write_files(tmp_path / "plain", ("a.yaml", minimal("a")))
    assert Revisions().revision(config, DIGEST) == "sha256:0123456789abcdef"


@needs_root
def test_a_checkout_owned_by_another_user_is_read_only_when_the_operator_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """systemd's DynamicUser= runs the daemon as a user that owns nothing: the
    operator vouches for the checkout with --git-dir."""
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    give_away(repo.path)
    caplog.set_level(logging.WARNING, logger="syncd")
    assert Revisions().revision(repo.path, DIGEST) == "sha256:0123456789abcdef"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read the git revision of {repo.path} ({repo.path} belongs to uid "
        f"{OTHER_UID}, not to this daemon's user (uid 0); name the checkout with --git-dir "
        "to use it); revisions are content hashes"
    ]
    caplog.clear()
    assert Revisions(repo.path).revision(repo.path, DIGEST) == f"git:{commit}"
    assert caplog.records == []


def test_git_that_cannot_answer_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path, ("a.yaml", minimal("a")))
    repo.commit_all("a")
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    caplog.set_level(logging.WARNING, logger="syncd")
    revisions = Revisions()
    assert revisions.revision(config, DIGEST) == "sha256:0123456789abcdef"
    assert revisions.revision(config, DIGEST) == "sha256:0123456789abcdef"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read the git revision of {config} (git is not installed); "
        "revisions are content hashes"
    ]


def plant(shared: Path, marker: Path) -> Path:
    """A repository whose config runs a command on ``git status`` (a clean filter
    on every file, an fsmonitor) and on an index write (a hook), each appending to
    ``marker``; the config dir below its top, with a committed file that ``git
    status`` must hash again (its mtime moved), so a clean filter would run."""
    repo = make_repo(shared)
    config = write_files(shared / "team" / "config", ("a.yaml", minimal("a")))
    write_files(shared, (".gitattributes", "* filter=evil diff=evil\n"))
    repo.commit_all("planted")
    write = f"echo ran >> {marker}"
    repo("config", "filter.evil.clean", f"sh -c '{write}; cat'")
    repo("config", "core.fsmonitor", f"sh -c '{write}'")
    repo("config", "diff.evil.textconv", f"sh -c '{write}; cat'")
    hooks = shared / ".git" / "hooks"
    for hook in ("post-index-change", "reference-transaction", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\n{write}\n")
        (hooks / hook).chmod(0o755)
    os.utime(config / "a.yaml", (1, 1))
    return config


@needs_root
def test_a_repository_planted_in_a_parent_directory_is_never_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another user's repository above the config dir: git is not even asked."""
    marker = tmp_path / "marker"
    config = plant(tmp_path / "shared", marker)
    give_away(tmp_path / "shared")
    caplog.set_level(logging.WARNING, logger="syncd")
    revision = Revisions().revision(config, DIGEST)
    assert not marker.exists()
    assert revision == "sha256:0123456789abcdef"
    assert caplog.records == []  # nothing to say: the config dir is not a checkout


def test_a_repository_whose_config_runs_commands_is_refused_even_when_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "marker"
    config = plant(tmp_path / "shared", marker)
    caplog.set_level(logging.WARNING, logger="syncd")
    revision = Revisions(tmp_path / "shared").revision(config, DIGEST)
    assert not marker.exists()
    assert revision == "sha256:0123456789abcdef"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read the git revision of {config} (its config sets core.fsmonitor, "
        "diff.evil.textconv, filter.evil.clean, which can run a command; syncd does not "
        "run git in such a repository); revisions are content hashes"
    ]


def test_hooks_never_run_in_a_checkout_that_is_read(tmp_path: Path) -> None:
    """A checkout of the daemon's own user at the config dir: read, with its hooks off."""
    marker = tmp_path / "marker"
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    for hook in ("post-index-change", "reference-transaction"):
        path = repo.path / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
        path.chmod(0o755)
    os.utime(repo.path / "a.yaml", (1, 1))  # makes git status refresh the index
    revision = Revisions().revision(repo.path, DIGEST)
    assert not marker.exists()
    assert revision == f"git:{commit}"


def test_an_include_of_another_config_file_is_refused(tmp_path: Path) -> None:
    """An included file could gain a filter between the check and git's own read."""
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    repo.commit_all("a")
    (tmp_path / "extra.gitconfig").write_text("[user]\n\tname = x\n")
    repo("config", "include.path", str(tmp_path / "extra.gitconfig"))
    assert Revisions().revision(repo.path, DIGEST) == "sha256:0123456789abcdef"


def test_git_variables_of_the_daemon_s_environment_do_not_redirect_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    other = make_repo(tmp_path / "other")
    write_files(other.path, ("b.yaml", minimal("b")))
    other.commit_all("b")
    monkeypatch.setenv("GIT_DIR", str(other.path / ".git"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {tmp_path / 'marker'}")
    revision = Revisions().revision(repo.path, DIGEST)
    assert not (tmp_path / "marker").exists()
    assert revision == f"git:{commit}"
