"""``syncd run``: the daemon, from command-line values to a running service."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.commands.tokens import read_token
from syncd.config.reach import Reach
from syncd.errors import UsageError
from syncd.service.api import SKEW_WARNING
from syncd.service.logs import LogFormat
from syncd.service.recorder import DEFAULT_DAYS

if TYPE_CHECKING:
    from syncd.service.daemon import GitSettings


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


def parse_listen(value: str) -> Listen:
    """``HOST:PORT`` or ``[IPV6]:PORT``; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen wants [IPV6]:PORT for an IPv6 address, got {value!r}")
    if not sep or not host or not port.isdigit() or not port.isascii() or int(port) > 65535:
        raise UsageError(f"--listen wants HOST:PORT with a port from 0 to 65535, got {value!r}")
    return Listen(host, int(port))


# Each worker is a thread that waits on HipChat most of its time; past a few
# thousand, the threads' stacks and the store's connections are the cost.
MAX_WORKERS = 4096


@dataclass(frozen=True)
class RunOptions:
    """The flags of ``syncd run`` as given. No defaults here: the command line's
    come from ``DaemonConfig``, the one place each is written."""

    config_dir: Path | None  # None with ``git``
    git: GitSettings | None  # as given: the webhook's secret not read yet
    listen: str
    state_dir: Path
    workers: int
    max_in_flight: int
    ingest_token_file: Path | None
    retry_base_delay: float
    retry_max_delay: float
    send_timeout: float
    lease: float | None  # None: the daemon's default (``lease_for``)
    max_age: float
    resync_interval: float
    allow_plaintext_tokens: bool
    log_format: LogFormat
    reach: Reach
    max_prune: int | None
    exclude: tuple[str, ...]
    reconcile_timeout: float
    git_dir: Path | None
    allowed_hosts: tuple[str, ...]
    max_notifications_per_request: int
    max_event_bytes: int
    prune_grace: float
    store_url: str | None
    store_password_file: Path | None
    store_password: str | None = field(repr=False)
    skew_warning: float = SKEW_WARNING
    record_events: Path | None = None
    record_days: int = DEFAULT_DAYS


def run(options: RunOptions) -> int:
    """Exit 0 after a clean stop, 1 when there is no valid config to start on."""
    from syncd.service import daemon

    address = parse_listen(options.listen)
    git = _git_settings(options.git, options.git_dir)
    if git is not None:
        options = replace(options, config_dir=daemon.git_config_dir(options.state_dir))
    elif options.config_dir is None or not options.config_dir.is_dir():
        raise UsageError(f"--config {options.config_dir} is not a directory")
    assert options.config_dir is not None
    if options.max_prune is not None and options.max_prune < 0:
        raise UsageError(f"--max-prune wants 0 or more, got {options.max_prune}")
    if not 1 <= options.workers <= MAX_WORKERS:
        raise UsageError(f"--workers wants 1 to {MAX_WORKERS}, got {options.workers}")
    _check_in_flight(options.max_in_flight)
    if not options.send_timeout > 0:
        raise UsageError(f"--send-timeout wants more than 0 seconds, got {options.send_timeout:g}")
    if not options.reconcile_timeout > 0:
        raise UsageError(
            f"--reconcile-timeout wants more than 0 seconds, got {options.reconcile_timeout:g}"
        )
    check_git_dir(options.git_dir, options.config_dir)
    check_store(options.store_url)
    _check_bounds(options)
    check_endpoint_policy(options.reach)
    config = daemon.DaemonConfig(
        config_dir=options.config_dir,
        state_dir=options.state_dir,
        host=address.host,
        port=address.port,
        ingest_token=read_token(options.ingest_token_file, "--ingest-token-file"),
        allow_plaintext_tokens=options.allow_plaintext_tokens,
        resync_interval=options.resync_interval,
        workers=options.workers,
        max_in_flight=options.max_in_flight,
        retry_base=options.retry_base_delay,
        retry_cap=options.retry_max_delay,
        send_timeout=options.send_timeout,
        lease=daemon.lease_for(options.lease, options.send_timeout),
        max_age=options.max_age,
        reach=daemon_reach(options),
        max_prune=options.max_prune,
        exclude=options.exclude,
        reconcile_timeout=options.reconcile_timeout,
        git_dir=options.git_dir,
        allowed_hosts=options.allowed_hosts,
        max_notifications_per_request=options.max_notifications_per_request,
        max_event_bytes=options.max_event_bytes,
        prune_grace=options.prune_grace,
        store_url=options.store_url,
        store_password=options.store_password,
        skew_warning=options.skew_warning,
        git=git,
        record_events=options.record_events,
        record_days=options.record_days,
    )
    return daemon.run(config, options.log_format)


def _git_settings(given: GitSettings | None, git_dir: Path | None) -> GitSettings | None:
    """The git flags checked against the others, and each file they name, before
    the daemon takes the state dir or opens a store; with the webhook's secret read."""
    if given is None:
        return None
    if git_dir is not None:
        raise UsageError("--git-dir is for a local --config checkout; --git keeps its own")
    given.source()
    if given.webhook_secret_file is None:
        return given
    text = read_token(given.webhook_secret_file, "--git-webhook-secret-file")
    if text is None:
        raise UsageError(f"--git-webhook-secret-file {given.webhook_secret_file} is empty")
    return replace(given, webhook_secret=text.encode())


def _check_bounds(options: RunOptions) -> None:
    _check_lease(options.lease, options.send_timeout)
    if options.max_notifications_per_request < 1:
        raise UsageError(
            "--max-notifications-per-request wants 1 or more, "
            f"got {options.max_notifications_per_request}"
        )
    if options.max_event_bytes < 1024:
        raise UsageError(f"--max-event-bytes wants 1024 or more, got {options.max_event_bytes}")
    if options.prune_grace < 0:
        raise UsageError(f"--prune-grace wants 0 or more seconds, got {options.prune_grace:g}")
    if options.skew_warning < 0:
        raise UsageError(f"--skew-warning wants 0 or more seconds, got {options.skew_warning:g}")


def _check_in_flight(given: int) -> None:
    """No more sends in flight to one server than the client keeps connections to
    it: past them, each send would open a connection and close it after."""
    from syncd.hipchat.client import MAX_CONNECTIONS_PER_HOST

    if not 1 <= given <= MAX_CONNECTIONS_PER_HOST:
        raise UsageError(f"--max-in-flight wants 1 to {MAX_CONNECTIONS_PER_HOST}, got {given}")


def _check_lease(given: float | None, send_timeout: float) -> None:
    """A claim must outlast the send it was taken for: past its lease another
    daemon takes the room's notification, and sends it again while the first
    send may still arrive."""
    from syncd.service.daemon import lease_for

    lease = lease_for(given, send_timeout)
    if not (math.isfinite(lease) and lease > send_timeout):
        raise UsageError(
            f"--lease wants more seconds than --send-timeout, got --lease {lease:g} "
            f"and --send-timeout {send_timeout:g}"
        )


def check_store(url: str | None) -> None:
    """``--store`` names a PostgreSQL store; the SQLite outbox is the state dir's."""
    from syncd.service import stores

    if url is not None and stores.parse(url).kind != "postgresql":
        raise UsageError(
            "--store takes a shared PostgreSQL store (postgresql://USER@HOST/DATABASE); "
            "without it the outbox is the SQLite file in --state-dir"
        )


def check_git_dir(git_dir: Path | None, config_dir: Path) -> None:
    """``--git-dir`` names the top of a checkout that holds the config dir."""
    if git_dir is None:
        return
    if not (git_dir / ".git").exists():
        raise UsageError(f"--git-dir {git_dir} is not the top of a git checkout (no .git in it)")
    if not config_dir.resolve().is_relative_to(git_dir.resolve()):
        raise UsageError(f"--config {config_dir} is not inside --git-dir {git_dir}")


NO_ENDPOINT_POLICY = (
    "no endpoint policy: say which HipChat servers may receive room tokens with "
    "--allow-endpoint URL_PREFIX (repeatable), e.g. --allow-endpoint "
    "https://hipchat.example.com, or accept whatever endpoint a config names with "
    "--allow-any-endpoint"
)


def check_endpoint_policy(reach: Reach) -> None:
    """Where room tokens may go is the operator's to say: by default any committer
    could name a server of their own beside another team's token."""
    if not reach.endpoints_decided:
        raise UsageError(NO_ENDPOINT_POLICY)


def daemon_reach(options: RunOptions) -> Reach:
    """The flags' bounds, with what only the daemon knows: where its config and the
    copy it may start on (``last-known-good``, a link to it) lie, and its own
    secrets' files (the ingest token, the store's password, the git credentials
    and webhook secret), never a room's token."""
    own_files = _own_files(options)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    own_credentials = frozenset(
        Path(os.path.realpath(own)).name
        for own in own_files
        if credentials and Path(os.path.realpath(own)).parent == Path(os.path.realpath(credentials))
    )
    roots = (options.config_dir,) if options.config_dir is not None else ()
    return replace(
        options.reach,
        scope_roots=(*roots, options.state_dir / "last-known-good"),
        own_files=own_files,
        own_credentials=own_credentials,
    )


def _own_files(options: RunOptions) -> tuple[Path, ...]:
    git = options.git
    given = (
        options.ingest_token_file,
        options.store_password_file,
        *((git.token_file, git.ssh_key_file, git.webhook_secret_file) if git is not None else ()),
    )
    return tuple(path for path in given if path is not None)
