"""The revision a reconcile reports, read from a real git checkout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from syncd.reconcile.git import Revisions
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import make_repo

DIGEST = "0123456789abcdef" * 4


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own git calls, like the test repo's, ignore the user's git config."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def test_a_clean_checkout_is_its_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    assert Revisions().revision(repo.path / "integrations", DIGEST) == f"git:{commit}"


def test_a_config_dir_that_differs_from_its_commit_is_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    write_files(repo.path, ("README.md", "elsewhere in the repository"))
    commit = repo.commit_all("a")
    (repo.path / "README.md").write_text("an edit outside the config dir does not count")
    assert Revisions().revision(config, DIGEST) == f"git:{commit}"
    (config / "a.yaml").write_text(minimal("a") + "    state: stopped\n")
    assert Revisions().revision(config, DIGEST) == f"git:{commit}+dirty:0123456789abcdef"
    repo("checkout", "--", ".")
    write_files(config, ("b.yaml", minimal("b")))  # untracked, yet read
    assert Revisions().revision(config, DIGEST) == f"git:{commit}+dirty:0123456789abcdef"


def test_a_directory_outside_any_checkout_is_its_content_hash(tmp_path: Path) -> None:
    config = write_files(tmp_path / "plain", ("a.yaml", minimal("a")))
    assert Revisions().revision(config, DIGEST) == "sha256:0123456789abcdef"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the checkout to another user needs root")
def test_a_checkout_owned_by_another_user_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    for top, dirs, files in os.walk(repo.path):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            os.lchown(name, 4242, 4242)
    caplog.set_level(logging.WARNING, logger="syncd")
    assert Revisions().revision(config, DIGEST) == f"git:{commit}"
    assert caplog.records == []


def test_git_that_cannot_answer_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
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
