"""A file a ``--git-*`` flag names that cannot be read is a usage error at once
(exit 2, naming the flag and the path), for ``syncd run``, ``validate --git``
and ``plan --git``: not a daemon that starts and fails at each fetch, nor a
check that fails later for another reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.errors import EXIT_USAGE
from tests.support.processes import TEST_POLICY

HTTPS = "https://git.example.invalid/acme/hipchat-config.git"
SSH = "ssh://git@127.0.0.1:1/acme/hipchat-config.git"
FILE = "file:///nonexistent/hipchat-config.git"
# What each file flag needs besides it: a URL it fits, and the other flags that URL needs.
FLAGS = {
    "--git-token-file": (HTTPS, False),
    "--git-ca-file": (HTTPS, False),
    "--git-ssh-key-file": (SSH, True),
    "--git-known-hosts": (SSH, False),
    "--git-verify allowed-signers": (FILE, False),
    "--git-verify gpg": (FILE, False),
    "--git-webhook-secret-file": (FILE, False),
}
# What a daemon's start, or a fetch, would take at most when nothing refused the flag.
TIMEOUT = 30


def _command(command: str, tmp_path: Path, url: str) -> list[str]:
    if command == "run":
        state = ("--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0")
        return ["run", "--git", url, *state, *TEST_POLICY, "--git-timeout", "3"]
    return [command, "--git", url, "--allow-any-endpoint", "--git-timeout", "3"]


def _unusable(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "secrets" / "nothing-here"
    if kind == "dangling link":
        link = tmp_path / "secrets" / "link"
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(tmp_path / "secrets" / "gone")
        return link
    directory = tmp_path / "secrets" / "a-directory"
    directory.mkdir(parents=True)
    (directory / "token").write_text("secret-in-the-directory-5d1e\n")
    return directory


def _cases() -> list[tuple[str, str]]:
    return [
        (command, flag)
        for command in ("run", "validate", "plan")
        for flag in FLAGS
        if command == "run" or flag != "--git-webhook-secret-file"
    ]


@pytest.mark.parametrize("kind", ["missing", "a directory", "dangling link"])
@pytest.mark.parametrize(("command", "flag"), _cases())
def test_a_file_flag_naming_no_readable_file_is_a_usage_error(
    tmp_path: Path, command: str, flag: str, kind: str
) -> None:
    url, needs_known_hosts = FLAGS[flag]
    path = _unusable(tmp_path, kind)
    args = [*_command(command, tmp_path, url), *flag.split(), str(path)]
    if needs_known_hosts:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("")
        args += ["--git-known-hosts", str(known_hosts)]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "syncd", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"},
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"syncd {command} {flag} {kind}: still running after {TIMEOUT} s")
    said = result.stdout + result.stderr
    assert result.returncode == EXIT_USAGE, said
    assert f"syncd {command}: error: {flag} {path}: " in result.stderr, said
    assert result.stderr.count("\n") == 1, said
    assert "Traceback" not in said
    assert "secret-in-the-directory" not in said
    assert "fetch" not in said  # refused before any fetch was tried
    assert not (tmp_path / "state" / "git").exists()
