"""Command line: parses arguments and hands over to the core."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from syncd import __version__, semantics
from syncd.configset import PathNotFoundError, load_config_set
from syncd.diagnostics import OutputFormat, count_errors, render, summary

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
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
