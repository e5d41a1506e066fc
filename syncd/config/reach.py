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

What ``syncd run`` must be told, because its default would be the attacker's
choice: which servers may receive tokens (``--allow-endpoint``, or an explicit
``--allow-any-endpoint``; ``syncd validate`` judges endpoints only when given
a prefix). Refused unless the operator says otherwise:

- plain ``http://`` (``--allow-http-endpoint``), loopback included: on a shared
  host any user may listen on an unprivileged loopback port the real server
  is not using, and receives every token sent there; a bundled test server or
  a local proxy is a choice the operator states, as the demo and the tour do;
- link-local addresses and cloud metadata services (``--allow-link-local-endpoint``,
  whatever ``--allow-endpoint`` says): 169.254.0.0/16 and fe80::/10 in any
  spelling (``[::ffff:169.254.169.254]``, ``2852039166``, NAT64 and 6to4
  forms), the metadata addresses outside them, and the metadata names; such a
  service answers the host's own requests with the instance's cloud
  credentials. Validation judges what is written, without DNS; a send judges
  the address it connected to (``syncd.hipchat.client``), so a name that
  resolves there is refused too;
- ``{credential: NAME}`` not starting with a ``--credential-prefix``, and the
  daemon's own secrets (credentials named ``syncd``, ``syncd-...``, and its
  ingest token's file, as a credential or a secrets file);
- a ``hipchat.tls.ca_file`` outside the ``--ca-dir`` directories, with the same
  words whether or not the path exists, and inside them anything but a
  regular file (a FIFO would hold the reconcile for ever).

``--scope`` adds per-directory bounds on top of these (``syncd.config.scopes``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from syncd.config.model import api_root
from syncd.config.scopes import Scope

NEVER_ENV_PREFIX = "SYNCD_"
# Credentials named so (``syncd``, ``syncd-ingest-token``...) are the daemon's own,
# never a room's; without case, as a unit's author may spell it either way.
NEVER_CREDENTIAL = re.compile(r"(?i)syncd(?:[-_.@]|$)")
DEFAULT_CA_DIRS = (Path("/etc/ssl"), Path("/etc/pki"), Path("/usr/local/share/ca-certificates"))
# A system CA bundle is a few hundred KiB; more is not a CA bundle.
MAX_CA_BYTES = 16 * 1024 * 1024
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----[A-Za-z0-9+/=\s]*"
    rb"-----END (?:X509 |TRUSTED )?CERTIFICATE-----"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_.@-]+")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASH_LIKE = re.compile(r"%2[Ff]|%5[Cc]|\\")
_DOT_SEGMENTS = frozenset({".", ".."})
DEFAULT_MAX_MUTE = 30 * 86400


@dataclass(frozen=True)
class Reach:
    token_env_prefixes: tuple[str, ...] = ("HIPCHAT_",)
    secrets_dirs: tuple[Path, ...] = (Path("/run/secrets"),)
    credential_prefixes: tuple[str, ...] = ("hipchat",)
    # The daemon's own secrets, whatever their names: the ingest token's credential
    # name and file, when it is read from one.
    own_credentials: frozenset[str] = frozenset()
    own_files: tuple[Path, ...] = ()
    # No prefixes: any endpoint. ``syncd run`` wants prefixes, or ``any_endpoint``:
    # the operator's word that any will do.
    allowed_endpoints: tuple[str, ...] = ()
    any_endpoint: bool = False
    allow_http: bool = False
    allow_link_local: bool = False
    scopes: tuple[Scope, ...] = ()
    # What one integration may cost to check and to route: how many actions
    # (--max-actions), and their regexes' total size in UTF-8 bytes
    # (--max-pattern-bytes).
    # Every event is matched against every action of its project's integrations, and
    # a set compiles every regex: these bound the cost of one event per integration
    # and of loading one. A hundred actions is several times what a rule list holds
    # in practice; 64 KiB of patterns leaves 650 bytes to each of a hundred (an
    # alternation of a hundred service names), and keeps an integration's compiled
    # RE2 programs to a few MiB.
    max_actions: int = 100
    max_pattern_bytes: int = 64 * 1024
    # The directories scope globs are relative to: the config dir, and the copy of
    # it the daemon starts on (its last-known-good set).
    scope_roots: tuple[Path, ...] = ()
    ca_dirs: tuple[Path, ...] = DEFAULT_CA_DIRS
    # How long a mute may last from now (--max-mute): a mute forgotten in the
    # repository must not hide a room's notifications for ever.
    max_mute: int = DEFAULT_MAX_MUTE
    # A mute already past: an error where a commit is checked (validate, plan),
    # a warning with --allow-expired-mutes and in the daemon, where a mute that
    # passes its time must never turn a set invalid on the next reload.
    expired_mutes: Literal["error", "warning"] = "error"
    # Where "now" comes from for the mutes' times; None: the wall clock, read
    # when a file is checked.
    clock: Callable[[], float] | None = field(default=None, compare=False)

    @property
    def endpoints_decided(self) -> bool:
        return bool(self.allowed_endpoints) or self.any_endpoint


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


def well_formed(kind: str, value: str) -> bool:
    """A reference the schema accepts, so worth judging (and quoting) further."""
    if kind == "env":
        return _ENV_NAME.fullmatch(value) is not None
    if kind == "credential":
        return _CREDENTIAL_NAME.fullmatch(value) is not None
    return value.startswith("/")


def credential_problem(name: str, reach: Reach) -> str | None:
    """A credential of the unit is a room token only if its name says so: the unit
    may load others (the ingest token, a database password)."""
    if not _CREDENTIAL_NAME.fullmatch(name):
        return None  # not a credential name: the schema says so
    if name in reach.own_credentials or NEVER_CREDENTIAL.match(name):
        return f"{name} is not allowed: it is one of the daemon's own credentials"
    if not name.startswith(reach.credential_prefixes):
        allowed = ", ".join(reach.credential_prefixes) or "(none)"
        return f"{name} is not allowed by --credential-prefix {allowed}"
    return None


def _inside(path: str, directories: tuple[Path, ...]) -> bool:
    """Links followed, whether or not the file exists."""
    resolved = Path(os.path.realpath(path))
    return any(resolved.is_relative_to(os.path.realpath(d)) for d in directories)


def file_problem(path: str, reach: Reach) -> str | None:
    """Whether ``path`` resolves (links followed) inside a secrets dir; the answer
    is the same whether the file exists or not."""
    if not _inside(path, reach.secrets_dirs):
        allowed = ", ".join(str(d) for d in reach.secrets_dirs) or "(none)"
        return f"{path} is not inside --secrets-dir {allowed}"
    resolved = os.path.realpath(path)
    if any(resolved == os.path.realpath(own) for own in reach.own_files):
        return f"{path} is not allowed: it is the daemon's own ingest token"
    return None


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
    problem = path_problem(endpoint) or link_local_problem(endpoint, reach)
    if problem is not None or not reach.allowed_endpoints:
        return problem
    if any(endpoint_allowed(endpoint, prefix) for prefix in reach.allowed_endpoints):
        return None
    return f"{endpoint} is not allowed by --allow-endpoint {', '.join(reach.allowed_endpoints)}"


def http_problem(endpoint: str, reach: Reach) -> str | None:
    if reach.allow_http or urlsplit(endpoint).scheme.lower() != "http":
        return None
    return (
        "plain http sends room tokens unencrypted, to whatever listens on that port; "
        "use https, or run with --allow-http-endpoint"
    )


# Metadata services answer a host's own requests with its cloud credentials. Most
# are link-local (169.254.169.254: AWS, GCP, Azure, OCI, OpenStack...); these are
# not, and neither are the names.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("fd00:ec2::254"),  # AWS, over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("168.63.129.16"),  # Azure's host endpoint (WireServer)
    }
)
METADATA_NAMES = frozenset(
    {
        "metadata",  # GCP's short name, through the resolver's search domain
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",  # AWS
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"(?i)(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to the same host: mapped, compatible,
    NAT64 or 6to4 (a Teredo client's is its own, and not judged)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip.packed[:12] == bytes(12) and int(ip) > 1):
        return ipaddress.IPv4Address(ip.packed[12:])
    return None


def special_address(ip: IP) -> str | None:
    """What makes an address one tokens never go to, in words; None for others."""
    candidates: list[IP] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        candidates += [embedded] if embedded is not None else []
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if candidate.is_link_local:
            return "a link-local address, where cloud metadata services answer"
    return None


def literal_ip(host: str) -> IP | None:
    """The address a host names by itself, in any spelling a resolver takes
    (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``, a zone after ``%``); None for a name."""
    bare = host.strip("[]").split("%", 1)[0].rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _LEGACY_IPV4.fullmatch(bare):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def host_problem(host: str) -> str | None:
    """A metadata name, or an address :func:`special_address` refuses."""
    name = host.lower().rstrip(".")
    if name in METADATA_NAMES:
        return f"{host} names a cloud metadata service"
    ip = literal_ip(name)
    what = special_address(ip) if ip is not None else None
    return f"{host} is {what}" if what else None


def link_local_problem(endpoint: str, reach: Reach) -> str | None:
    if reach.allow_link_local:
        return None
    problem = host_problem(urlsplit(endpoint).hostname or "")
    if problem is None:
        return None
    return f"{problem}; refused unless the daemon runs with --allow-link-local-endpoint"


def address_problem(address: str) -> str | None:
    """For a send: why the address connected to is one tokens never go to."""
    ip = literal_ip(address)
    return special_address(ip) if ip is not None else None


def ca_file_problem(ca_file: str, reach: Reach) -> str | None:
    """A CA bundle is read only inside ``--ca-dir``, and only as a regular file:
    a FIFO would hold the reconcile for ever, and ``/etc/shadow``'s "holds no
    certificates" would tell a committer it exists. Outside, one answer for
    every path."""
    from syncd.config.loader import NotARegularFile, read_regular  # YAML's import: validate's

    if not _inside(ca_file, reach.ca_dirs):
        allowed = ", ".join(str(d) for d in reach.ca_dirs) or "(none)"
        return f"{ca_file} is not inside --ca-dir {allowed}"
    try:
        raw = read_regular(Path(ca_file), MAX_CA_BYTES + 1)
    except FileNotFoundError:
        return f"no such file: {ca_file}"
    except NotARegularFile as exc:
        return f"{ca_file} {exc}; a CA bundle is a regular file"
    except OSError as exc:
        return f"cannot read {ca_file}: {exc.strerror or exc}"
    if len(raw) > MAX_CA_BYTES:
        return f"{ca_file} is larger than {MAX_CA_BYTES // (1024 * 1024)} MiB, not a CA bundle"
    return _pem_problem(ca_file, raw)


def _pem_problem(ca_file: str, raw: bytes) -> str | None:
    import ssl  # only a config that names a CA file pays for the import

    # The certificates alone: a bundle's comments may be in any encoding, and
    # ``cadata`` takes ASCII text only.
    blocks = _PEM_CERTIFICATE.findall(raw)
    if not blocks:
        return f"{ca_file} holds no PEM certificates"
    try:
        context = ssl.create_default_context(cadata=b"\n".join(blocks).decode("ascii"))
    except (ssl.SSLError, ValueError):
        return f"{ca_file} holds no PEM certificates"
    if not context.get_ca_certs():
        return f"{ca_file} holds no CA certificates"
    return None
