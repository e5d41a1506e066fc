"""Which ``--git`` URLs and flag combinations a daemon starts with, and the words
it refuses the others in; a token in a URL is never repeated."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.reconcile.gitsource import (
    GitSource,
    GitSourceError,
    parse_remote,
    parse_size,
    ref_matches,
    shown,
)

KEY = Path("/run/credentials/syncd/key")
HOSTS = Path("/etc/syncd/known_hosts")


@pytest.mark.parametrize(
    ("url", "scheme", "host", "user"),
    [
        ("https://github.com/acme/config.git", "https", "github.com", None),
        (
            "https://deploy@git.example.com:8443/acme/config",
            "https",
            "git.example.com:8443",
            "deploy",
        ),
        ("ssh://git@github.com/acme/config.git", "ssh", "github.com", "git"),
        ("ssh://git@[::1]:2222/srv/config", "ssh", "[::1]:2222", "git"),
        ("git@github.com:acme/config.git", "ssh", "github.com", "git"),
        ("file:///srv/git/config.git", "file", "", None),
    ],
)
def test_urls_syncd_fetches_from(url: str, scheme: str, host: str, user: str | None) -> None:
    remote = parse_remote(url)
    assert (remote.scheme, remote.host, remote.username) == (scheme, host, user)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://deploy:hunter2-token@github.com/acme/config", "holds a password or token"),
        ("https://ghp_abcdefghijklmnop@github.com/acme/config", "looks like a token"),
        ("https://glpat-abcdefghijk@gitlab.com/acme/config", "looks like a token"),
        ("http://git.example.com/acme/config", "--allow-http-git"),
        ("git://git.example.com/acme/config", "--allow-http-git"),
        ("ext::sh -c touch% /tmp/pwned", "spaces and control characters"),
        ("ext::sh", "runs a remote helper"),
        ("fd::3", "runs a remote helper"),
        ("ftp://example.com/config", "the ftp:// transport is not supported"),
        ("-oProxyCommand=touch:x", "may not start with '-'"),
        ("ssh://-oProxyCommand=x/config", "no usable host"),
        ("/srv/git/config.git", "not a URL syncd fetches from"),
        ("file://host/srv/config", "absolute path"),
        ("https://example.com/a\nb", "control characters"),
        ("", "needs a URL"),
    ],
)
def test_urls_refused_say_why(url: str, words: str) -> None:
    with pytest.raises(GitSourceError, match=words) as refused:
        GitSource(url, known_hosts=HOSTS if url.startswith(("-", "ssh")) else None)
    for secret in ("hunter2-token", "ghp_abcdefghijklmnop", "glpat-abcdefghijk"):
        assert secret not in str(refused.value)


def test_plaintext_urls_are_taken_with_the_flag() -> None:
    assert GitSource("http://git.example.com/config", allow_http=True).remote.plaintext
    assert GitSource("git://git.example.com/config", allow_http=True).remote.scheme == "git"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"url": "git@github.com:acme/config"}, "needs --git-known-hosts"),
        ({"url": "https://github.com/a/b", "ssh_key_file": KEY}, "--git-ssh-key-file is for ssh"),
        ({"url": "https://github.com/a/b", "known_hosts": HOSTS}, "--git-known-hosts is for ssh"),
        (
            {"url": "git@github.com:a/b", "known_hosts": HOSTS, "token_file": KEY},
            "--git-token-file is for https",
        ),
        ({"url": "file:///srv/a", "ca_file": KEY}, "--git-ca-file is for https"),
        ({"url": "file:///srv/a", "interval": 0}, "--git-interval"),
        ({"url": "file:///srv/a", "timeout": -1}, "--git-timeout"),
        ({"url": "file:///srv/a", "max_size": 0}, "--git-max-size"),
        ({"url": "file:///srv/a", "ref": "--upload-pack=touch"}, "not a branch or tag"),
        ({"url": "file:///srv/a", "ref": "main:refs/heads/x"}, "not a branch or tag"),
        ({"url": "file:///srv/a", "ref": "a..b"}, "not a branch or tag"),
        ({"url": "file:///srv/a", "path": "../etc"}, "relative to the repository"),
        ({"url": "file:///srv/a", "path": "/etc"}, "relative to the repository"),
        ({"url": "file:///srv/a", "path": "a/.git"}, "git's own directory"),
    ],
)
def test_flag_combinations_refused_name_the_flag(flags: dict[str, object], words: str) -> None:
    with pytest.raises(GitSourceError, match=words):
        GitSource(**flags)  # type: ignore[arg-type]


def test_an_ssh_url_takes_a_key_and_known_hosts() -> None:
    source = GitSource("git@github.com:acme/config", ssh_key_file=KEY, known_hosts=HOSTS)
    assert source.remote.uses_ssh


@pytest.mark.parametrize(
    ("given", "kept"), [("", ""), ("./", ""), ("integrations/", "integrations"), ("a/./b", "a/b")]
)
def test_git_path_is_kept_relative_and_plain(given: str, kept: str) -> None:
    assert GitSource("file:///srv/a", path=given).path == kept


def test_a_url_shown_keeps_a_plain_user_and_hides_a_password() -> None:
    assert shown("https://deploy@h/x") == "https://deploy@h/x"
    assert shown("https://deploy:pw@h/x") == "https://***@h/x"
    assert shown("https://ghp_abc@h/x") == "https://***@h/x"
    assert shown("git@h:x") == "git@h:x"


@pytest.mark.parametrize(
    ("wanted", "pushed", "default", "moves"),
    [
        ("main", "refs/heads/main", None, True),
        ("main", "refs/heads/dev", None, False),
        ("v1", "refs/tags/v1", None, True),
        ("refs/heads/main", "refs/heads/main", None, True),
        ("refs/heads/main", "refs/tags/main", None, False),
        (None, "refs/heads/main", "main", True),
        (None, "refs/heads/dev", "main", False),
        (None, "refs/heads/dev", None, True),
        (None, "refs/tags/v1", None, False),
    ],
)
def test_which_pushes_move_the_followed_ref(
    wanted: str | None, pushed: str, default: str | None, moves: bool
) -> None:
    assert ref_matches(wanted, pushed, default) is moves


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("512K", 512 << 10),
        ("100M", 100 << 20),
        ("100MiB", 100 << 20),
        ("1g", 1 << 30),
        ("2 GB", 2 << 30),
    ],
)
def test_max_size_takes_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1M", "1.5M", "10T", "lots"])
def test_a_size_that_is_none_is_refused(text: str) -> None:
    with pytest.raises(GitSourceError, match="--git-max-size"):
        parse_size(text)
