"""``syncd run``: the daemon, from command-line values to a running service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.commands.tokens import read_token
from syncd.config.reach import Reach
from syncd.errors import UsageError
from syncd.service.logs import LogFormat


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


MAX_WORKERS = 256


@dataclass(frozen=True)
class RunOptions:
    """The flags of ``syncd run`` as given. No defaults here: the command line's
    come from ``DaemonConfig``, the one place each is written."""

    config_dir: Path
    listen: str
    state_dir: Path
    workers: int
    ingest_token_file: Path | None
    retry_base_delay: float
    retry_max_delay: float
    send_timeout: float
    max_age: float
    resync_interval: float
    allow_plaintext_tokens: bool
    log_format: LogFormat
    reach: Reach
    max_prune: int | None
    exclude: tuple[str, ...]


def run(options: RunOptions) -> int:
    """Exit 0 after a clean stop, 1 when there is no valid config to start on."""
    from syncd.service import daemon

    address = parse_listen(options.listen)
    if not options.config_dir.is_dir():
        raise UsageError(f"--config {options.config_dir} is not a directory")
    if options.max_prune is not None and options.max_prune < 0:
        raise UsageError(f"--max-prune wants 0 or more, got {options.max_prune}")
    if not 1 <= options.workers <= MAX_WORKERS:
        raise UsageError(f"--workers wants 1 to {MAX_WORKERS}, got {options.workers}")
    if not options.send_timeout > 0:
        raise UsageError(f"--send-timeout wants more than 0 seconds, got {options.send_timeout:g}")
    config = daemon.DaemonConfig(
        config_dir=options.config_dir,
        state_dir=options.state_dir,
        host=address.host,
        port=address.port,
        ingest_token=read_token(options.ingest_token_file, "--ingest-token-file"),
        allow_plaintext_tokens=options.allow_plaintext_tokens,
        resync_interval=options.resync_interval,
        workers=options.workers,
        retry_base=options.retry_base_delay,
        retry_cap=options.retry_max_delay,
        send_timeout=options.send_timeout,
        max_age=options.max_age,
        reach=options.reach,
        max_prune=options.max_prune,
        exclude=options.exclude,
    )
    return daemon.run(config, options.log_format)
