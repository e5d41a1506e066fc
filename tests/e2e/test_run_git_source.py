"""``syncd run --git``: a real daemon following a real git remote, told of pushes
by a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests

from syncd.errors import EXIT_USAGE
from syncd.testing.hipchat_server import HipChatServer
from tests.support.configs import trace_config
from tests.support.events import numbered_events
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.processes import FAST_RETRY, TEST_POLICY, Proc, collect, terminate
from tests.support.waiting import wait_for

TOKENS = {"4001": "git-source-token-4001"}
ENV = {"HIPCHAT_TOKEN_4001": TOKENS["4001"]}
SECRET = "webhook-secret-3b8e"
BROKEN = "version: 1\nintegrations:\n  - uid: shop-trace\n    project: [not, a, string]\n"


@dataclass
class Remote:
    work: GitRepo
    bare: Path

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def push(self, name: str, text: str, message: str) -> str:
        (self.work.path / name).write_text(text)
        sha = self.work.commit_all(message)
        self.work("push", "-q", str(self.bare), "main")
        return sha


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def remote(tmp_path: Path, hipchat: HipChatServer) -> Remote:
    work = make_repo(tmp_path / "work")
    (work.path / "shop.yaml").write_text(trace_config(hipchat.url, list(TOKENS)))
    work.commit_all("first")
    bare = tmp_path / "remote.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True, env=work.env
    )
    return Remote(work, bare)


def run_git(state: Path, url: str, *extra: str) -> Proc:
    """``syncd run --git URL`` on a free port; waits until it answers /healthz."""
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd",
            "run",
            "--git",
            url,
            "--state-dir",
            str(state),
            "--listen",
            "127.0.0.1:0",
            *TEST_POLICY,
            *FAST_RETRY,
            *extra,
        ],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = collect(popen)

    def answering() -> bool:
        match = re.search(r"answering /healthz on (http://\S+);", proc.log)
        if match:
            proc.url = match.group(1)
        return bool(match) or popen.poll() is not None

    wait_for(answering, timeout=20, what="the daemon to answer /healthz")
    assert proc.url, proc.log
    return proc


def applied(proc: Proc, sha: str) -> bool:
    return bool(proc.status()["applied_revision"] == f"git:{sha}")


def github_push(url: str, secret: str, ref: str = "refs/heads/main") -> requests.Response:
    body = json.dumps({"ref": ref, "repository": {"default_branch": "main"}}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(
        url + "/v1/hooks/git",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": f"sha256={signature}",
        },
        timeout=10,
    )


def _secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_text(SECRET + "\n")
    return path


def fetches_counted(proc: Proc, result: str, count: int) -> bool:
    metrics = requests.get(proc.url + "/metrics", timeout=5).text
    return f'syncd_git_fetch_total{{result="{result}"}} {count:.1f}' in metrics


def logged_at(proc: Proc, said: str) -> float:
    """When the daemon logged the first line holding ``said``, by its own clock
    (the text log's timestamp, to the millisecond)."""
    line = next(line for line in proc.log.splitlines() if said in line)
    return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()


@pytest.mark.slow
def test_a_pushed_commit_is_applied_within_a_second_of_the_webhook(
    tmp_path: Path, remote: Remote, hipchat: HipChatServer
) -> None:
    """Timed by the daemon's own log, from the webhook taken (its line is written
    as the fetch is asked for) to the set applied: the fetch, the checkout and the
    reconcile, and nothing of the push, the start or this test's polling. The
    first fetch has ended (counted) before the push, so the poller is idle."""
    first = remote.work("rev-parse", "HEAD")
    hook = ("--git-webhook-secret-file", str(_secret_file(tmp_path)))
    proc = run_git(tmp_path / "state", remote.url, "--git-interval", "3600", *hook)
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        assert proc.post_events(numbered_events(0, 1)).status_code == 202
        hipchat.wait_for_messages(1, room="4001", timeout=20)
        wait_for(lambda: fetches_counted(proc, "changed", 1), timeout=10, what="fetch 1 ended")
        second = remote.push(
            "more.yaml",
            trace_config(hipchat.url, TOKENS, uid="shop-two").replace("every", "all"),
            "second",
        )
        answer = github_push(proc.url, SECRET)
        assert answer.status_code == 202, answer.text
        wait_for(lambda: applied(proc, second), timeout=10, what="the pushed commit applied")
        wait_for(lambda: f"applied git:{second}" in proc.log, timeout=5, what="applied, logged")
        took = logged_at(proc, f"applied git:{second}") - logged_at(proc, "git webhook: github")
        print(f"webhook to applied: {took:.3f} s")
        assert 0 <= took < 1.0, took
        status = proc.status()
        assert set(status["integrations"]) == {"shop-trace", "shop-two"}
        assert status["git"]["applied"] == second
        assert status["git"]["fetched"] == second

        # The fetch is counted when it ends, after the hand-over (the old checkout
        # pruned, the mirror kept): maybe a moment after the set is applied.
        wait_for(lambda: fetches_counted(proc, "changed", 2), timeout=5, what="fetch 2 counted")
        metrics = requests.get(proc.url + "/metrics", timeout=5).text
        assert "syncd_git_last_fetch_success_timestamp_seconds 1.7" in metrics
    finally:
        terminate(proc)
    assert SECRET not in proc.log


@pytest.mark.slow
def test_an_invalid_commit_is_rejected_and_the_set_in_use_stays(
    tmp_path: Path, remote: Remote
) -> None:
    first = remote.work("rev-parse", "HEAD")
    hook = ("--git-webhook-secret-file", str(_secret_file(tmp_path)))
    proc = run_git(tmp_path / "state", remote.url, "--git-interval", "3600", *hook)
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        bad = remote.push("shop.yaml", BROKEN, "broken")
        assert github_push(proc.url, SECRET).status_code == 202

        def rejected() -> bool:
            return bool(proc.status()["attempted_revision"] == f"git:{bad}")

        wait_for(rejected, timeout=10, what="the broken commit judged")
        status = proc.status()
        assert status["applied_revision"] == f"git:{first}"
        failure = status["last_failure"]
        assert failure["revision"] == f"git:{bad}"
        # Named as the repository names the file, not by the checkout's path.
        assert any(re.match(r"shop\.yaml:4:\d+: error", d) for d in failure["diagnostics"]), failure
        assert not any(str(tmp_path) in d for d in failure["diagnostics"]), failure
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 200
        assert proc.post_events(numbered_events(0, 1)).status_code == 202
    finally:
        terminate(proc)


@pytest.mark.slow
def test_a_token_that_does_not_resolve_is_named_where_the_repository_has_it(
    tmp_path: Path, remote: Remote, hipchat: HipChatServer
) -> None:
    """A token is resolved as the set is applied, after the checkout's diagnostics
    were renamed. Broken: the registry's diagnostics not renamed (they name the
    file in the state dir's checkout, which no one can open in the repository)."""
    first = remote.work("rev-parse", "HEAD")
    hook = ("--git-webhook-secret-file", str(_secret_file(tmp_path)))
    proc = run_git(tmp_path / "state", remote.url, "--git-interval", "3600", *hook)
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        (remote.work.path / "teams" / "payments").mkdir(parents=True)
        # A room whose token's variable the daemon's environment does not hold.
        unset = trace_config(hipchat.url, ["4002"], uid="shop-two").replace("every", "all")
        bad = remote.push("teams/payments/shop-two.yaml", unset, "a room without its token")
        assert github_push(proc.url, SECRET).status_code == 202

        def judged() -> bool:
            return bool(proc.status()["attempted_revision"] == f"git:{bad}")

        wait_for(judged, timeout=10, what="the commit judged")
        status = proc.status()
        assert status["applied_revision"] == f"git:{first}"
        diagnostics = status["last_failure"]["diagnostics"]
        named = r"teams/payments/shop-two\.yaml:12:29: error: \S+: token \{env: HIPCHAT_TOKEN_4002"
        assert any(re.match(named, d) for d in diagnostics), diagnostics
        assert not any(str(tmp_path) in d for d in diagnostics), diagnostics
        said = [line for line in proc.log.splitlines() if "HIPCHAT_TOKEN_4002" in line]
        assert said and not any(str(tmp_path) in line for line in said), said
    finally:
        terminate(proc)


def test_a_wrong_signature_is_refused_and_logged_without_the_body(
    tmp_path: Path, remote: Remote
) -> None:
    first = remote.work("rev-parse", "HEAD")
    hook = ("--git-webhook-secret-file", str(_secret_file(tmp_path)))
    token = tmp_path / "ingest-token"
    token.write_text("ingest-token-value\n")
    proc = run_git(
        tmp_path / "state",
        remote.url,
        "--git-interval",
        "3600",
        *hook,
        "--ingest-token-file",
        str(token),
    )
    try:
        wait_for(lambda: "listening on" in proc.log, timeout=20, what="the first commit applied")
        body = b'{"ref": "refs/heads/main", "marker": "body-marker-91c2"}'
        answer = requests.post(
            proc.url + "/v1/hooks/git",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": "sha256=" + hmac.new(b"wrong", body, "sha256").hexdigest(),
            },
            timeout=10,
        )
        assert answer.status_code == 401
        # Without the ingest token: the webhook's own signature is what it asks for.
        assert github_push(proc.url, SECRET).status_code == 202
        auth = {"Authorization": "Bearer ingest-token-value"}
        status = requests.get(proc.url + "/status", headers=auth, timeout=5).json()
        assert status["applied_revision"] == f"git:{first}"
        wait_for(lambda: "git webhook refused" in proc.log, timeout=5)
    finally:
        terminate(proc)
    assert "body-marker-91c2" not in proc.log
    assert SECRET not in proc.log


def test_no_webhook_route_without_a_secret(tmp_path: Path, remote: Remote) -> None:
    proc = run_git(tmp_path / "state", remote.url, "--git-interval", "3600")
    try:
        wait_for(lambda: "listening on" in proc.log, timeout=20, what="the first commit applied")
        assert github_push(proc.url, SECRET).status_code == 404
    finally:
        terminate(proc)


@pytest.mark.slow
def test_remote_down_at_start_serves_the_last_known_good_set(
    tmp_path: Path, remote: Remote
) -> None:
    first = remote.work("rev-parse", "HEAD")
    state = tmp_path / "state"
    proc = run_git(state, remote.url, "--git-interval", "3600")
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        wait_for(lambda: (state / "last-known-good").exists(), timeout=10, what="the set saved")
    finally:
        terminate(proc)
    shutil.rmtree(remote.bare)  # the remote is gone
    shutil.rmtree(state / "git")  # and so is the checkout: only the saved set is left
    again = run_git(state, remote.url, "--git-interval", "3600")
    try:
        wait_for(lambda: applied(again, first), timeout=20, what="the saved set served")
        assert requests.get(again.url + "/readyz", timeout=5).status_code == 200
        wait_for(lambda: again.status()["git"]["error"], timeout=10, what="the fetch error shown")
        git = again.status()["git"]
        assert git["applied"] is None
        assert git["failures"] >= 1
        assert "last-known-good" in again.log
    finally:
        assert terminate(again) == 0


def test_git_flags_refused_with_the_flag_named(tmp_path: Path) -> None:
    def usage(*args: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncd",
                "run",
                "--state-dir",
                str(tmp_path / "s"),
                "--listen",
                "127.0.0.1:0",
                *TEST_POLICY,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **ENV},
        )
        assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr

    assert "--allow-http-git" in usage("--git", "http://127.0.0.1:1/x.git")
    assert "--git-token-file" in usage("--git", "https://user:pw@example.com/x.git")
    assert "not allowed with argument" in usage("--git", "file:///x", "--config", str(tmp_path))
    assert "--git-verify" in usage("--git", "file:///x", "--git-verify", "pgp", "keys")
    assert "--git-max-size" in usage("--git", "file:///x", "--git-max-size", "lots")
    assert "--git-verify" in usage(
        "--git", "file:///x", "--git-verify", "allowed-signers", str(tmp_path / "absent")
    )
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "--git-webhook-secret-file" in usage(
        "--git", "file:///x", "--git-webhook-secret-file", str(empty)
    )


def _signing_key(tmp_path: Path, work: GitRepo) -> Path:
    """An SSH key the work repository signs commits with; the allowed-signers file
    that trusts it."""
    key = tmp_path / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(key)], check=True
    )
    work("config", "gpg.format", "ssh")
    work("config", "user.signingkey", str(key))
    signers = tmp_path / "allowed-signers"
    signers.write_text(f"t@example.invalid {key.with_suffix('.pub').read_text()}")
    return signers


@pytest.mark.slow
def test_an_unsigned_commit_is_rejected_as_unverified_and_a_signed_one_applied(
    tmp_path: Path, remote: Remote
) -> None:
    unsigned = remote.work("rev-parse", "HEAD")
    signers = _signing_key(tmp_path, remote.work)
    hook = ("--git-webhook-secret-file", str(_secret_file(tmp_path)))
    proc = run_git(
        tmp_path / "state",
        remote.url,
        "--git-interval",
        "3600",
        "--git-verify",
        "allowed-signers",
        str(signers),
        *hook,
    )
    try:
        wait_for(
            lambda: proc.status()["attempted_revision"] == f"git:{unsigned}",
            timeout=20,
            what="the unsigned commit judged",
        )
        status = proc.status()
        assert status["applied_revision"] == ""
        (diagnostic,) = status["last_failure"]["diagnostics"]
        assert unsigned in diagnostic
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 503
        metrics = requests.get(proc.url + "/metrics", timeout=5).text
        assert 'syncd_config_reload_attempts_total{result="unverified"} 1.0' in metrics
        assert 'syncd_config_reload_attempts_total{result="failure"} 0.0' in metrics
        (remote.work.path / "shop.yaml").write_text(
            (remote.work.path / "shop.yaml").read_text() + "# signed\n"
        )
        remote.work("commit", "-qaS", "-m", "signed")
        signed = remote.work("rev-parse", "HEAD")
        remote.work("push", "-q", str(remote.bare), "main")
        assert github_push(proc.url, SECRET).status_code == 202
        wait_for(lambda: applied(proc, signed), timeout=10, what="the signed commit applied")
    finally:
        terminate(proc)
