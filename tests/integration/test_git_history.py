"""Force pushes, told from fast-forwards on the mirror's history; and signed
commits, checked against the keys the operator names (``--git-verify``)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from syncd.reconcile.gitpoller import Checkout, GitPoller, Hooks, Rejected
from syncd.reconcile.gitsource import GitSource, Verify
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo


class Told:
    def __init__(self) -> None:
        self.checkouts: list[Checkout] = []
        self.rejected: list[Rejected] = []


def follow(source: GitSource, root: Path) -> tuple[GitPoller, Told]:
    told = Told()
    hooks = Hooks(told.checkouts.append, told.rejected.append)
    return GitPoller(source, root, hooks), told


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "origin")
    for uid in ("a", "b"):
        write_files(repo.path, (f"{uid}.yaml", minimal(uid)))
        repo.commit_all(uid)
    return repo


def test_a_fast_forward_descends_from_the_applied_commit(origin: GitRepo, tmp_path: Path) -> None:
    poller, told = follow(GitSource(f"file://{origin.path}"), tmp_path / "git")
    poller.poll()
    for uid in ("c", "d"):
        write_files(origin.path, (f"{uid}.yaml", minimal(uid)))
        origin.commit_all(uid)
    assert poller.poll().result == "changed"
    assert [c.ancestry for c in told.checkouts] == ["first", "descends"]


def test_a_force_push_to_an_older_commit_is_followed_and_warned(
    origin: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    poller, told = follow(GitSource(f"file://{origin.path}"), tmp_path / "git")
    poller.poll()
    applied = origin("rev-parse", "HEAD")
    origin("reset", "-q", "--hard", "HEAD~1")
    older = origin("rev-parse", "HEAD")
    caplog.set_level(logging.WARNING, logger="syncd")
    assert poller.poll().result == "changed"
    assert told.checkouts[-1].ancestry == "rewrite"
    assert sorted(p.name for p in poller.link.iterdir()) == ["a.yaml"]
    assert (
        f"git: HEAD moved from {applied} to {older}, which does not descend from it "
        "(a force push); following it"
    ) in caplog.messages


def test_with_forbid_rewrites_a_force_push_is_rejected_and_the_checkout_stays(
    origin: GitRepo, tmp_path: Path
) -> None:
    source = GitSource(f"file://{origin.path}", ref="main", forbid_rewrites=True)
    poller, told = follow(source, tmp_path / "git")
    poller.poll()
    applied = origin("rev-parse", "HEAD")
    origin("checkout", "-q", "--orphan", "other")
    write_files(origin.path, ("z.yaml", minimal("z")))
    origin.commit_all("unrelated")
    origin("branch", "-f", "main", "other")
    rewritten = origin("rev-parse", "main")
    assert poller.poll().result == "rejected"
    [rejected] = told.rejected
    assert (rejected.kind, rejected.commit) == ("rewrite", rewritten)
    assert rejected.reason == (
        f"commit {rewritten} rejected: main moved from {applied} to {rewritten}, which "
        "does not descend from it (a force push); --git-forbid-rewrites is set"
    )
    assert poller.status().applied == applied
    assert sorted(p.name for p in poller.link.iterdir()) == ["a.yaml", "b.yaml"]


def test_history_over_the_size_limit_is_fetched_shallow_and_its_ancestry_unknown(
    origin: GitRepo, tmp_path: Path
) -> None:
    """A force push to a branch whose history is large: the fetch of the history is
    cut, the commit is fetched alone, and --git-forbid-rewrites refuses what it
    cannot show descends."""
    source = GitSource(f"file://{origin.path}", max_size=300_000, forbid_rewrites=True)
    poller, told = follow(source, tmp_path / "git")
    poller.poll()
    origin("checkout", "-q", "--orphan", "big")
    origin("rm", "-r", "-q", "-f", ".")
    for n in range(6):
        (origin.path / "blob.bin").write_bytes(os.urandom(100_000))
        write_files(origin.path, ("a.yaml", minimal("a")))
        origin.commit_all(f"big {n}")
    origin("branch", "-f", "main", "big")
    origin("checkout", "-q", "main")
    assert poller.poll().result == "rejected"
    assert "whether it descends from it is unknown" in told.rejected[-1].reason


# signed commits


def keygen(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def commit_signed(repo: GitRepo, uid: str, key: Path | None) -> str:
    write_files(repo.path, (f"{uid}.yaml", minimal(uid)))
    repo("add", "-A")
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}.pub"] if key else []
    repo(*signing, "commit", "-q", *(["-S"] if key else []), "-m", uid)
    return repo("rev-parse", "HEAD")


needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed"
)


@needs_ssh_keygen
def test_commits_must_be_signed_by_an_allowed_signer(origin: GitRepo, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    good, other = keygen(keys, "good"), keygen(keys, "other")
    allowed = (
        write_files(keys, ("allowed", f"ops@example.com {Path(f'{good}.pub').read_text()}"))
        / "allowed"
    )
    verify = Verify("allowed-signers", allowed)
    source = GitSource(f"file://{origin.path}", verify=verify)
    poller, told = follow(source, tmp_path / "git")

    signed = commit_signed(origin, "c", good)
    assert poller.poll().result == "changed"
    assert poller.status().applied == signed

    unsigned = commit_signed(origin, "d", None)
    assert poller.poll().result == "rejected"
    assert told.rejected[-1].reason == f"commit {unsigned} is not signed"

    wrong = commit_signed(origin, "e", other)
    assert poller.poll().result == "rejected"
    assert told.rejected[-1].kind == "unverified"
    assert told.rejected[-1].reason.startswith(f"commit {wrong} is signed by key SHA256:")
    assert told.rejected[-1].reason.endswith(
        f"which --git-verify allowed-signers {allowed} does not name"
    )
    assert poller.status().applied == signed
    assert not (poller.link / "e.yaml").exists()


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_commits_must_be_signed_by_a_key_of_the_keyring(origin: GitRepo, tmp_path: Path) -> None:
    gnupg = tmp_path / "signer-gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--pinentry-mode", "loopback"]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", "signer <s@example.com>", "ed25519"],
        check=True,
        capture_output=True,
    )
    keyring = tmp_path / "keyring.asc"
    keyring.write_bytes(
        subprocess.run([*gpg, "--export", "--armor"], check=True, capture_output=True).stdout
    )
    origin.env["GNUPGHOME"] = str(gnupg)
    try:
        origin(
            "-c",
            "user.signingkey=s@example.com",
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            "signed",
        )
        signed = origin("rev-parse", "HEAD")
        source = GitSource(f"file://{origin.path}", verify=Verify("gpg", keyring))
        poller, told = follow(source, tmp_path / "git")
        assert poller.poll().result == "changed"
        assert poller.status().applied == signed
        unsigned = commit_signed(origin, "c", None)
        assert poller.poll().result == "rejected"
        assert told.rejected[-1].reason == f"commit {unsigned} is not signed"
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)
