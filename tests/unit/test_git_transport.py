"""What git is told for each kind of remote: the one protocol it may speak, the
credential helper or ssh command, and never a token."""

from __future__ import annotations

import shlex
from pathlib import Path

from syncd.reconcile.gitmirror import options, ssh_command, transport_environment
from syncd.reconcile.gitsource import GitSource

HOSTS = Path("/etc/syncd/known hosts")  # a space, quoted in the ssh command
KEY = Path("/run/credentials/syncd.service/git key")


def settings(source: GitSource) -> list[str]:
    given = options(source)
    return [value for flag, value in zip(given[::2], given[1::2], strict=True) if flag == "-c"]


def test_only_the_url_s_own_protocol_is_allowed() -> None:
    allowed = [s for s in settings(GitSource("https://h/r")) if s.startswith("protocol.")]
    assert allowed == ["protocol.allow=never", "protocol.https.allow=always"]
    assert "protocol.file.allow=always" in settings(GitSource("file:///srv/r"))


def test_submodules_and_background_maintenance_are_off() -> None:
    given = settings(GitSource("https://h/r"))
    for setting in ("submodule.recurse=false", "fetch.recurseSubmodules=false", "gc.auto=0"):
        assert setting in given


def test_a_token_file_is_named_to_the_helper_never_read_into_git_s_arguments(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-never-in-argv")
    source = GitSource("https://deploy@h:8443/r", token_file=token_file)
    given = settings(source)
    assert "credential.helper=" in given  # any other helper is dropped first
    assert any(s.startswith("credential.helper=!") for s in given)
    env = transport_environment(source)
    assert env["SYNCD_GIT_TOKEN_FILE"] == str(token_file)
    assert env["SYNCD_GIT_USERNAME"] == "deploy"
    assert env["SYNCD_GIT_CREDENTIAL_TARGET"] == "https://h:8443"
    assert "tok-never-in-argv" not in repr(given) + repr(env)


def test_ssh_checks_the_host_key_strictly_with_the_operator_s_files() -> None:
    source = GitSource("git@github.com:acme/config", ssh_key_file=KEY, known_hosts=HOSTS)
    argv = shlex.split(ssh_command(source))
    for option in (
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={HOSTS}",
        "GlobalKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "IdentitiesOnly=yes",
    ):
        assert argv[argv.index(option) - 1] == "-o"
    assert argv[argv.index("-i") + 1] == str(KEY)
    assert transport_environment(source)["GIT_SSH_COMMAND"] == ssh_command(source)


def test_without_a_key_ssh_uses_the_agent_or_its_defaults() -> None:
    source = GitSource("ssh://git@h/r", known_hosts=HOSTS)
    assert "-i" not in shlex.split(ssh_command(source))
