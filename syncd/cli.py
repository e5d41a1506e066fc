"""Command line: parses arguments into plain values and calls a command.

Every command runs inside one error handler (:func:`syncd.errors.handled`), so
a mistake a user can fix ends as one line naming the flag or file and an exit
code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from syncd import __version__
from syncd.config.diagnostics import OutputFormat
from syncd.config.model import parse_duration
from syncd.config.reach import DEFAULT_CA_DIRS, Reach
from syncd.config.scopes import Scope
from syncd.errors import UsageError, handled
from syncd.service.logs import LogFormat

if TYPE_CHECKING:
    from syncd.service.daemon import GitSettings

Command = Callable[[argparse.Namespace], int]
DEFAULT_URL = "http://127.0.0.1:8514"
# The default of --git-timeout for validate and plan (the daemon's is DaemonConfig's).
DEFAULT_GIT_TIMEOUT = 60.0


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="DIR",
        help="the directory of integration files (*.yaml, *.yml, in subdirectories too)",
    )


def _add_plaintext(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-plaintext-tokens",
        action="store_true",
        help="accept literal room tokens without a warning",
    )


def _add_exclude(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out the YAML files whose path below the directory matches, like a "
        ".gitignore line but at any depth unless it starts with '/': 'tests/*' and "
        "'tests/**' take everything below tests/, '*.values.yaml' any such file; repeatable",
    )


def _add_reach(parser: argparse.ArgumentParser) -> None:
    """What a config may reach; the same flags and meaning on every command that loads one."""
    parser.add_argument(
        "--token-env-prefix",
        action="append",
        metavar="PREFIX",
        help="{env: NAME} must start with one (repeatable; default HIPCHAT_; never SYNCD_)",
    )
    parser.add_argument(
        "--secrets-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="{file: PATH} must resolve inside one (repeatable; default /run/secrets)",
    )
    parser.add_argument(
        "--credential-prefix",
        action="append",
        metavar="PREFIX",
        help="{credential: NAME} must start with one (repeatable; default hipchat; "
        "never syncd, syncd-..., nor the ingest token's credential)",
    )
    parser.add_argument(
        "--max-actions",
        type=int,
        metavar="N",
        help="most actions one integration may have (default 100)",
    )
    parser.add_argument(
        "--max-pattern-bytes",
        type=int,
        metavar="BYTES",
        help="most bytes of regexes one integration's actions may hold in all (default 65536)",
    )
    parser.add_argument(
        "--allow-endpoint",
        action="append",
        metavar="URL_PREFIX",
        help="every endpoint must start with one, e.g. https://hipchat.example.com "
        "(repeatable); `syncd run` needs it or --allow-any-endpoint",
    )
    parser.add_argument(
        "--allow-any-endpoint",
        action="store_true",
        help="send room tokens to any endpoint a config names (what validate does "
        "without --allow-endpoint)",
    )
    parser.add_argument(
        "--allow-http-endpoint",
        action="store_true",
        help="accept plain http:// endpoints, loopback included (tokens then travel unencrypted)",
    )
    parser.add_argument(
        "--allow-link-local-endpoint",
        action="store_true",
        help="accept endpoints on link-local and cloud metadata addresses "
        "(169.254.0.0/16, fe80::/10, metadata.google.internal...)",
    )
    parser.add_argument(
        "--scope",
        action="append",
        metavar="PATH_GLOB=PREFIX",
        help="files matching the glob (below the config dir) may use only env and "
        "credential names starting with PREFIX, or with PREFIX starting with /, files "
        "inside it; files in no scope only what no scope claims "
        "(repeatable; e.g. teams/payments/**=HIPCHAT_PAYMENTS_)",
    )
    parser.add_argument(
        "--ca-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="hipchat.tls.ca_file must resolve inside one, a regular file (repeatable; default "
        + ", ".join(str(d) for d in DEFAULT_CA_DIRS)
        + ")",
    )


def _add_mutes(parser: argparse.ArgumentParser, *, checks_commits: bool) -> None:
    """The mutes' bounds: how far ahead a mute may end, everywhere; and, where a
    commit is checked (validate, plan), leave to check one whose mutes have ended."""
    parser.add_argument(
        "--max-mute",
        metavar="DURATION",
        help="latest a mute may end, from now: 30d, 12h, 1d12h... (default 30d)",
    )
    if checks_commits:
        parser.add_argument(
            "--allow-expired-mutes",
            action="store_true",
            help="a mute already past is a warning, not an error (to check an old commit)",
        )


# The longest --max-mute: a year, past which no mute is a mute.
_MOST_MUTE = 366 * 86400


def _mute_bounds(args: argparse.Namespace, reach: Reach, *, daemon: bool = False) -> Reach:
    """``reach`` with the mutes' flags; the daemon only warns of a mute past its time."""
    given = getattr(args, "max_mute", None)
    try:
        most = reach.max_mute if given is None else parse_duration(given, _MOST_MUTE)
    except ValueError as exc:
        raise UsageError(f"--max-mute: {exc}") from None
    if most < 1:
        raise UsageError("--max-mute wants a duration of 1s or more")
    lenient = daemon or getattr(args, "allow_expired_mutes", False)
    return replace(reach, max_mute=most, expired_mutes="warning" if lenient else "error")


def _reach(args: argparse.Namespace, roots: tuple[Path, ...]) -> Reach:
    """``roots``: the directories ``--scope`` globs are relative to."""
    defaults = Reach()
    if args.allow_any_endpoint and args.allow_endpoint:
        raise UsageError("--allow-any-endpoint and --allow-endpoint contradict: give one")
    return _mute_bounds(
        args,
        Reach(
            token_env_prefixes=tuple(args.token_env_prefix or defaults.token_env_prefixes),
            secrets_dirs=tuple(args.secrets_dir or defaults.secrets_dirs),
            credential_prefixes=tuple(args.credential_prefix or defaults.credential_prefixes),
            allowed_endpoints=tuple(args.allow_endpoint or ()),
            any_endpoint=args.allow_any_endpoint,
            allow_http=args.allow_http_endpoint,
            allow_link_local=args.allow_link_local_endpoint,
            scopes=tuple(Scope.parse(text) for text in args.scope or ()),
            scope_roots=roots,
            ca_dirs=tuple(args.ca_dir or defaults.ca_dirs),
            max_actions=_positive("--max-actions", args.max_actions, defaults.max_actions),
            max_pattern_bytes=_positive(
                "--max-pattern-bytes", args.max_pattern_bytes, defaults.max_pattern_bytes
            ),
        ),
    )


def _positive(flag: str, given: int | None, default: int) -> int:
    if given is None:
        return default
    if given < 1:
        raise UsageError(f"{flag} wants 1 or more, got {given}")
    return given


def _validate_roots(paths: list[Path]) -> tuple[Path, ...]:
    """A directory given is the top its files' scopes are matched from; a file named
    on its own (as pre-commit names them) is matched from the current directory."""
    dirs = tuple(path for path in paths if path.is_dir())
    return dirs + ((Path.cwd(),) if len(dirs) < len(paths) else ())


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the daemon's base URL ({DEFAULT_URL})")
    _add_token_file(parser)


def _add_token_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding the daemon's ingest token (default: $SYNCD_INGEST_TOKEN)",
    )


def _client_token(args: argparse.Namespace) -> str | None:
    from syncd.commands.tokens import read_token

    return read_token(args.token_file, "--token-file")


def _validate(args: argparse.Namespace) -> int:
    from syncd.commands.validate import validate

    git = _git_ref(args)
    if git is not None and args.paths:
        raise UsageError("with --git, name the directory to check with --git-path, not PATH")
    paths = args.paths or [Path(".")]
    return validate(
        paths,
        fmt=cast(OutputFormat | None, args.format),
        strict=args.strict,
        allow_plaintext_tokens=args.allow_plaintext_tokens,
        reach=_reach(args, _validate_roots(paths)),
        exclude=tuple(args.exclude),
        allow_empty=args.allow_empty,
        git=git,
    )


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate",
        help="check integration files (YAML syntax, schema, semantics)",
        description="Check integration files and print every error as file:line:col. "
        "Exit 0 when valid, 1 when invalid, 2 on a usage error.",
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or directories (*.yaml, *.yml; hidden directories skipped); default: .",
    )
    validate.add_argument(
        "--format",
        choices=["text", "json", "github"],
        default=None,
        help="output format (default: github under GitHub Actions, else text)",
    )
    validate.add_argument("--strict", action="store_true", help="fail on warnings too")
    validate.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 when no YAML file is found (by default that is a failure)",
    )
    _add_exclude(validate)
    _add_plaintext(validate)
    _add_reach(validate)
    _add_mutes(validate, checks_commits=True)
    _add_git_ref(validate, validate)
    validate.set_defaults(handler=_validate)


def _plan(args: argparse.Namespace) -> int:
    from syncd.commands.plan import plan, plan_replay

    if args.replay is not None:
        return plan_replay(
            args.replay,
            args.config,
            against_config=args.against_config,
            against=args.against,
            fmt=args.format or "text",
            exclude=tuple(args.exclude),
        )
    return plan(
        args.config,
        against=args.against,
        against_config=args.against_config,
        fmt=args.format or "text",
        token=_client_token(args),
        reach=_reach(args, (args.config,) if args.config is not None else ()),
        exclude=tuple(args.exclude),
        git=_git_ref(args),
    )


def _add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan",
        help="show what a config dir would change in the running daemon",
        description="Compare a config directory (or a git ref, with --git) with the running "
        "daemon's registry (or an empty one). Exit 0 when nothing would change, 1 when "
        "something would, 2 on error.",
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="DIR",
        help="the directory of integration files (*.yaml, *.yml, in subdirectories too)",
    )
    plan.add_argument("--against", metavar="URL", help=f"the daemon's base URL, e.g. {DEFAULT_URL}")
    plan.add_argument(
        "--replay",
        type=Path,
        metavar="EVENTS.jsonl",
        help="run these recorded events (one event per line) through --config on a virtual "
        "clock and count the messages per integration and room",
    )
    plan.add_argument(
        "--against-config",
        type=Path,
        metavar="DIR",
        help="the set to compare with instead of a daemon (a checkout of the one in use); "
        "with --replay, the set whose counts are compared",
    )
    plan.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        help="text (default), markdown for a pull-request comment, or json",
    )
    _add_token_file(plan)
    _add_exclude(plan)
    _add_reach(plan)
    _add_mutes(plan, checks_commits=True)
    _add_git_ref(plan, source)
    plan.set_defaults(handler=_plan)


def _add_git_ref(parser: argparse.ArgumentParser, source: argparse._ActionsContainer) -> None:
    """The flags of a git ref read once (``validate --git``, ``plan --git``): the
    fetch's, without the daemon's schedule and webhook. ``source`` holds ``--git``
    (a group, where it excludes the other source)."""
    source.add_argument(
        "--git",
        metavar="URL",
        help="check a git remote's ref instead, fetched into a temporary directory: "
        "https://, ssh://, USER@HOST:PATH or file:// (http:// and git:// with --allow-http-git)",
    )
    git = parser.add_argument_group("git ref (with --git)")
    git.add_argument("--git-ref", metavar="REF", help="branch or tag (default: the remote's HEAD)")
    git.add_argument(
        "--git-path",
        default="",
        metavar="DIR",
        help="the directory holding the YAML (default: top)",
    )
    git.add_argument(
        "--git-timeout",
        type=float,
        default=DEFAULT_GIT_TIMEOUT,
        metavar="SECONDS",
        help=f"longest the fetch may take (default {DEFAULT_GIT_TIMEOUT:g})",
    )
    git.add_argument(
        "--git-token-file", type=Path, metavar="PATH", help="HTTPS token or password (never shown)"
    )
    git.add_argument("--git-ssh-key-file", type=Path, metavar="PATH", help="SSH private key")
    git.add_argument(
        "--git-known-hosts", type=Path, metavar="PATH", help="SSH host keys (needed with ssh)"
    )
    git.add_argument("--git-ca-file", type=Path, metavar="PATH", help="CA bundle for https://")
    git.add_argument(
        "--git-max-size", metavar="SIZE", help="most the fetch may bring, e.g. 100M (default 100M)"
    )
    git.add_argument(
        "--git-verify",
        nargs=2,
        metavar=("KIND", "FILE"),
        help="accept only a commit signed by: allowed-signers FILE (SSH) or gpg KEYRING",
    )
    git.add_argument(
        "--allow-http-git",
        action="store_true",
        help="fetch over http:// and git://, where anyone on the way can read or change it",
    )


def _git_ref(args: argparse.Namespace) -> GitSettings | None:
    """The git ref ``--git`` and its flags name, or None without ``--git``."""
    if args.git is None:
        return None
    from syncd.service.daemon import GitSettings

    return GitSettings(
        url=args.git,
        ref=args.git_ref,
        path=args.git_path,
        timeout=args.git_timeout,
        token_file=args.git_token_file,
        ssh_key_file=args.git_ssh_key_file,
        known_hosts=args.git_known_hosts,
        ca_file=args.git_ca_file,
        max_size=args.git_max_size,
        verify=(args.git_verify[0], Path(args.git_verify[1])) if args.git_verify else None,
        allow_http=args.allow_http_git,
    )


def _git_options(args: argparse.Namespace) -> GitSettings | None:
    """``syncd run``'s git source: the ref ``_git_ref`` reads, with what only a
    daemon has (its schedule, its webhook, whether it follows a force push)."""
    git = _git_ref(args)
    if git is None:
        return None
    return replace(
        git,
        interval=args.git_interval,
        forbid_rewrites=args.git_forbid_rewrites,
        webhook_secret_file=args.git_webhook_secret_file,
    )


def _run(args: argparse.Namespace) -> int:
    from syncd.commands.run import RunOptions, run
    from syncd.service.recorder import DEFAULT_DAYS

    return run(
        RunOptions(
            config_dir=args.config,
            git=_git_options(args),
            listen=args.listen,
            state_dir=args.state_dir,
            workers=args.workers,
            max_in_flight=args.max_in_flight,
            ingest_token_file=args.ingest_token_file,
            retry_base_delay=args.retry_base_delay,
            retry_max_delay=args.retry_max_delay,
            send_timeout=args.send_timeout,
            lease=args.lease,
            max_age=args.max_age,
            resync_interval=args.resync_interval,
            allow_plaintext_tokens=args.allow_plaintext_tokens,
            log_format=cast(LogFormat, args.log_format),
            reach=_mute_bounds(
                args, _reach(args, (args.config,) if args.config else ()), daemon=True
            ),
            max_prune=args.max_prune,
            exclude=tuple(args.exclude),
            reconcile_timeout=args.reconcile_timeout,
            git_dir=args.git_dir,
            allowed_hosts=tuple(args.allow_host),
            max_notifications_per_request=args.max_notifications_per_request,
            max_event_bytes=args.max_event_bytes,
            prune_grace=args.prune_grace,
            store_url=args.store or os.environ.get(STORE_ENV) or None,
            store_password_file=args.store_password_file,
            store_password=_store_password(args),
            skew_warning=args.skew_warning,
            record_events=args.record_events,
            record_days=_positive("--record-days", args.record_days, DEFAULT_DAYS),
        )
    )


STORE_ENV = "SYNCD_STORE_URL"


def _store_url(args: argparse.Namespace, flag: str) -> str:
    url: str | None = getattr(args, "store", None) or os.environ.get(STORE_ENV)
    if not url:
        raise UsageError(f"give {flag} postgresql://USER@HOST/DATABASE or set {STORE_ENV}")
    return url


def _store_password(args: argparse.Namespace) -> str | None:
    """The store's password from ``--store-password-file`` (its last newline
    dropped); None: the URL's, or libpq's ``PGPASSFILE``."""
    path: Path | None = args.store_password_file
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n") or None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --store-password-file {path}: {reason}") from None


def _add_store_options(parser: argparse.ArgumentParser, flag: str = "--store") -> None:
    parser.add_argument(
        flag,
        dest="store",
        metavar="URL",
        help="a PostgreSQL store that several daemons share: postgresql://USER@HOST/DATABASE "
        f"or a libpq key=value string (default: ${STORE_ENV}); no password in it: use "
        "--store-password-file or PGPASSFILE",
    )
    parser.add_argument(
        "--store-password-file",
        type=Path,
        metavar="PATH",
        help="file holding the store's password (never printed)",
    )


def _seconds(parser: argparse.ArgumentParser, flag: str, default: float, help: str) -> None:
    parser.add_argument(flag, type=float, default=default, metavar="SECONDS", help=help)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from syncd.service.daemon import DaemonConfig, GitSettings

    default = DaemonConfig(Path("."))
    run = commands.add_parser(
        "run",
        help="run the daemon: watch the config dir and keep the registry reconciled",
        description="Watch the config dir and apply each valid change (an invalid one keeps "
        "the last-known-good set), take error events in over HTTP and deliver the "
        "notifications to HipChat from a durable queue. Exit 0 after SIGTERM, 130 on "
        "Ctrl-C, 1 with no valid config to start on, "
        "2 on a usage error (bad flag, busy port, unusable state dir).",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="DIR",
        help="the directory of integration files (*.yaml, *.yml, in subdirectories too)",
    )
    source.add_argument(
        "--git",
        metavar="URL",
        help="follow a git remote instead: https://, ssh://, USER@HOST:PATH or file:// "
        "(http:// and git:// with --allow-http-git); see the --git-* flags",
    )
    run.add_argument(
        "--listen",
        default=f"{default.host}:{default.port}",
        metavar="HOST:PORT",
        help=f"HTTP address, [IPV6]:PORT for IPv6 (default {default.host}:{default.port}; "
        "port 0 picks one)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=default.state_dir,
        metavar="DIR",
        help="where the lock, the last-known-good set and (without --store) the outbox "
        f"live (default {default.state_dir})",
    )
    _add_store_options(run)
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=default.workers,
        help="delivery workers (tasks on one event loop), 1 to 4096; one HipChat server "
        "gets at most half "
        f"(default {default.workers})",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        default=default.max_in_flight,
        help="sends one HipChat server may have in flight at most, 1 to 1024; below it, "
        "as many as its answers show it takes, and never more than half the --workers "
        f"(default {default.max_in_flight})",
    )
    run.add_argument(
        "--ingest-token-file",
        type=Path,
        metavar="PATH",
        help="file holding the bearer token POST /v1/events requires "
        "(or set SYNCD_INGEST_TOKEN); required to listen beyond loopback",
    )
    _seconds(
        run,
        "--retry-base-delay",
        default.retry_base,
        f"first retry delay; doubles per attempt, with jitter (default {default.retry_base:g})",
    )
    _seconds(
        run,
        "--retry-max-delay",
        default.retry_cap,
        f"longest wait between two attempts (default {default.retry_cap:g})",
    )
    _seconds(
        run,
        "--send-timeout",
        default.send_timeout,
        "longest one request to HipChat may take, connect to last byte "
        f"(default {default.send_timeout:g})",
    )
    run.add_argument(
        "--lease",
        type=float,
        metavar="SECONDS",
        help="how long a daemon's claim on a room's next notification holds; with --store, "
        "a daemon that dies holding one leaves that room to wait this long at most for "
        f"another to send it; more than --send-timeout (default {default.lease:g}, or "
        "twice --send-timeout where that is longer)",
    )
    _seconds(
        run,
        "--max-age",
        default.max_age,
        "dead-letter a notification still undelivered after this long "
        f"(default {default.max_age:g})",
    )
    run.add_argument(
        "--log-format",
        choices=["auto", "text", "journal", "json"],
        default="auto",
        help="auto: journal priorities under systemd, else text (default auto)",
    )
    _add_plaintext(run)
    _add_exclude(run)
    _seconds(
        run,
        "--resync-interval",
        default.resync_interval,
        "full re-read of the config dir, to cover missed file events "
        f"(default {default.resync_interval:g})",
    )
    run.add_argument(
        "--max-prune",
        type=int,
        metavar="N",
        help="refuse a change that would remove more than N integrations at once "
        "(default: no limit)",
    )
    _seconds(
        run,
        "--reconcile-timeout",
        default.reconcile_timeout,
        "longest one reconcile may spend reading and checking the config; past it the "
        "set is rejected and the one in use stays; POST /-/reload waits as long "
        f"(default {default.reconcile_timeout:g})",
    )
    run.add_argument(
        "--git-dir",
        type=Path,
        metavar="DIR",
        help="the top of the git checkout holding --config, whose commit names the "
        "applied revision; needed when --config is below the top, or the checkout "
        "belongs to another user (default: git only when --config is a checkout's top)",
    )
    run.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name or address the HTTP API answers to besides its --listen address, "
        "such as the name a proxy, Prometheus or a colleague uses (repeatable; no port); "
        "requests naming any other host get 421, so a web page cannot reach the daemon "
        "through a DNS name it controls; '*' answers every name, only behind a proxy "
        "that checks Host itself",
    )
    run.add_argument(
        "--max-notifications-per-request",
        type=int,
        default=default.max_notifications_per_request,
        metavar="N",
        help="refuse (413, nothing stored) a POST /v1/events whose events would queue more "
        "notifications than this, an event held in a throttle window counting as one "
        f"(default {default.max_notifications_per_request})",
    )
    run.add_argument(
        "--max-event-bytes",
        type=int,
        default=default.max_event_bytes,
        metavar="N",
        help="refuse (413) an event larger than this many bytes as compact JSON "
        f"(default {default.max_event_bytes})",
    )
    _seconds(
        run,
        "--prune-grace",
        default.prune_grace,
        "an integration removed and back within this long, with the same endpoint and "
        "rooms, gets back what its removal cancelled; 0 makes removal final "
        f"(default {default.prune_grace:g})",
    )
    _seconds(
        run,
        "--skew-warning",
        default.skew_warning,
        "with --store: /status warns once the daemons sharing the store have applied "
        f"different revisions for this long (default {default.skew_warning:g})",
    )
    run.add_argument(
        "--record-events",
        type=Path,
        metavar="DIR",
        help="write the events accepted to DIR, one JSONL file per UTC day, for "
        "`syncd plan --replay` (off by default; the files hold the events' attributes)",
    )
    run.add_argument(
        "--record-days",
        type=int,
        metavar="N",
        help=f"with --record-events: keep N days of files (default {default.record_days})",
    )
    _add_git(run, GitSettings(""))
    _add_reach(run)
    _add_mutes(run, checks_commits=False)
    run.set_defaults(handler=_run)


def _add_git(run: argparse.ArgumentParser, default: GitSettings) -> None:
    """The flags of a git source (``--git``)."""
    git = run.add_argument_group("git source (with --git)")
    git.add_argument("--git-ref", metavar="REF", help="branch or tag (default: the remote's HEAD)")
    git.add_argument(
        "--git-path",
        default="",
        metavar="DIR",
        help="the directory holding the YAML (default: top)",
    )
    git.add_argument(
        "--git-interval",
        type=float,
        default=default.interval,
        metavar="SECONDS",
        help=f"fetch this often, with up to a tenth more as jitter (default {default.interval:g})",
    )
    git.add_argument(
        "--git-timeout",
        type=float,
        default=default.timeout,
        metavar="SECONDS",
        help=f"longest one fetch may take (default {default.timeout:g})",
    )
    git.add_argument(
        "--git-token-file", type=Path, metavar="PATH", help="HTTPS token or password (never shown)"
    )
    git.add_argument("--git-ssh-key-file", type=Path, metavar="PATH", help="SSH private key")
    git.add_argument(
        "--git-known-hosts", type=Path, metavar="PATH", help="SSH host keys (needed with ssh)"
    )
    git.add_argument("--git-ca-file", type=Path, metavar="PATH", help="CA bundle for https://")
    git.add_argument(
        "--git-max-size",
        metavar="SIZE",
        help="most a checkout may hold, e.g. 100M (default 100M)",
    )
    git.add_argument(
        "--git-webhook-secret-file",
        type=Path,
        metavar="PATH",
        help="secret of POST /v1/hooks/git (GitHub, GitLab, Gitea signatures; content type "
        "application/json); no webhook route without it",
    )
    git.add_argument(
        "--git-verify",
        nargs=2,
        metavar=("KIND", "FILE"),
        help="apply only commits signed by: allowed-signers FILE (SSH) or gpg KEYRING",
    )
    git.add_argument(
        "--git-forbid-rewrites",
        action="store_true",
        help="reject a commit that does not descend from the applied one (a force push)",
    )
    git.add_argument(
        "--allow-http-git",
        action="store_true",
        help="fetch over http:// and git://, where anyone on the way can read or change it",
    )


def _test(args: argparse.Namespace) -> int:
    from syncd.commands.test import test

    return test(
        args.config,
        uids=args.uid,
        send=args.send,
        allow_plaintext_tokens=args.allow_plaintext_tokens,
        reach=_reach(args, (args.config,)),
        exclude=tuple(args.exclude),
    )


def _add_test(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    test = commands.add_parser(
        "test",
        help="check each room's token against HipChat (auth_test), optionally send a message",
        description="Exit 0 when every room is OK, 1 when one is not, 2 on a config error.",
    )
    _add_config(test)
    test.add_argument(
        "--uid", action="append", default=[], help="only this integration (repeatable)"
    )
    test.add_argument("--send", action="store_true", help="also send a test notification")
    _add_plaintext(test)
    _add_exclude(test)
    _add_reach(test)
    test.set_defaults(handler=_test)


def _demo(args: argparse.Namespace) -> int:
    from syncd.commands.demo import run, write_tour

    return write_tour(args.write_tour) if args.write_tour else run()


def _status(args: argparse.Namespace) -> int:
    from syncd.commands.status import status

    return status(args.url, as_json=args.json, token=_client_token(args))


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show a running daemon's status as a table (or --json)",
        description="Exit 0 healthy; 1 degraded (the last reconcile failed, a room is "
        "unhealthy, dead letters wait, or the outbox was lost at start); 2 when the "
        "daemon cannot be reached or refuses the token.",
    )
    _add_url(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=_status)


def _emit(args: argparse.Namespace) -> int:
    from syncd.commands.emit import build_event, emit, parse_attributes

    event = build_event(
        args.project,
        args.fingerprint,
        timestamp=args.timestamp,
        classifiers=args.classifiers,
        callstack=args.callstack,
        attributes=parse_attributes(args.attributes),
        optional={"hostname": args.hostname, "href": args.href, "new_group": args.new_group},
    )
    return emit(args.url, event, token=_client_token(args), wait_ready=args.wait_ready)


def _add_emit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emit = commands.add_parser(
        "emit",
        help="send one error event to a running daemon",
        description="Post one event to POST /v1/events. The bearer token is read from "
        "--token-file or SYNCD_INGEST_TOKEN. Exit 0 when accepted for an integration; 1 when "
        "refused, or accepted for a project no integration serves; 2 on a usage error or "
        "when the daemon cannot be reached.",
    )
    emit.add_argument("--project", required=True, help="the error-reporting project")
    emit.add_argument("--fingerprint", required=True, help="the error group's fingerprint")
    emit.add_argument("--timestamp", help="RFC 3339 with an offset (default: now)")
    emit.add_argument(
        "--classifier",
        action="append",
        default=[],
        dest="classifiers",
        help="an error class, such as KeyError (repeatable)",
    )
    emit.add_argument(
        "--frame",
        action="append",
        default=[],
        dest="callstack",
        help="a callstack frame, innermost first (repeatable)",
    )
    emit.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="attributes",
        help="an attribute of the event (repeatable)",
    )
    emit.add_argument("--hostname", help="the host the error happened on")
    emit.add_argument("--href", help="a link to the error in the error-reporting service")
    emit.add_argument(
        "--new-group",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="say whether the fingerprint is new (default: the daemon decides)",
    )
    emit.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the daemon to be up and ready before sending "
        "(default 0: send at once)",
    )
    _add_url(emit)
    emit.set_defaults(handler=_emit)


def _outbox_list(args: argparse.Namespace) -> int:
    from syncd.commands.outbox import list_items

    return list_items(
        args.url, dead=not args.pending, uid=args.uid, limit=args.limit, token=_client_token(args)
    )


def _outbox_retry(args: argparse.Namespace) -> int:
    from syncd.commands.outbox import retry

    return retry(
        args.url,
        args.ids,
        all_dead=args.all_dead,
        uid=args.uid,
        room=args.room,
        token=_client_token(args),
    )


def _add_outbox(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    outbox = commands.add_parser(
        "outbox",
        help="list a running daemon's dead letters (or queue), and send dead letters again",
        description="Talk to a running daemon's outbox: `list` shows dead letters (or what "
        "is still to send), `retry` queues dead letters again in their room's order.",
    )
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="dead letters (default) or pending notifications, oldest first",
        description="Exit 0 when the daemon answered, 2 when it could not be reached.",
    )
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--dead", action="store_true", help="dead letters (the default)")
    which.add_argument("--pending", action="store_true", help="notifications still to send")
    listing.add_argument("--uid", help="only this integration")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _add_url(listing)
    listing.set_defaults(handler=_outbox_list)
    again = actions.add_parser(
        "retry",
        help="queue dead letters again: by id, or --all-dead [--uid UID] [--room ROOM]",
        description="Exit 0 when dead letters were queued again, 1 when none matched, "
        "2 on a usage error or when the daemon could not be reached.",
    )
    again.add_argument(
        "ids", type=int, nargs="*", metavar="ID", help="dead letter ids, as outbox list shows"
    )
    again.add_argument("--all-dead", action="store_true", help="every dead letter that matches")
    again.add_argument("--uid", help="with --all-dead: only this integration")
    again.add_argument("--room", help="with --all-dead: only this room")
    _add_url(again)
    again.set_defaults(handler=_outbox_retry)


def _rules_test(args: argparse.Namespace) -> int:
    if args.suite is not None:
        if args.uid or args.seen_before:
            raise UsageError("--uid and --seen-before go with --event, not --suite")
        from syncd.commands.suite import SuiteFormat, run_suite

        return run_suite(
            args.config,
            args.suite,
            fmt=cast(SuiteFormat | None, args.format),
            exclude=tuple(args.exclude),
        )
    if args.format is not None:
        raise UsageError("--format goes with --suite")
    from syncd.commands.rules import test_event

    return test_event(
        args.config,
        args.event,
        uids=args.uid,
        new_group=not args.seen_before,
        exclude=tuple(args.exclude),
    )


def _store_migrate(args: argparse.Namespace) -> int:
    from syncd.commands.store import migrate

    return migrate(_store_url(args, "--store"), password=_store_password(args))


def _store_check(args: argparse.Namespace) -> int:
    from syncd.commands.store import check

    return check(_store_url(args, "--store"), password=_store_password(args))


def _store_copy(args: argparse.Namespace) -> int:
    from syncd.commands.store import copy

    return copy(args.source, _store_url(args, "--to"), password=_store_password(args))


def _add_store(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = commands.add_parser(
        "store",
        help="a shared PostgreSQL store: bring its schema up to date, check it, move to it",
        description="Work on the PostgreSQL store that several daemons share (--store or "
        f"${STORE_ENV}): `migrate` its schema ahead of a rollout, `check` it, or `copy` a "
        "single host's outbox into it.",
    )
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="bring the schema up to date (daemons do it too as they start)",
        description="Exit 0 once the schema is up to date, 1 when the database holds a "
        "newer schema than this syncd knows, 2 when it cannot be reached or used.",
    )
    _add_store_options(migrate)
    migrate.set_defaults(handler=_store_migrate)
    check = actions.add_parser(
        "check",
        help="say whether the schema is the one this syncd knows",
        description="Exit 0 when the schema is current, 1 when it is behind (run migrate) "
        "or newer (a later syncd migrated it), 2 when it cannot be reached.",
    )
    _add_store_options(check)
    check.set_defaults(handler=_store_check)
    copy = actions.add_parser(
        "copy",
        help="move a stopped daemon's outbox (sqlite:PATH) into an unused PostgreSQL store",
        description="Move pending notifications, dead letters, throttle windows and known "
        "fingerprints, in their order. Exit 0 once moved, 1 when the target is in use or "
        "not empty (nothing changed), 2 when either cannot be reached or used.",
    )
    copy.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="sqlite:PATH",
        help="the single host's outbox, e.g. sqlite:/var/lib/syncd/outbox.db",
    )
    _add_store_options(copy, "--to")
    copy.set_defaults(handler=_store_copy)


def _add_rules(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser(
        "rules",
        help="see what the Common Settings do with an event",
        description="Judge an event with the config's actions and trigger, as the daemon "
        "would, without sending anything: `test` shows the verdict per integration.",
    )
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = actions.add_parser(
        "test",
        help="per integration: would this event notify, which action decided, the message; "
        "or a suite of timed cases",
        description="Nothing is sent and no token is read. With --event: exit 0 when the "
        "event would notify through at least one integration, 1 when not. With --suite: "
        "exit 0 when every case passes, 1 when one fails. Exit 2 on a usage error, an "
        "invalid config or a broken suite.",
    )
    _add_config(test)
    given = test.add_mutually_exclusive_group(required=True)
    given.add_argument("--event", metavar="FILE", help="one event as JSON (- for stdin)")
    given.add_argument(
        "--suite",
        type=Path,
        metavar="FILE",
        help="a rule suite (YAML): cases of timed events and what each integration does, "
        "run on a virtual clock",
    )
    test.add_argument(
        "--format",
        choices=["text", "github"],
        default=None,
        help="with --suite: output format (default: github under GitHub Actions, else text)",
    )
    test.add_argument(
        "--uid", action="append", default=[], help="only this integration (repeatable)"
    )
    test.add_argument(
        "--seen-before",
        action="store_true",
        help="take the fingerprint as seen before (default: a new error group), "
        "unless the event says new_group",
    )
    _add_exclude(test)
    test.set_defaults(handler=_rules_test)


def _hipchat_server(args: argparse.Namespace) -> int:
    from syncd.commands.hipchat_server import serve

    return serve(
        args.listen,
        args.rooms,
        latency_ms=args.latency,
        fail_rate=args.fail_rate,
        rate_limits=args.rate_limits,
    )


def _add_hipchat_server(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "hipchat-server",
        help="run a local HipChat look-alike that prints what it receives",
        description="Serve HipChat's room notification API (v2) for the rooms given, "
        "for trying syncd out and for CI. Exit 0 after SIGTERM, 130 on Ctrl-C, 2 on a "
        "usage error.",
    )
    server.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8080; port 0 picks one)",
    )
    server.add_argument(
        "--room",
        action="append",
        required=True,
        metavar="ID=TOKEN",
        dest="rooms",
        help="a room and the token it accepts (repeatable, one per room)",
    )
    server.add_argument(
        "--latency", type=float, default=0.0, metavar="MS", help="delay every answer (default 0)"
    )
    server.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="answer 503 to this fraction of requests, 0 to 1 (default 0)",
    )
    server.add_argument(
        "--rate-limits",
        choices=("hipchat", "server", "none"),
        default="none",
        help="enforce HipChat's limits (30 messages a minute per room, 500 requests per "
        "5 minutes per token, 429 past either), HipChat Server's (100 requests per 5 "
        "minutes per token, 403), or none (default)",
    )
    server.set_defaults(handler=_hipchat_server)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the daemon on the shipped example against a local HipChat look-alike",
        description="Start the daemon in this process on the shipped example, against a "
        "local HipChat-compatible server, send sample events and print what each room "
        "received. Needs nothing else. Exit 0 when every notification was delivered.",
    )
    demo.add_argument(
        "--write-tour",
        type=Path,
        metavar="DIR",
        help="instead: write the by-hand tour's config (one integration, for "
        "`syncd hipchat-server` on 127.0.0.1:8080) into DIR, and exit",
    )
    demo.set_defaults(handler=_demo)


_COMMANDS = {
    "validate": _add_validate,
    "plan": _add_plan,
    "run": _add_run,
    "test": _add_test,
    "status": _add_status,
    "emit": _add_emit,
    "outbox": _add_outbox,
    "store": _add_store,
    "rules": _add_rules,
    "hipchat-server": _add_hipchat_server,
    "demo": _add_demo,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """With ``only``, that command alone: defining every command's arguments costs
    a pre-commit hook's `syncd validate` a tenth of its time."""
    parser = argparse.ArgumentParser(
        prog="syncd", description="HipChat integrations as code: validate, plan and run."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if only in (None, name):
            add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    only = given[0] if given and given[0] in _COMMANDS else None
    args = build_parser(only).parse_args(given)
    handler = cast(Command, args.handler)
    with handled(args.command) as outcome:
        outcome.code = handler(args)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
