"""Every command says what it does and every option what it takes: a newcomer's
first look is ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from syncd.cli import build_parser


def commands(
    parser: argparse.ArgumentParser, name: str = "syncd"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from commands(sub, f"{name} {sub_name}")


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    skipped = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    yield from (a for a in parser._actions if not isinstance(a, skipped))


def test_every_command_has_a_description() -> None:
    missing = [name for name, parser in commands(build_parser()) if not parser.description]
    assert missing == []


def test_every_option_has_help() -> None:
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in commands(build_parser())
        for action in options(parser)
        if not action.help
    ]
    assert missing == []


def test_a_repeatable_option_says_so() -> None:
    silent = [
        f"{name} {action.option_strings}"
        for name, parser in commands(build_parser())
        for action in options(parser)
        if isinstance(action, argparse._AppendAction) and "repeatable" not in str(action.help)
    ]
    assert silent == []


def test_emit_says_an_event_no_integration_serves_exits_1() -> None:
    (emit,) = [p for name, p in commands(build_parser()) if name == "syncd emit"]
    assert "accepted for a project no integration serves" in str(emit.description)
