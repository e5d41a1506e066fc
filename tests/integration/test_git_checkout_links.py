"""A new commit's checkout writes only the files that changed since the current
checkout, and hard-links the rest from it; the blobs it writes are asked of
git all at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.reconcile.gitpoller import Checkout, GitPoller, Hooks
from syncd.reconcile.gitsource import GitSource
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo

FILES = 300


def name(n: int) -> str:
    return f"integrations/int-{n:04}.yaml"


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "origin")
    write_files(repo.path, *((name(n), minimal(f"int-{n}")) for n in range(FILES)))
    write_files(repo.path, ("README.md", "not config"))
    repo.commit_all("first")
    return repo


def follow(origin: GitRepo, root: Path) -> tuple[GitPoller, list[Checkout]]:
    seen: list[Checkout] = []
    source = GitSource(f"file://{origin.path}", path="integrations")
    return GitPoller(source, root, Hooks(seen.append)), seen


def contents(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*.yaml")}


def expected(origin: GitRepo) -> dict[str, str]:
    return contents(origin.path / "integrations")


def test_a_one_file_push_writes_that_file_and_links_every_other(
    origin: GitRepo, tmp_path: Path
) -> None:
    poller, seen = follow(origin, tmp_path / "git")
    poller.poll()
    first = seen[-1]
    assert (first.written, first.linked) == (FILES, 0)
    write_files(origin.path, (name(7), minimal("int-7") + "    state: disabled\n"))
    origin.commit_all("one file")
    assert poller.poll().result == "changed"
    second = seen[-1]
    assert (second.written, second.linked) == (1, FILES - 1)
    assert contents(second.directory) == expected(origin)
    kept = os.stat(first.directory / "int-0008.yaml")
    assert os.stat(second.directory / "int-0008.yaml").st_ino == kept.st_ino
    assert os.stat(second.directory / "int-0007.yaml").st_ino != kept.st_ino


def test_files_added_removed_and_moved_between_directories(origin: GitRepo, tmp_path: Path) -> None:
    poller, seen = follow(origin, tmp_path / "git")
    poller.poll()
    write_files(origin.path, ("integrations/team/new.yaml", minimal("new")))
    (origin.path / name(1)).rename(origin.path / "integrations/team/int-0001.yaml")
    (origin.path / name(2)).unlink()
    origin.commit_all("moves")
    poller.poll()
    checkout = seen[-1]
    # A file moved has another path: it is written, not linked (the path is the key).
    assert (checkout.written, checkout.linked) == (2, FILES - 2)
    assert contents(checkout.directory) == expected(origin)


def test_a_link_that_fails_is_written_instead(origin: GitRepo, tmp_path: Path) -> None:
    poller, seen = follow(origin, tmp_path / "git")
    poller.poll()
    (seen[-1].directory / "int-0003.yaml").unlink()  # nothing to link from
    write_files(origin.path, (name(9), minimal("int-9") + "    state: disabled\n"))
    origin.commit_all("one file")
    poller.poll()
    checkout = seen[-1]
    assert (checkout.written, checkout.linked) == (2, FILES - 2)
    assert contents(checkout.directory) == expected(origin)


def test_after_a_restart_the_first_checkout_writes_every_file(
    origin: GitRepo, tmp_path: Path
) -> None:
    """A checkout left by another process may be short (written before a power
    cut) or of other flags: nothing is linked from it."""
    poller, _ = follow(origin, tmp_path / "git")
    poller.poll()
    again, seen = follow(origin, tmp_path / "git")
    again.poll()
    assert (seen[-1].written, seen[-1].linked) == (FILES, 0)


def test_many_blobs_larger_than_a_pipe_are_asked_at_once_and_copied_whole(
    tmp_path: Path,
) -> None:
    """All the requests are sent before the answers are read: neither side may
    block the other once both pipes are full."""
    repo = make_repo(tmp_path / "origin")
    padding = "".join(f"# {n:06}\n" for n in range(8000))  # 72 KiB: more than a pipe holds
    files = [(f"integrations/big-{n:03}.yaml", minimal(f"big-{n}") + padding) for n in range(40)]
    write_files(repo.path, *files)
    repo.commit_all("big")
    poller, seen = follow(repo, tmp_path / "git")
    assert poller.poll().result == "changed"
    assert contents(seen[-1].directory) == expected(repo)
