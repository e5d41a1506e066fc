"""Command line: parses arguments and hands over to the core."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from syncd import __version__, semantics
from syncd import plan as planning
from syncd.configset import ConfigSet, PathNotFoundError, load_config_set
from syncd.diagnostics import OutputFormat, count_errors, render, summary
from syncd.model import Integration

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _default_format() -> OutputFormat:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd", description="HipChat integrations as code: validate, plan and run."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        default=[Path(".")],
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
        "--allow-plaintext-tokens",
        action="store_true",
        help="accept literal room tokens without a warning",
    )
    validate.set_defaults(handler=cmd_validate)

    plan = commands.add_parser(
        "plan",
        help="show what a config dir would change in the running daemon",
        description="Compare a config directory with the running daemon's registry (or an "
        "empty one). Exit 0 when nothing would change, 1 when something would, 2 on error.",
    )
    plan.add_argument("--config", type=Path, required=True, metavar="DIR")
    plan.add_argument(
        "--against", metavar="URL", help="the daemon's base URL, e.g. http://127.0.0.1:8514"
    )
    plan.set_defaults(handler=cmd_plan)

    run = commands.add_parser(
        "run",
        help="run the daemon: watch the config dir and keep the registry reconciled",
    )
    run.add_argument("--config", type=Path, required=True, metavar="DIR")
    run.add_argument(
        "--listen",
        default="127.0.0.1:8514",
        metavar="HOST:PORT",
        help="HTTP address (default 127.0.0.1:8514; port 0 picks a free one)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/syncd"),
        metavar="DIR",
        help="where the outbox lives (default /var/lib/syncd)",
    )
    run.add_argument("--workers", type=int, default=4, help="delivery threads (default 4)")
    run.add_argument(
        "--ingest-token-file",
        type=Path,
        metavar="PATH",
        help="file holding the bearer token POST /v1/events requires "
        "(or set SYNCD_INGEST_TOKEN); required to listen beyond loopback",
    )
    run.add_argument(
        "--retry-base-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="first retry delay; doubles per attempt, with jitter (default 1)",
    )
    run.add_argument(
        "--retry-max-delay",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait between two attempts (default 300)",
    )
    run.add_argument(
        "--max-age",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="dead-letter a notification still undelivered after this long (default 86400)",
    )
    run.add_argument(
        "--log-format",
        choices=["auto", "text", "journal", "json"],
        default="auto",
        help="auto: journal priorities under systemd, else text (default auto)",
    )
    run.add_argument("--allow-plaintext-tokens", action="store_true")
    run.add_argument(
        "--resync-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="full re-read of the config dir, to cover missed file events (default 60)",
    )
    run.set_defaults(handler=cmd_run)

    test = commands.add_parser(
        "test",
        help="check each room's token against HipChat (auth_test), optionally send a message",
        description="Exit 0 when every room is OK, 1 when one is not, 2 on a config error.",
    )
    test.add_argument("--config", type=Path, required=True, metavar="DIR")
    test.add_argument("--uid", action="append", default=[], help="only this integration")
    test.add_argument("--send", action="store_true", help="also send a test notification")
    test.add_argument("--allow-plaintext-tokens", action="store_true")
    test.set_defaults(handler=cmd_test)

    demo = commands.add_parser(
        "demo",
        help="run the daemon on the shipped example against a local HipChat look-alike",
    )
    demo.set_defaults(handler=cmd_demo)

    status = commands.add_parser(
        "status", help="show a running daemon's status as a table (or --json)"
    )
    status.add_argument("--url", default="http://127.0.0.1:8514", help="the daemon's base URL")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=cmd_status)

    emit = commands.add_parser(
        "emit",
        help="send one error event to a running daemon",
        description="Post one event to POST /v1/events. The bearer token is read from "
        "SYNCD_INGEST_TOKEN when set. Exit 0 when accepted, 1 when refused, 2 on error.",
    )
    emit.add_argument("--project", required=True)
    emit.add_argument("--fingerprint", required=True)
    emit.add_argument("--timestamp", help="RFC 3339 (default: now)")
    emit.add_argument("--classifier", action="append", default=[], dest="classifiers")
    emit.add_argument("--frame", action="append", default=[], dest="callstack")
    emit.add_argument(
        "--attribute", action="append", default=[], metavar="NAME=VALUE", dest="attributes"
    )
    emit.add_argument("--hostname")
    emit.add_argument("--href")
    emit.add_argument("--new-group", action=argparse.BooleanOptionalAction, default=None)
    emit.add_argument("--url", default="http://127.0.0.1:8514", help="the daemon's base URL")
    emit.set_defaults(handler=cmd_emit)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    # Loaded data has no reference cycles: the cyclic collector only costs time
    # here (a third of it on 2,000 files) and frees no memory.
    gc.disable()
    try:
        return _validate(args)
    finally:
        gc.enable()


def _validate(args: argparse.Namespace) -> int:
    options = semantics.Options(allow_plaintext_tokens=args.allow_plaintext_tokens)
    try:
        config = load_config_set(args.paths, options)
    except PathNotFoundError as exc:
        print(f"syncd validate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fmt = cast(OutputFormat, args.format or _default_format())
    diagnostics = list(config.diagnostics)
    sys.stdout.write(render(diagnostics, fmt, len(config.files)))
    if fmt != "json":
        if not config.files:
            print("syncd: no YAML files found", file=sys.stderr)
        else:
            print(f"syncd: {summary(diagnostics, len(config.files))}", file=sys.stderr)
    failed = count_errors(diagnostics) > 0 or (args.strict and bool(diagnostics))
    return EXIT_INVALID if failed else EXIT_OK


def _load_valid(command: str, path: Path, options: semantics.Options) -> ConfigSet | None:
    """The config set, or None after printing why it cannot be used."""
    try:
        config = load_config_set([path], options)
    except PathNotFoundError as exc:
        print(f"syncd {command}: error: {exc}", file=sys.stderr)
        return None
    if not config.valid:
        sys.stdout.write(render(list(config.diagnostics), "text", len(config.files)))
        print(f"syncd {command}: the config is invalid", file=sys.stderr)
        return None
    return config


def cmd_plan(args: argparse.Namespace) -> int:
    # The HTTP client is imported only by the commands that talk to a daemon,
    # so that `syncd validate` in a pre-commit hook starts fast.
    from syncd.remote import RegistryFetchError, fetch_registry

    config = _load_valid("plan", args.config, semantics.Options(allow_plaintext_tokens=True))
    if config is None:
        return EXIT_USAGE
    active: dict[str, Integration] = {}
    against = "an empty registry"
    if args.against:
        try:
            active = fetch_registry(args.against)
        except RegistryFetchError as exc:
            print(f"syncd plan: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        against = args.against
    result = planning.plan([i.public() for i in config.integrations], active)
    sys.stdout.write(planning.render_plan(result, against=against))
    return EXIT_INVALID if result.changed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from syncd.daemon import DaemonConfig, run

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"syncd run: error: --listen wants HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return EXIT_USAGE
    if not args.config.is_dir():
        print(f"syncd run: error: not a directory: {args.config}", file=sys.stderr)
        return EXIT_USAGE
    token = os.environ.get("SYNCD_INGEST_TOKEN") or None
    if args.ingest_token_file:
        try:
            token = args.ingest_token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            print(
                f"syncd run: error: cannot read the ingest token: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
    return run(
        log_format=args.log_format,
        config=DaemonConfig(
            config_dir=args.config,
            state_dir=args.state_dir,
            host=host.strip("[]"),
            port=int(port),
            ingest_token=token,
            allow_plaintext_tokens=args.allow_plaintext_tokens,
            resync_interval=args.resync_interval,
            workers=args.workers,
            retry_base=args.retry_base_delay,
            retry_cap=args.retry_max_delay,
            max_age=args.max_age,
        ),
    )


def cmd_test(args: argparse.Namespace) -> int:
    from syncd.hipchat import HipChatClient
    from syncd.roomtest import check_rooms

    options = semantics.Options(allow_plaintext_tokens=args.allow_plaintext_tokens)
    config = _load_valid("test", args.config, options)
    if config is None:
        return EXIT_USAGE
    chosen = [i for i in config.integrations if not args.uid or i.uid in args.uid]
    missing = set(args.uid) - {i.uid for i in chosen}
    if missing:
        print(f"syncd test: error: no integration {', '.join(sorted(missing))}", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    with HipChatClient() as client:
        for check in check_rooms(chosen, client, send=args.send):
            print(check, flush=True)
            failed += not check.ok
    return EXIT_INVALID if failed else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from syncd import demo

    return demo.run()


def cmd_status(args: argparse.Namespace) -> int:
    from syncd.remote import RegistryFetchError, fetch_status, render_status

    try:
        status = fetch_status(args.url)
    except RegistryFetchError as exc:
        print(f"syncd status: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        sys.stdout.write(render_status(status))
    return EXIT_OK


def cmd_emit(args: argparse.Namespace) -> int:
    from syncd.remote import EmitError, emit

    attributes: dict[str, str] = {}
    for pair in args.attributes:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(f"syncd emit: error: --attribute wants NAME=VALUE, got {pair!r}", file=sys.stderr)
            return EXIT_USAGE
        attributes[name] = value
    timestamp = args.timestamp or datetime.now(UTC).isoformat(timespec="seconds")
    event: dict[str, object] = {
        "project": args.project,
        "fingerprint": args.fingerprint,
        "timestamp": timestamp,
        "classifiers": args.classifiers,
        "callstack": args.callstack,
        "attributes": attributes,
    }
    for key in ("hostname", "href", "new_group"):
        if getattr(args, key) is not None:
            event[key] = getattr(args, key)
    try:
        status, answer = emit(args.url, event, token=os.environ.get("SYNCD_INGEST_TOKEN"))
    except EmitError as exc:
        print(f"syncd emit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if status == 202:
        print(f"accepted {answer['ids'][0]}: {answer['notifications']} notification(s) queued")
        return EXIT_OK
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    print(f"syncd emit: refused ({status}): {error.get('message', answer)}", file=sys.stderr)
    for problem in error.get("problems", []):
        print(f"  {problem['path']}: {problem['message']}", file=sys.stderr)
    return EXIT_INVALID


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
