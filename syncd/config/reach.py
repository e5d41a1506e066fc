"""What a config may reach: set by the operator, never by the config repository.

Many teams commit to the integrations repository, and a token reference or an
endpoint is an instruction to the daemon: send this secret to that server. So
which environment variables and files may hold room tokens, and which servers
may receive them, are the daemon's flags (``--token-env-prefix``,
``--secrets-dir``, ``--allow-endpoint``). A config that steps outside them is
invalid at the offending value's line and column, so the set is rejected and
no request is ever made with a token it should not have had. The daemon's own
``SYNCD_`` variables are never a room token, whatever the flags say.

An endpoint's path is judged as a server would read it: a path with dot
segments (``..``, also escaped as ``%2e%2e``) or a disguised slash is refused
outright, since the client and the server may each resolve it their own way,
and the prefix is compared with the URLs syncd sends to (``<root>/v2/...``).
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from syncd.config.model import api_root

NEVER_ENV_PREFIX = "SYNCD_"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASH_LIKE = re.compile(r"%2[Ff]|%5[Cc]|\\")
_DOT_SEGMENTS = frozenset({".", ".."})


@dataclass(frozen=True)
class Reach:
    token_env_prefixes: tuple[str, ...] = ("HIPCHAT_",)
    secrets_dirs: tuple[Path, ...] = (Path("/run/secrets"),)
    allowed_endpoints: tuple[str, ...] = ()


DEFAULT_REACH = Reach()


def env_problem(name: str, reach: Reach) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        return None  # not a variable name: the schema says so
    if name.startswith(NEVER_ENV_PREFIX):
        return f"{name} is not allowed: {NEVER_ENV_PREFIX}* are the daemon's own variables"
    if not name.startswith(reach.token_env_prefixes):
        allowed = ", ".join(reach.token_env_prefixes) or "(none)"
        return f"{name} is not allowed by --token-env-prefix {allowed}"
    return None


def file_problem(path: str, reach: Reach) -> str | None:
    """Whether ``path`` resolves (links followed) inside a secrets dir; the answer
    is the same whether the file exists or not."""
    resolved = Path(os.path.realpath(path))
    if any(resolved.is_relative_to(os.path.realpath(d)) for d in reach.secrets_dirs):
        return None
    allowed = ", ".join(str(d) for d in reach.secrets_dirs) or "(none)"
    return f"{path} is not inside --secrets-dir {allowed}"


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path


def _decode_unreserved(path: str) -> str:
    """RFC 3986 6.2.2: an escaped unreserved character is that character (``%2e``
    is ``.``); other escapes stay, their hex digits in upper case."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    return _ESCAPE.sub(one, path)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute (or empty) path; ``..`` above the root stays
    at the root."""
    kept: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/" + "/".join(kept) if kept else ""


def normal_path(path: str) -> str:
    """The path as servers compare it, without a trailing slash."""
    return _remove_dot_segments(_decode_unreserved(path)).rstrip("/")


def path_problem(endpoint: str) -> str | None:
    """A path a server may read as another one: dot segments (escaped or not) and
    slashes in disguise. Refused whatever ``--allow-endpoint`` says, so that what is
    checked is what is sent, whichever way the client or the server normalises."""
    parts = urlsplit(endpoint)
    if _SLASH_LIKE.search(parts.path):
        return (
            f"{endpoint} holds an escaped slash (%2F, %5C) or a backslash, which some "
            "servers read as '/'; write the path with '/' only"
        )
    if not _DOT_SEGMENTS & set(_decode_unreserved(parts.path).split("/")):
        return None
    meant = f"{parts.scheme}://{parts.netloc}{normal_path(parts.path)}"
    return (
        f"{endpoint} holds a dot segment ('.' or '..', perhaps escaped), which the "
        f"server resolves to another path; did you mean {meant}?"
    )


def endpoint_allowed(endpoint: str, prefix: str) -> bool:
    """Scheme, host and port equal, and what syncd sends to, ``<root>/v2/...``, under
    the prefix's path; paths compared normalised."""
    scheme, host, port, _ = _origin(endpoint)
    p_scheme, p_host, p_port, p_path = _origin(prefix)
    sent = normal_path(urlsplit(api_root(endpoint)).path) + "/v2"
    allowed = normal_path(p_path)
    same_origin = (scheme, host, port) == (p_scheme, p_host, p_port)
    return same_origin and (sent == allowed or sent.startswith(allowed + "/"))


def endpoint_problem(endpoint: str, reach: Reach) -> str | None:
    problem = path_problem(endpoint)
    if problem is not None or not reach.allowed_endpoints:
        return problem
    if any(endpoint_allowed(endpoint, prefix) for prefix in reach.allowed_endpoints):
        return None
    return f"{endpoint} is not allowed by --allow-endpoint {', '.join(reach.allowed_endpoints)}"
