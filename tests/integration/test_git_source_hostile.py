"""A fetched repository is written by whoever can push to it: what it holds must
never run a command, write outside the checkout, or fill the disk. Each trap
sets a marker file if it fires; a control shows that plain git springs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from syncd.reconcile.gitpoller import GitPoller, Hooks
from syncd.reconcile.gitsource import GitSource
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo


def follow(source: GitSource, root: Path) -> tuple[GitPoller, list[object]]:
    told: list[object] = []
    return GitPoller(source, root, Hooks(told.append, told.append)), told


def commit_tree(repo: GitRepo, entries: list[tuple[str, str, str]]) -> str:
    """Commit a tree made of raw ``(mode, object, name)`` entries, which may name
    what no checkout would write (``..``, ``.git``); returns the commit."""
    listing = "".join(
        f"{mode} {'tree' if mode == '040000' else 'blob'} {oid}\t{name}\n"
        for mode, oid, name in entries
    )
    tree = _git_input(repo, listing, "mktree")
    commit = repo("commit-tree", "-m", "crafted", tree)
    repo("update-ref", "refs/heads/main", commit)
    return commit


def blob(repo: GitRepo, content: str) -> str:
    return _git_input(repo, content, "hash-object", "-w", "--stdin")


def _git_input(repo: GitRepo, text: str, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo.path,
        env=repo.env,
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "served" / "origin")


def test_a_symlink_with_a_config_name_refuses_the_commit(origin: GitRepo, tmp_path: Path) -> None:
    write_files(origin.path, ("config/a.yaml", minimal("a")))
    os.symlink("/etc/passwd", origin.path / "config" / "passwd.yaml")
    head = origin.commit_all("a link")
    poller, told = follow(GitSource(f"file://{origin.path}", path="config"), tmp_path / "git")
    assert poller.poll().result == "rejected"
    [rejected] = told
    assert rejected.reason == (  # type: ignore[attr-defined]
        f"commit {head} rejected: passwd.yaml is a symlink; syncd reads only regular files from git"
    )
    assert not poller.link.exists()
    assert list((tmp_path / "git").glob("checkouts/*")) == []  # nothing written


def test_other_symlinks_are_not_written_and_never_followed(origin: GitRepo, tmp_path: Path) -> None:
    write_files(origin.path, ("config/a.yaml", minimal("a")))
    os.symlink("/etc/passwd", origin.path / "config" / "passwd")
    os.symlink("/etc", origin.path / "config" / "etc")
    origin.commit_all("links")
    poller, _ = follow(GitSource(f"file://{origin.path}", path="config"), tmp_path / "git")
    assert poller.poll().result == "changed"
    written = sorted(p.name for p in poller.link.resolve().rglob("*"))
    assert written == ["a.yaml"]


def test_names_git_would_never_check_out_are_refused_or_passed_over(
    origin: GitRepo, tmp_path: Path
) -> None:
    """A crafted tree: ``.git/config`` that would make any git run in the checkout
    start an fsmonitor, and, in a second commit, a directory named ``..``."""
    marker = tmp_path / "marker"
    evil_config = blob(origin, f"[core]\n\tfsmonitor = touch {marker}\n")
    git_dir = _git_input(origin, f"100644 blob {evil_config}\tconfig\n", "mktree")
    yaml = blob(origin, minimal("a"))
    commit_tree(origin, [("040000", git_dir, ".git"), ("100644", yaml, "a.yaml")])
    poller, told = follow(GitSource(f"file://{origin.path}"), tmp_path / "git")
    assert poller.poll().result == "changed"
    assert sorted(p.name for p in poller.link.resolve().iterdir()) == ["a.yaml"]

    up = _git_input(origin, f"100644 blob {yaml}\tescaped.yaml\n", "mktree")
    commit = commit_tree(origin, [("040000", up, ".."), ("100644", yaml, "a.yaml")])
    assert poller.poll().result == "rejected"
    assert told[-1].reason == (  # type: ignore[attr-defined]
        f"commit {commit} rejected: ../escaped.yaml: not a path a checkout can hold"
    )
    assert not (tmp_path / "escaped.yaml").exists()
    assert not marker.exists()


def hostile_git_config(tmp_path: Path, marker: Path) -> dict[str, str]:
    """The environment of a daemon whose user's and system's git config would run a
    command on a fetch or a checkout: hooks, a smudge filter, an fsmonitor, a
    credential helper, all appending to ``marker``."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("reference-transaction", "post-checkout", "post-merge", "pre-auto-gc"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
        hook.chmod(0o755)
    config = tmp_path / "hostile.gitconfig"
    config.write_text(
        f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = echo fsmonitor >> {marker}\n"
        f'[filter "evil"]\n\tsmudge = sh -c "echo smudge >> {marker}; cat"\n'
        f"\tprocess = sh -c 'echo process >> {marker}'\n\trequired = true\n"
        f"[credential]\n\thelper = !echo helper >> {marker}\n"
        f"[protocol]\n\tallow = always\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(config.read_text())
    return {
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_CONFIG_SYSTEM": str(config),
        "GIT_CONFIG_NOSYSTEM": "0",
    }


def test_hooks_filters_and_fsmonitor_never_run(
    origin: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_files(
        origin.path,
        ("config/a.yaml", minimal("a")),
        (".gitattributes", "* filter=evil\n"),
        ("config/.gitattributes", "* filter=evil\n"),
    )
    origin.commit_all("filtered")
    marker = tmp_path / "marker"
    hostile = hostile_git_config(tmp_path, marker)
    # The control: plain git under this environment springs the traps.
    subprocess.run(
        ["git", "clone", "-q", str(origin.path), str(tmp_path / "control")],
        env={**os.environ, **hostile},
        capture_output=True,
        check=False,
    )
    assert marker.exists()
    marker.unlink()

    for name, value in hostile.items():
        monkeypatch.setenv(name, value)
    poller, _ = follow(GitSource(f"file://{origin.path}", path="config"), tmp_path / "git")
    assert poller.poll().result == "changed"
    write_files(origin.path, ("config/b.yaml", minimal("b")))
    origin.commit_all("b")
    assert poller.poll().result == "changed"
    assert (poller.link / "b.yaml").read_text() == minimal("b")  # not smudged
    assert not marker.exists()


def test_a_checkout_over_the_size_limit_is_refused_before_it_is_written(
    origin: GitRepo, tmp_path: Path
) -> None:
    write_files(origin.path, ("a.yaml", minimal("a")), ("big.yaml", "# " + "x" * 5000 + "\n"))
    head = origin.commit_all("big")
    source = GitSource(f"file://{origin.path}", max_size=4000)
    poller, told = follow(source, tmp_path / "git")
    assert poller.poll().result == "rejected"
    assert told[-1].reason == (  # type: ignore[attr-defined]
        f"commit {head} rejected: its config under --git-path is over --git-max-size (4000 bytes)"
    )
    assert list((tmp_path / "git").glob("checkouts/*")) == []  # nothing written


def test_what_a_fetch_killed_mid_way_leaves_in_the_packs_is_removed(
    origin: GitRepo, tmp_path: Path
) -> None:
    """Killed between its steps, a fetch leaves a pack whose index never came (git
    ignores it, gc never removes it) or its ``.keep`` (a kept pack is never
    pruned): either would keep a cut fetch's bytes for good. The mirror's own
    packs stay, and it still fetches."""
    write_files(origin.path, ("config/a.yaml", minimal("a")))
    origin.commit_all("a")
    poller, _ = follow(GitSource(f"file://{origin.path}", path="config"), tmp_path / "git")
    assert poller.poll().result == "changed"
    mirror = poller.mirror
    mirror.repo.run("repack", "-a", "-d", "-q", timeout=30)
    packs = mirror.git_dir / "objects" / "pack"
    (kept,) = packs.glob("pack-*.pack")
    own = sorted(p.name for p in packs.iterdir())
    orphan = packs / ("pack-" + "0" * 40 + ".pack")
    orphan.write_bytes(kept.read_bytes())
    keep = kept.with_suffix(".keep")
    keep.write_text("fetch-pack 1234 on host\n")
    partial = packs / "tmp_pack_XyZ123"
    partial.write_bytes(b"PACK")
    mirror.clear_leftovers()
    assert sorted(p.name for p in packs.iterdir()) == own
    mirror.repo.run("fsck", "--no-progress", timeout=30)
    write_files(origin.path, ("config/b.yaml", minimal("b")))
    origin.commit_all("b")
    assert poller.poll().result == "changed"


def test_a_fetch_that_brings_more_than_the_limit_is_cut_and_leaves_nothing(
    origin: GitRepo, tmp_path: Path
) -> None:
    """A large file outside --git-path: the checkout would be small, but the fetch
    brings it; the packs it left are removed, so every try is judged the same."""
    write_files(origin.path, ("config/a.yaml", minimal("a")))
    (origin.path / "video.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    origin.commit_all("large")
    root = tmp_path / "git"
    source = GitSource(f"file://{origin.path}", path="config", max_size=1024 * 1024)
    poller, _ = follow(source, root)
    for _ in range(2):
        report = poller.poll()
        assert report.result == "failed"
        assert report.error == (
            "git fetch cut: it brought more than --git-max-size (1048576 bytes) of packs"
        )
        packs = root / "mirror" / "objects" / "pack"
        assert sum(p.stat().st_size for p in packs.iterdir()) < 1024 * 1024
    assert not poller.link.exists()
