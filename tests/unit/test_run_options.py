from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from syncd.commands.run import Listen, parse_listen
from syncd.errors import UsageError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8514", Listen("127.0.0.1", 8514)),
        ("0.0.0.0:0", Listen("0.0.0.0", 0)),
        ("localhost:65535", Listen("localhost", 65535)),
        ("[::1]:8514", Listen("::1", 8514)),
        ("[::]:80", Listen("::", 80)),
    ],
)
def test_listen_takes_host_and_port_or_bracketed_ipv6(value: str, expected: Listen) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1", "8514", ":8514", "[]:1", "::1:80"]
)
def test_listen_rejects_what_cannot_be_bound(value: str) -> None:
    with pytest.raises(UsageError, match="--listen wants"):
        parse_listen(value)


def test_the_cli_default_for_workers_is_the_dispatcher_s() -> None:
    from syncd.cli import build_parser
    from syncd.delivery.dispatch import DEFAULT_WORKERS
    from syncd.service.daemon import DaemonConfig

    args = build_parser().parse_args(["run", "--config", "x"])
    assert args.workers == DEFAULT_WORKERS == DaemonConfig(Path("x")).workers


def test_a_parser_built_for_one_command_defines_it_as_the_full_one_does() -> None:
    """main() builds only the command given, for speed; its options and help must be
    the full parser's."""
    from syncd.cli import _COMMANDS, build_parser

    def command_help(parser: argparse.ArgumentParser, name: str) -> str:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return str(commands.choices[name].format_help())

    full = build_parser()
    for name in _COMMANDS:
        assert command_help(build_parser(name), name) == command_help(full, name)


def test_the_cli_defaults_for_the_reconcile_budget_and_git_dir_are_the_daemon_s() -> None:
    from syncd.cli import build_parser
    from syncd.service.daemon import DaemonConfig

    args = build_parser().parse_args(["run", "--config", "x"])
    default = DaemonConfig(Path("x"))
    assert (args.reconcile_timeout, args.git_dir) == (30.0, None)
    assert (default.reconcile_timeout, default.git_dir) == (30.0, None)
    # A reload waits as long as one reconcile may take, unless told otherwise.
    assert default.reload_wait == 30.0
    assert DaemonConfig(Path("x"), reconcile_timeout=5).reload_wait == 5
