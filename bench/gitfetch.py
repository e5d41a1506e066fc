"""Fetch-to-applied latency of ``syncd run --git``: a commit pushed to a real
remote until the daemon serves it, told by a webhook and by its interval.

Run: python bench/gitfetch.py [--sizes 100,10000] [--rounds 5] [--interval 2]
                              [--remote file|http] [--quick]

For each size, a repository of that many one-integration files under
``integrations/`` (bench/corpus.py's shape), pushed to a bare remote served as
``file://`` or by ``git http-backend`` behind the tests' loopback HTTP server
(``--remote http``, with a token through ``--git-token-file``). Then a real
``syncd run --git`` (a fresh state dir, so the first fetch is a whole one):

- first fetch: the daemon's start until it logs the first commit applied;
- webhook: one file edited, committed and pushed, then a signed GitHub push
  delivery posted to ``/v1/hooks/git``, until the daemon logs the new commit
  applied (``--rounds`` rounds, the median and the worst); the clock starts
  at the delivery, as the goal (applied within 1 s of the webhook) reads. The
  part until the new checkout is swapped in (the fetch and the checkout) is
  shown too; the rest is the reconcile;
- interval: another daemon, ``--git-interval`` seconds and no webhook; the
  clock starts at the push, so a round waits on average half an interval (plus
  jitter) before the fetch even starts; the bound is the interval, its 10 %
  jitter, and the fetch-to-applied time. Each push waits a random part of an
  interval first, so pushes land anywhere in it, as real ones do.

Rounds start once the daemon has done what follows its start: the first
commit applied and its last-known-good copy saved (at 10,000 files a save of
every file, which takes seconds and shares the CPU with anything else), as
for a daemon that has run a while.

``--quick``: 100 files, 3 rounds each (well under a minute). The daemons run
with ``--reconcile-timeout 600``: on a loaded machine a first load of 10,000
files may take longer than the default budget, which would reject it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from corpus import INTEGRATION  # noqa: E402
from host import machine  # noqa: E402

from tests.support.gitrepo import GIT_ENV, GitRepo, make_repo  # noqa: E402
from tests.support.gitserver import smart_http  # noqa: E402

SECRET = "bench-webhook-secret"
TOKEN = "bench-git-token-9f3a"
ENDPOINT = "https://hipchat.example.com"


def integration_file(index: int, state: str = "enabled") -> str:
    uid = f"int-{index:05d}"
    body = INTEGRATION.format(uid=uid, project=index % 50, state=state, room=1000 + index)
    return "version: 1\nintegrations:\n" + body


def make_remote(top: Path, size: int) -> tuple[GitRepo, Path]:
    work = make_repo(top / "work")
    folder = work.path / "integrations"
    folder.mkdir()
    for index in range(size):
        (folder / f"int-{index:05d}.yaml").write_text(integration_file(index))
    work.commit_all(f"{size} integrations")
    bare = top / "served" / "origin.git"
    bare.parent.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(bare)],
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return work, bare


def push_edit(work: GitRepo, bare: Path, round_no: int) -> str:
    """One file changed (its integration disabled or enabled again), pushed."""
    state = "disabled" if round_no % 2 == 0 else "enabled"
    (work.path / "integrations" / "int-00000.yaml").write_text(integration_file(0, state))
    sha = work.commit_all(f"round {round_no}")
    work("push", "-q", str(bare), "main")
    return sha


class Daemon:
    """A ``syncd run --git``; each ``applied git:<sha>`` line it logs is noted with
    the time it was read."""

    def __init__(self, url: str, state: Path, extra: list[str]) -> None:
        self.applied: dict[str, float] = {}
        self.swapped: dict[str, float] = {}
        self.lines: list[str] = []
        self.url = ""
        self._cond = threading.Condition()
        self.started = time.monotonic()
        self.state = state
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd",
                "run",
                "--git",
                url,
                "--git-path",
                "integrations",
                "--state-dir",
                str(state),
                "--listen",
                "127.0.0.1:0",
                "--allow-endpoint",
                ENDPOINT,
                "--reconcile-timeout",
                "600",
                *extra,
            ],
            env={**os.environ, "HIPCHAT_BENCH_TOKEN": "bench-room-token"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            now = time.monotonic()
            with self._cond:
                self.lines.append(line)
                if "answering /healthz on " in line:
                    self.url = line.split("answering /healthz on ")[1].split(";")[0].strip()
                if "applied git:" in line:
                    sha = line.split("applied git:")[1][:40]
                    self.applied.setdefault(sha, now)
                if "; checked out" in line and " is at " in line:
                    sha = line.split(" is at ")[1][:40]
                    self.swapped.setdefault(sha, now)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_saved(self, sha: str, timeout: float) -> None:
        """Until the last-known-good copy names ``sha``: the start-up work done."""
        manifest = self.state / "last-known-good" / "manifest"
        deadline = time.monotonic() + timeout
        while f'"revision":"git:{sha}"' not in _text(manifest):
            if time.monotonic() > deadline or self.popen.poll() is not None:
                raise RuntimeError(f"{sha} not saved; log:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)

    def wait_applied(self, sha: str, timeout: float) -> float:
        """The time the daemon logged ``sha`` applied."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sha not in self.applied:
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    raise RuntimeError(f"{sha} not applied; log:\n" + "".join(self.lines[-20:]))
                self._cond.wait(left)
            return self.applied[sha]

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def github_push(url: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "repository": {"default_branch": "main"}})
    signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    answer = requests.post(
        url + "/v1/hooks/git",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": f"sha256={signature}",
        },
        timeout=10,
    )
    answer.raise_for_status()


@contextlib.contextmanager
def served(kind: str, bare: Path, top: Path) -> Iterator[tuple[str, list[str]]]:
    """The remote's URL and the daemon's flags to reach it."""
    if kind == "file":
        yield bare.as_uri(), []
        return
    token_file = top / "git-token"
    token_file.write_text(TOKEN + "\n")
    with smart_http(bare.parent, token=TOKEN) as server:
        flags = ["--allow-http-git", "--git-token-file", str(token_file)]
        yield server.repo_url(bare.name), flags


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.0f} ms, worst {max(values) * 1000:7.0f} ms"


def measure(size: int, args: argparse.Namespace) -> dict[str, object]:
    top = Path(tempfile.mkdtemp(prefix="syncd-bench-git-"))
    try:
        made = time.monotonic()
        work, bare = make_remote(top, size)
        setup = time.monotonic() - made
        secret = top / "webhook-secret"
        secret.write_text(SECRET + "\n")
        with served(args.remote, bare, top) as (url, flags):
            first = work("rev-parse", "HEAD")
            hook = Daemon(
                url,
                top / "state-hook",
                [*flags, "--git-interval", "3600", "--git-webhook-secret-file", str(secret)],
            )
            try:
                start = hook.wait_applied(first, 600) - hook.started
                hook.wait_saved(first, 600)
                webhook, swap = [], []
                for round_no in range(args.rounds):
                    sha = push_edit(work, bare, round_no)
                    sent = time.monotonic()
                    github_push(hook.url)
                    webhook.append(hook.wait_applied(sha, 120) - sent)
                    swap.append(hook.swapped[sha] - sent)
            finally:
                hook.stop()
            head = work("rev-parse", "HEAD")
            interval_daemon = Daemon(
                url, top / "state-interval", [*flags, "--git-interval", str(args.interval)]
            )
            try:
                interval_daemon.wait_applied(head, 600)
                interval_daemon.wait_saved(head, 600)
                interval = []
                for round_no in range(args.rounds):
                    # Pushes land anywhere in the interval, as real ones do.
                    time.sleep(random.uniform(0, args.interval))
                    sha = push_edit(work, bare, round_no + args.rounds)
                    pushed = time.monotonic()
                    interval.append(interval_daemon.wait_applied(sha, 120) - pushed)
            finally:
                interval_daemon.stop()
        size_kib = sum(p.stat().st_size for p in (work.path / "integrations").iterdir()) / 1024
        return {
            "size": size,
            "setup": setup,
            "kib": size_kib,
            "start": start,
            "webhook": webhook,
            "swap": swap,
            "interval": interval,
        }
    finally:
        shutil.rmtree(top, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--remote", choices=["file", "http"], default="file")
    parser.add_argument("--quick", action="store_true", help="100 files, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = "100", 3
    print(f"machine: {machine()}")
    version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    print(f"git: {version.strip()}")
    remote = "file://" if args.remote == "file" else "git http-backend over loopback HTTP, token"
    print(
        f"remote: {remote}; {args.rounds} rounds; one file of N edited per round; "
        f"interval daemon: --git-interval {args.interval:g} (jitter up to 10 %)"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        result = measure(size, args)
        print(
            f"\n{size:,} files ({result['kib']:,.0f} KiB of YAML; "
            f"repository made in {result['setup']:.1f} s)"
        )
        print(f"  start to first commit applied (whole fetch):  {result['start']:.2f} s")
        print(f"  webhook delivery to applied:  {summary(result['webhook'])}")  # type: ignore[arg-type]
        print(f"    of which until swapped in:  {summary(result['swap'])}")  # type: ignore[arg-type]
        print(f"  push to applied by interval:  {summary(result['interval'])}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
