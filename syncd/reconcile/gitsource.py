"""A git remote as the config's source: the options, and what a remote URL may be.

Pure: parsing and checks only, so the command line, ``syncd plan --git`` and
the daemon refuse the same URLs with the same words, before any git runs.

A URL is where a credential most often leaks: pasted into a unit file with a
token in it, it reaches the process list, the logs and ``/status``. So a URL
that carries a password (``https://user:token@host``) or a username that is
plainly a token (``https://ghp_...@github.com``) is refused; the token belongs
in ``--git-token-file``, which git is handed through a credential helper and
never sees in its arguments. Plaintext transports (``http://``, ``git://``)
carry tokens and config in the clear and let anyone on the path change the
config, so they need ``--allow-http-git``, as plaintext room tokens need their
own flag. ``ext::`` and other transports that run a command are never taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from syncd.config.diagnostics import printable
from syncd.config.secrets import REDACTED
from syncd.errors import UsageError

Scheme = Literal["https", "http", "ssh", "git", "file"]
VerifyKind = Literal["allowed-signers", "gpg"]
VERIFY_KINDS: tuple[VerifyKind, ...] = ("allowed-signers", "gpg")

DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
# The username git sends with a token when the URL names none; GitHub, GitLab
# and Gitea take any name with a personal access token.
DEFAULT_USERNAME = "git"
_SCHEMES: dict[str, Scheme] = {
    "https": "https",
    "http": "http",
    "ssh": "ssh",
    "git": "git",
    "file": "file",
}
_PLAINTEXT: frozenset[Scheme] = frozenset({"http", "git"})
# The prefixes of hosted forges' tokens, which some put in the username.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-")
# [user@]host:path, git's "scp-like" syntax: a colon before any slash.
_MAX_USERNAME = 64
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)$")
# TRANSPORT::ADDRESS, which makes git run git-remote-TRANSPORT (ext:: runs any command).
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


class GitSourceError(UsageError):
    """A git source the daemon cannot use as given; the text says which flag to change."""


@dataclass(frozen=True)
class Remote:
    """A checked remote URL: its transport, the host a credential is for, and the
    URL as it may be shown."""

    url: str
    scheme: Scheme
    host: str  # host[:port] as git's credential protocol names it; "" for file://
    username: str | None = None

    @property
    def display(self) -> str:
        return shown(self.url)

    @property
    def plaintext(self) -> bool:
        return self.scheme in _PLAINTEXT

    @property
    def uses_ssh(self) -> bool:
        return self.scheme == "ssh"

    @property
    def uses_http(self) -> bool:
        return self.scheme in ("https", "http")


@dataclass(frozen=True)
class Verify:
    """Which signatures a commit must carry to be applied (``--git-verify``)."""

    kind: VerifyKind
    file: Path

    def describe(self) -> str:
        return f"--git-verify {self.kind} {self.file}"


@dataclass(frozen=True)
class GitSource:
    """Everything ``--git`` and its companion flags say; checked when made, so a
    bad combination is refused at start with the flag to change."""

    url: str
    ref: str | None = None  # a branch or tag; None: the remote's default branch
    path: str = ""  # the directory in the repository holding the YAML; "": its top
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    token_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts: Path | None = None
    max_size: int = DEFAULT_MAX_SIZE
    verify: Verify | None = None
    forbid_rewrites: bool = False
    allow_http: bool = False
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        remote = self.remote  # parses and checks the URL
        _check_numbers(self)
        _check_credentials(self, remote)
        if self.ref is not None:
            check_ref(self.ref)
        object.__setattr__(self, "path", normalize_path(self.path))

    @cached_property
    def remote(self) -> Remote:
        return parse_remote(self.url, allow_http=self.allow_http)

    @property
    def ref_name(self) -> str:
        """The ref as shown and fetched: the one given, or ``HEAD`` (the default branch)."""
        return self.ref or "HEAD"

    def watches(self, pushed: str, default_branch: str | None = None) -> bool:
        """Whether a push to the full ref ``pushed`` (``refs/heads/main``) moved
        the ref this source follows; with no ref given, the remote's
        ``default_branch`` when known, else any branch."""
        return ref_matches(self.ref, pushed, default_branch)


def parse_remote(url: str, *, allow_http: bool = False) -> Remote:
    """The remote a ``--git`` URL names, or GitSourceError saying why it is refused.

    The error never repeats a password or token the URL held.
    """
    if not url:
        raise GitSourceError("--git needs a URL")
    if _UNSAFE.search(url):
        raise GitSourceError(
            f"--git {shown(url)}: spaces and control characters are not allowed in a URL"
        )
    if _HELPER.match(url):
        raise GitSourceError(
            f"--git {shown(url)}: TRANSPORT::ADDRESS runs a remote helper, which syncd "
            "does not; use https://, ssh:// or file://"
        )
    if "://" in url:
        remote = _parse_url(url)
    elif match := _SCP.match(url):
        remote = _scp_remote(url, match)
    else:
        raise GitSourceError(
            f"--git {shown(url)}: not a URL syncd fetches from; give https://HOST/PATH, "
            "ssh://[USER@]HOST/PATH, USER@HOST:PATH or file:///PATH"
        )
    if remote.plaintext and not allow_http:
        raise GitSourceError(
            f"--git {shown(url)}: {remote.scheme}:// sends the config (and any token) in "
            "the clear, where anyone on the way can read or change it; use https:// or "
            "ssh://, or pass --allow-http-git"
        )
    return remote


def _parse_url(url: str) -> Remote:
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise GitSourceError(
            f"--git {shown(url)}: the {printable(parts.scheme) or 'empty'}:// transport is "
            "not supported; use https://, ssh:// or file://"
        )
    if scheme == "file":
        return _file_remote(url, parts)
    _check_userinfo(url, parts.password, parts.username)
    host = _netloc_host(parts)
    if not host or host.startswith("-"):
        raise GitSourceError(f"--git {shown(url)}: the URL names no usable host")
    return Remote(url, scheme, host, parts.username or None)


def _netloc_host(parts: SplitResult) -> str:
    return parts.netloc.rpartition("@")[2]


def _file_remote(url: str, parts: SplitResult) -> Remote:
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise GitSourceError(
            f"--git {shown(url)}: a file:// URL names an absolute path: file:///PATH"
        )
    return Remote(url, "file", "")


def _scp_remote(url: str, match: re.Match[str]) -> Remote:
    user, host = match.group("user"), match.group("host")
    if host.startswith("-") or (user or "").startswith("-"):
        raise GitSourceError(f"--git {shown(url)}: a host or user may not start with '-'")
    _check_userinfo(url, None, user)
    return Remote(url, "ssh", host, user)


def _check_userinfo(url: str, password: str | None, username: str | None) -> None:
    if password is not None:
        raise GitSourceError(
            f"--git {shown(url)}: the URL holds a password or token, which would show in "
            "the process list, the logs and /status; remove it and name a file holding "
            "it with --git-token-file"
        )
    if username and _token_like(username):
        raise GitSourceError(
            f"--git {shown(url)}: the URL's username looks like a token; remove it and "
            "name a file holding the token with --git-token-file"
        )


def shown(url: str) -> str:
    """``url`` as it may be printed: a userinfo that holds a password, or looks
    like a token, replaced; control characters escaped."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/") if sep else (url.partition(":")[0], "", "")
    userinfo, at, host = authority.rpartition("@")
    if at and _secret_userinfo(userinfo):
        authority = REDACTED + "@" + host
    if not sep:
        return printable(authority + ":" + url.partition(":")[2])
    return printable(f"{scheme}://{authority}{slash}{path}")


def _secret_userinfo(userinfo: str) -> bool:
    return ":" in userinfo or _token_like(userinfo)


def _token_like(username: str) -> bool:
    return username.startswith(_TOKEN_PREFIXES) or len(username) > _MAX_USERNAME


def _check_numbers(source: GitSource) -> None:
    if not source.interval > 0:
        raise GitSourceError("--git-interval must be a number of seconds above 0")
    if not source.timeout > 0:
        raise GitSourceError("--git-timeout must be a number of seconds above 0")
    if source.max_size <= 0:
        raise GitSourceError("--git-max-size must be a size above 0")


def _check_credentials(source: GitSource, remote: Remote) -> None:
    """Each credential flag belongs to one kind of URL; an ssh URL needs known hosts."""
    misplaced = [
        (source.token_file, remote.uses_http, "--git-token-file is for https:// URLs"),
        (source.ssh_key_file, remote.uses_ssh, "--git-ssh-key-file is for ssh URLs"),
        (source.known_hosts, remote.uses_ssh, "--git-known-hosts is for ssh URLs"),
        (source.ca_file, remote.scheme == "https", "--git-ca-file is for https:// URLs"),
    ]
    for given, fits, message in misplaced:
        if given is not None and not fits:
            raise GitSourceError(f"{message}, not {remote.scheme}://")
    if remote.uses_ssh and source.known_hosts is None:
        raise GitSourceError(
            "an ssh URL needs --git-known-hosts: the host keys syncd accepts for the "
            "remote (ssh-keyscan HOST > FILE, then check the keys)"
        )


def check_ref(ref: str) -> None:
    """A ref name git would take (``git check-ref-format`` rules, in short), never an
    option or a refspec."""
    bad = (
        not ref
        or ref.startswith(("-", "/"))
        or ref.endswith(("/", ".", ".lock"))
        or any(c in ref for c in " ~^:?*[\\")
        or ".." in ref
        or "@{" in ref
        or "//" in ref
        or _UNSAFE.search(ref)
    )
    if bad:
        raise GitSourceError(
            f"--git-ref {ref!r}: not a branch or tag name (such as main, v1.2 or refs/heads/main)"
        )


def normalize_path(path: str) -> str:
    """``--git-path`` as a relative path in the repository ("" for its top), or
    GitSourceError when it leaves the repository or names git's own directory."""
    if _UNSAFE.search(path.replace(" ", "")) or "\\" in path:
        raise GitSourceError(f"--git-path {path!r}: control characters are not allowed")
    parts = [p for p in PurePosixPath(path.strip("/")).parts if p != "."]
    if path.startswith("/") or any(p == ".." for p in parts):
        raise GitSourceError(
            f"--git-path {path!r}: give a directory relative to the repository's top"
        )
    if any(p.lower() == ".git" for p in parts):
        raise GitSourceError(f"--git-path {path!r}: git's own directory holds no config")
    return "/".join(parts)


def ref_matches(wanted: str | None, pushed: str, default_branch: str | None = None) -> bool:
    """Whether the full ref ``pushed`` is the one ``wanted`` names: a full ref
    exactly, a short name as a branch or a tag (git's own order of lookup); None,
    the default branch when known, else any branch."""
    if wanted is None:
        if default_branch:
            return pushed == "refs/heads/" + default_branch
        return pushed.startswith("refs/heads/")
    if wanted.startswith("refs/"):
        return pushed == wanted
    return pushed in (f"refs/heads/{wanted}", f"refs/tags/{wanted}", f"refs/{wanted}")


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``--git-max-size``: bytes, or with a binary unit (``512K``, ``100M``,
    ``100MiB``, ``1G``)."""
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise GitSourceError(
            f"--git-max-size {printable(text)!r}: give a size above 0 such as 100M or 1G"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
