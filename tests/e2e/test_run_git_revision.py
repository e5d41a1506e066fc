"""``syncd run`` and git: the revision of the checkout the operator chose, and no
command run from a repository planted above the config dir (CVE-2022-24765)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import make_repo
from tests.support.processes import Proc, spawn, wait_listening
from tests.support.waiting import wait_for

ENV = {"HIPCHAT_TOKEN": "git-test-token"}


def plant(shared: Path, marker: Path) -> Path:
    """Another user's repository with a clean filter, an fsmonitor and hooks that
    each write ``marker``; the config dir below its top."""
    repo = make_repo(shared)
    config = write_files(shared / "team" / "config", ("a.yaml", minimal("a")))
    write_files(shared, (".gitattributes", "* filter=evil\n"))
    repo.commit_all("planted")
    write = f"echo ran >> {marker}"
    repo("config", "filter.evil.clean", f"sh -c '{write}; cat'")
    repo("config", "core.fsmonitor", f"sh -c '{write}'")
    for hook in ("post-index-change", "reference-transaction"):
        (shared / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\n{write}\n")
        (shared / ".git" / "hooks" / hook).chmod(0o755)
    os.utime(config / "a.yaml", (1, 1))
    for where, dirs, files in os.walk(shared):
        for name in [where, *(os.path.join(where, n) for n in dirs + files)]:
            os.lchown(name, 4242, 4242)
    return config


def reconciled_again(proc: Proc) -> None:
    """SIGHUP: one more reconcile, which names its revision again."""
    before = proc.status()["reconcile_attempts"]
    proc.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: proc.status()["reconcile_attempts"] > before, what="the reload")


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's repository needs root")
def test_a_repository_planted_in_a_parent_directory_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    config = plant(tmp_path / "shared", marker)
    proc = wait_listening(spawn(config, tmp_path / "state", env=ENV))
    try:
        reconciled_again(proc)
        revision = proc.status()["applied_revision"]
        assert not marker.exists(), marker.read_text()
        assert revision.startswith("sha256:")
    finally:
        proc.stop()


def test_a_checkout_at_the_config_dir_is_named_by_its_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_files(repo.path, ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    proc = wait_listening(spawn(repo.path, tmp_path / "state", env=ENV))
    try:
        assert proc.status()["applied_revision"] == f"git:{commit}"
    finally:
        proc.stop()


def test_a_config_dir_below_the_checkout_named_with_git_dir(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_files(repo.path / "integrations", ("a.yaml", minimal("a")))
    commit = repo.commit_all("a")
    proc = wait_listening(spawn(config, tmp_path / "state", "--git-dir", str(repo.path), env=ENV))
    try:
        assert proc.status()["applied_revision"] == f"git:{commit}"
    finally:
        proc.stop()


def test_git_dir_must_be_a_checkout_holding_the_config_dir(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    elsewhere = make_repo(tmp_path / "elsewhere").path
    state = str(tmp_path / "state")
    plain = run_cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        state,
        "--git-dir",
        str(tmp_path),
        cwd=tmp_path,
        env=ENV,
    )
    assert (plain.returncode, plain.stderr) == (
        2,
        f"syncd run: error: --git-dir {tmp_path} is not the top of a git checkout "
        "(no .git in it)\n",
    )
    outside = run_cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        state,
        "--git-dir",
        str(elsewhere),
        cwd=tmp_path,
        env=ENV,
    )
    assert (outside.returncode, outside.stderr) == (
        2,
        f"syncd run: error: --config {config} is not inside --git-dir {elsewhere}\n",
    )
