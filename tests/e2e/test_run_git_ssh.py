"""``syncd run --git`` over ssh: a real daemon fetching from a real OpenSSH
server on loopback, with the operator's key and known hosts and nothing else.

What each test was seen to fail with is said under its docstring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.errors import EXIT_USAGE
from syncd.testing.hipchat_server import HipChatServer
from tests.e2e.test_run_git_source import (
    ENV,
    SECRET,
    TOKENS,
    Remote,
    applied,
    github_push,
    run_git,
)
from tests.support.configs import trace_config
from tests.support.events import numbered_events
from tests.support.gitrepo import make_repo
from tests.support.processes import TEST_POLICY, Proc, terminate
from tests.support.sshserver import SshServer, keygen, ssh_server
from tests.support.waiting import wait_for

HOUR = ("--git-interval", "3600")
ACCEPTED = "Accepted publickey for root"


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


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with ssh_server(tmp_path / "sshd") as server:
        yield server


def ssh_args(tmp_path: Path, server: SshServer) -> tuple[str, ...]:
    """The key, the known hosts (scanned from the server) and the webhook."""
    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")
    return (
        "--git-ssh-key-file",
        str(server.client_key),
        "--git-known-hosts",
        str(server.keyscan(tmp_path / "known_hosts")),
        "--git-webhook-secret-file",
        str(secret),
        *HOUR,
    )


def key_material(server: SshServer) -> list[str]:
    """The client's private key as it could leak: whole, and each line of it."""
    text = server.client_key.read_text()
    return [text.strip(), *(line for line in text.splitlines() if "PRIVATE KEY" not in line)]


def assert_kept(status: dict[str, Any], first: str, refused: str) -> None:
    """The fetch failed and said so; the set of ``first`` is the one in use."""
    git = status["git"]
    assert git["failures"] >= 1
    assert (git["fetched"], git["applied"]) == (first, first)
    assert status["applied_revision"] == f"git:{first}"
    assert set(status["integrations"]) == {"shop-trace"}
    assert refused not in json.dumps(status)


def shown(proc: Proc) -> str:
    return proc.log + json.dumps(proc.status())


def two(hipchat: HipChatServer) -> str:
    return trace_config(hipchat.url, TOKENS, uid="shop-two").replace("every error", "all errors")


@pytest.mark.slow
def test_a_pushed_commit_is_fetched_over_ssh_and_applied(
    tmp_path: Path, remote: Remote, hipchat: HipChatServer, sshd: SshServer
) -> None:
    """Broken: the known hosts holding another key for the server, ``ssh_command``
    without ``-i`` (no key the server takes), or with ``UserKnownHostsFile``
    pointed at /dev/null: the first commit is never applied."""
    first = remote.work("rev-parse", "HEAD")
    url = sshd.url(remote.bare)
    proc = run_git(tmp_path / "state", url, *ssh_args(tmp_path, sshd))
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        second = remote.push("more.yaml", two(hipchat), "second")
        assert github_push(proc.url, SECRET).status_code == 202
        wait_for(lambda: applied(proc, second), timeout=10, what="the pushed commit applied")
        status = proc.status()
        assert set(status["integrations"]) == {"shop-trace", "shop-two"}
        git = status["git"]
        assert (git["remote"], git["fetched"], git["applied"]) == (url, second, second)
        assert git["error"] is None and git["failures"] == 0
        # Two fetches, each a login with the operator's key to this server.
        assert sshd.log.count(ACCEPTED) == 2, sshd.log
        assert proc.post_events(numbered_events(0, 1)).status_code == 202
        hipchat.wait_for_messages(1, room="4001", timeout=20)
        text = shown(proc)
    finally:
        terminate(proc)
    assert all(secret not in text + proc.log for secret in key_material(sshd))


@pytest.mark.slow
def test_a_changed_host_key_fails_the_fetch_and_the_set_in_use_stays(
    tmp_path: Path, remote: Remote, hipchat: HipChatServer, sshd: SshServer
) -> None:
    """Broken: ``StrictHostKeyChecking=no`` in ``ssh_command`` (the new key is
    taken, the key offered to it, the commit applied); ``ssh_command`` without
    ``-i`` (the first commit is never applied)."""
    first = remote.work("rev-parse", "HEAD")
    proc = run_git(tmp_path / "state", sshd.url(remote.bare), *ssh_args(tmp_path, sshd))
    try:
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        sshd.rekey()  # the same address and port, another host key
        second = remote.push("more.yaml", two(hipchat), "second")
        assert github_push(proc.url, SECRET).status_code == 202
        wait_for(lambda: proc.status()["git"]["error"], timeout=20, what="the fetch error shown")
        assert_kept(proc.status(), first, second)
        # The key is never offered to a server that is not the known one.
        assert sshd.log.count(ACCEPTED) == 0, sshd.log
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 200
        assert proc.post_events(numbered_events(0, 1)).status_code == 202
        hipchat.wait_for_messages(1, room="4001", timeout=20)
        wait_for(lambda: "git: fetch 1 of" in proc.log, timeout=5, what="the failure logged")
        text = shown(proc)
    finally:
        terminate(proc)
    assert all(secret not in text + proc.log for secret in key_material(sshd))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        ("host key", "Host key verification failed"),
        ("client key", "Permission denied (publickey)"),
    ],
)
def test_the_fetch_error_says_what_ssh_refused(
    tmp_path: Path, remote: Remote, sshd: SshServer, wrong: str, said: str
) -> None:
    """An operator told only that the remote could not be read cannot tell a
    changed host key (someone in the middle, or a reinstalled server) from a
    revoked deploy key or a server down. Broken: the error git's last line,
    "Could not read from remote repository.", alone (as it once was)."""
    known_hosts = sshd.keyscan(tmp_path / "known_hosts")
    key = sshd.client_key
    if wrong == "host key":
        other = keygen(tmp_path / "other_host_key", "other-host")
        public = " ".join(other.with_suffix(".pub").read_text().split()[:2])
        known_hosts.write_text(f"[{sshd.address}]:{sshd.port} {public}\n")
    else:
        key = keygen(tmp_path / "other_client_key", "other-client")
    args = ("--git-ssh-key-file", str(key), "--git-known-hosts", str(known_hosts), *HOUR)
    proc = run_git(tmp_path / "state", sshd.url(remote.bare), *args)
    try:
        wait_for(lambda: proc.status()["git"]["error"], timeout=20, what="the fetch error shown")
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 503
        error = proc.status()["git"]["error"]
    finally:
        terminate(proc)
    assert said in error and "(git: Could not read from remote repository)" in error, error


@pytest.mark.slow
def test_the_scp_like_form_is_fetched_from_port_22(
    tmp_path: Path, remote: Remote, hipchat: HipChatServer
) -> None:
    """``root@HOST:/path`` names no port: the server listens on port 22 of a
    loopback address of its own. Broken: the known hosts holding another key
    for the server, or ``ssh_command`` without ``-i`` (nothing is applied)."""
    first = remote.work("rev-parse", "HEAD")
    with ssh_server(tmp_path / "sshd", port_22=True) as server:
        url = server.scp_url(remote.bare)
        assert "://" not in url
        proc = run_git(tmp_path / "state", url, *ssh_args(tmp_path, server))
        try:
            wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
            second = remote.push("more.yaml", two(hipchat), "second")
            assert github_push(proc.url, SECRET).status_code == 202
            wait_for(lambda: applied(proc, second), timeout=10, what="the pushed commit applied")
            assert proc.status()["git"]["remote"] == url
            assert server.log.count(ACCEPTED) == 2, server.log
        finally:
            terminate(proc)


def _usage(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "run",
            "--state-dir",
            str(tmp_path / "state"),
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


@pytest.mark.slow
def test_the_scp_like_form_is_an_ssh_url_as_the_readme_says(tmp_path: Path) -> None:
    """It takes the ssh flags and refuses the https ones; a host that would be an
    option to ssh is refused. Broken: ``_scp_remote`` returning an ``https``
    remote (the missing known hosts go unnoticed and the daemon starts)."""
    key = keygen(tmp_path / "key", "k")
    token = tmp_path / "token"
    token.write_text("token\n")
    scp = "git@git.example.com:acme/hipchat-config.git"
    assert "--git-known-hosts" in _usage(tmp_path, "--git", scp)
    assert "--git-token-file is for https:// URLs, not ssh://" in _usage(
        tmp_path, "--git", scp, "--git-known-hosts", str(key), "--git-token-file", str(token)
    )
    assert "may not start with '-'" in _usage(
        tmp_path, "--git", "git@-oProxyCommand=x:repo.git", "--git-known-hosts", str(key)
    )
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    # Loopback, so no name is looked up: taken as given, the fetch is what fails.
    for url in ("git@127.0.0.1:acme/hipchat-config.git", "127.0.0.1:/srv/hipchat-config.git"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncd",
                "validate",
                "--git",
                url,
                "--git-known-hosts",
                str(known_hosts),
                "--git-ssh-key-file",
                str(key),
                "--git-timeout",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **ENV},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "git fetch failed" in result.stderr, result.stderr
        assert key.read_text().strip() not in result.stdout + result.stderr
