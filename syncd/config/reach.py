"""What a config may reach: set by the operator, never by the config repository.

Many teams commit to the integrations repository, and a token reference or an
endpoint is an instruction to the daemon: send this secret to that server. So
which environment variables and files may hold room tokens, and which servers
may receive them, are the daemon's flags (``--token-env-prefix``,
``--secrets-dir``, ``--allow-endpoint``). A config that steps outside them is
invalid at the offending value's line and column, so the set is rejected and
no request is ever made with a token it should not have had. The daemon's own
``SYNCD_`` variables are never a room token, whatever the flags say.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

NEVER_ENV_PREFIX = "SYNCD_"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def endpoint_allowed(endpoint: str, prefix: str) -> bool:
    """Scheme, host and port equal, and the path under the prefix's path."""
    scheme, host, port, path = _origin(endpoint)
    p_scheme, p_host, p_port, p_path = _origin(prefix)
    same_origin = (scheme, host, port) == (p_scheme, p_host, p_port)
    return same_origin and (path == p_path or path.startswith(p_path + "/"))


def endpoint_problem(endpoint: str, reach: Reach) -> str | None:
    if not reach.allowed_endpoints:
        return None
    if any(endpoint_allowed(endpoint, prefix) for prefix in reach.allowed_endpoints):
        return None
    return f"{endpoint} is not allowed by --allow-endpoint {', '.join(reach.allowed_endpoints)}"
