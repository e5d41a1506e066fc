"""``syncd validate --git`` and ``syncd plan --git``: a CI job checks a branch of a
real remote without a checkout of its own; what it prints names the files as
the repository does, and the token never shows."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.gitserver import smart_http

POLICY = ("--allow-any-endpoint",)
BROKEN = "version: 1\nintegrations:\n  - uid: broken\n    project: [not, a, string]\n"


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "served" / "origin")
    write_files(repo.path, ("integrations/a.yaml", minimal("a")), ("README", "not config\n"))
    repo.commit_all("first")
    return repo


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory the commands fetch into; empty again after each."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    assert list(path.iterdir()) == []


def test_validate_a_branch_names_the_files_as_the_repository_does(
    origin: GitRepo, tmp_path: Path, temp: Path
) -> None:
    origin("checkout", "-q", "-b", "feature")
    write_files(origin.path, ("integrations/b.yaml", BROKEN))
    bad = origin.commit_all("broken")
    origin("checkout", "-q", "main")
    url = origin.path.as_uri()
    result = run_cli(
        "validate", "--git", url, "--git-ref", "feature", "--git-path", "integrations",
        *POLICY, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "integrations/b.yaml:4:14: error: $.integrations[0].project" in result.stdout
    assert str(temp) not in result.stdout + result.stderr
    assert f"feature of {url} at {bad}" in result.stderr
    good = run_cli("validate", "--git", url, "--git-path", "integrations", *POLICY, cwd=tmp_path)
    assert good.returncode == EXIT_OK, good.stdout + good.stderr
    assert "1 file checked" in good.stderr


def test_validate_in_the_github_format_annotates_the_repository_s_file(
    origin: GitRepo, tmp_path: Path, temp: Path
) -> None:
    write_files(origin.path, ("integrations/b.yaml", BROKEN))
    origin.commit_all("broken")
    result = run_cli(
        "validate", "--git", origin.path.as_uri(), "--git-path", "integrations",
        "--format", "github", *POLICY, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED
    assert "::error file=integrations/b.yaml,line=4,col=14::" in result.stdout


def test_a_commit_git_would_not_apply_fails_validation_with_the_reason(
    origin: GitRepo, tmp_path: Path, temp: Path
) -> None:
    os.symlink("/etc/passwd", origin.path / "integrations" / "passwd.yaml")
    head = origin.commit_all("a link")
    result = run_cli(
        "validate", "--git", origin.path.as_uri(), "--git-path", "integrations", *POLICY,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED
    assert f"commit {head} rejected: passwd.yaml is a symlink" in result.stderr
    assert "root:" not in result.stdout + result.stderr


def test_plan_a_ref_over_http_with_a_token_never_shows_the_token(
    origin: GitRepo, tmp_path: Path, temp: Path
) -> None:
    token = "plan-token-5f1e9a"
    token_file = write_files(tmp_path / "creds", ("token", token + "\n")) / "token"
    with smart_http(origin.path.parent, token=token) as server:
        url = server.repo_url("origin")
        result = run_cli(
            "plan", "--git", url, "--git-path", "integrations", "--allow-http-git",
            "--git-token-file", str(token_file), *POLICY, cwd=tmp_path,
        )  # fmt: skip
        wrong = write_files(tmp_path / "creds", ("wrong", "wrong-token-77aa\n")) / "wrong"
        refused = run_cli(
            "plan", "--git", url, "--allow-http-git", "--git-token-file", str(wrong),
            *POLICY, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == EXIT_FAILED, result.stderr  # 1: something would change
    assert "create" in result.stdout and "(integrations/a.yaml:" in result.stdout
    assert str(temp) not in result.stdout + result.stderr
    assert any(s.authorization for s in server.seen)
    assert refused.returncode == EXIT_USAGE
    assert "could not fetch HEAD of" in refused.stderr
    assert "Traceback" not in refused.stderr
    for text in (result.stdout, result.stderr, refused.stdout, refused.stderr):
        assert token not in text and "wrong-token-77aa" not in text


def test_plan_of_an_invalid_ref_prints_the_repository_s_names(
    origin: GitRepo, tmp_path: Path, temp: Path
) -> None:
    write_files(origin.path, ("integrations/b.yaml", BROKEN))
    origin.commit_all("broken")
    result = run_cli(
        "plan", "--git", origin.path.as_uri(), "--git-path", "integrations", *POLICY,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE
    assert "integrations/b.yaml:4:14: error" in result.stdout
    assert "the config is invalid" in result.stderr


def test_git_flags_of_the_commands_are_checked(origin: GitRepo, tmp_path: Path) -> None:
    url = origin.path.as_uri()
    both = run_cli("validate", "--git", url, "some/dir", cwd=tmp_path)
    assert both.returncode == EXIT_USAGE and "--git-path" in both.stderr
    config = run_cli("plan", "--git", url, "--config", str(tmp_path), cwd=tmp_path)
    assert config.returncode == EXIT_USAGE and "not allowed with argument" in config.stderr
    userinfo = run_cli("validate", "--git", "https://u:pw-9d@example.com/x.git", cwd=tmp_path)
    assert userinfo.returncode == EXIT_USAGE and "--git-token-file" in userinfo.stderr
    assert "pw-9d" not in userinfo.stderr
    missing = run_cli("validate", "--git", (tmp_path / "nowhere.git").as_uri(), cwd=tmp_path)
    assert missing.returncode == EXIT_USAGE and "could not fetch" in missing.stderr
    assert "Traceback" not in missing.stderr
