"""kill -9 while following a git remote: during a fetch, a checkout being written,
or the swap of the link.

A child process fetches two branches in turn, each holding its own few hundred
config files (and a large file that grows the fetches), so every round is a
fetch, a fresh checkout and a swap. It is
killed at a random moment, round after round. Each time, the ``current``
link names a checkout that is exactly one branch's files, never a mix or a
part; and a poller started afterwards on the same state (a restart) fetches
and checks out as if nothing happened: no lock or partial pack left blocks it.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from syncd.reconcile.gitcheckout import Checkouts
from syncd.reconcile.gitpoller import GitPoller, Hooks
from syncd.reconcile.gitsource import GitSource
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

SEED = 2525
FILES = 200
ROUNDS = 12

CHILD = textwrap.dedent(
    """
    import itertools, sys
    from pathlib import Path
    from syncd.reconcile.gitpoller import GitPoller, Hooks
    from syncd.reconcile.gitsource import GitSource

    url, root = sys.argv[1], Path(sys.argv[2])
    for n, ref in enumerate(itertools.cycle(["one", "two"])):
        poller = GitPoller(GitSource(url, ref=ref), root, Hooks(lambda c: None))
        report = poller.poll()
        print(n, ref, report.result, flush=True)
    """
)


def branches(repo: GitRepo) -> dict[str, dict[str, str]]:
    """Two branches, each with its own files: ref -> file name -> content."""
    contents: dict[str, dict[str, str]] = {}
    for ref in ("one", "two"):
        repo("checkout", "-q", "--orphan", ref)
        repo("rm", "-r", "-q", "-f", "--ignore-unmatch", ".")
        files = {f"{ref}/{n:03}.yaml": minimal(f"{ref}-{n}") for n in range(FILES)}
        write_files(repo.path, *files.items())
        repo.commit_all(ref)
        contents[ref] = files
    return contents


def grow(repo: GitRepo, rng: random.Random) -> None:
    """A new commit on each branch, with a large file that is no config: the next
    fetches have something to bring, and a kill may land in one."""
    for ref in ("one", "two"):
        repo("checkout", "-q", ref)
        (repo.path / "blob.bin").write_bytes(rng.randbytes(2 * 1024 * 1024))
        repo.commit_all("grow")


def served(link: Path) -> dict[str, str]:
    directory = link.resolve()
    return {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*.yaml")}


def test_a_kill_at_any_moment_leaves_a_complete_checkout(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    contents = branches(origin)
    url = f"file://{origin.path}"
    root = tmp_path / "state" / "git"
    rng = random.Random(SEED)
    swaps = 0
    for _ in range(ROUNDS):
        grow(origin, rng)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(root)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        # Let it run a round or two, then kill it somewhere in the next.
        for _ in range(rng.randint(0, 2)):
            child.stdout.readline()
        time.sleep(rng.uniform(0, 0.15))  # the moment of the kill, not a wait on anything
        child.kill()
        child.wait(10)
        if Checkouts(root).current() is not None:
            swaps += 1
            assert served(root / "current") in contents.values()
    assert swaps, "no round got as far as a swap"
    # A restart: the next poller fetches and checks out from the same state.
    poller = GitPoller(GitSource(url, ref="two"), root, Hooks(lambda c: None))
    poller.prepare()
    report = poller.poll()
    assert report.result == "changed", report.error
    assert served(poller.link) == contents["two"]
    wait_for(lambda: len(list((root / "checkouts").iterdir())) <= 2, timeout=5)
