"""The mutes' flags as each command takes them: ``--max-mute`` everywhere a set is
judged, an expired mute an error where a commit is checked (unless
``--allow-expired-mutes``) and a warning in the daemon, whatever it is told."""

from __future__ import annotations

from typing import Any

import pytest

import syncd.commands.run
import syncd.commands.validate
from syncd.cli import main
from syncd.config.reach import DEFAULT_MAX_MUTE, Reach


def reach_of(monkeypatch: pytest.MonkeyPatch, module: Any, *argv: str) -> Reach:
    """The ``Reach`` the command's function is given for ``argv``."""
    seen: list[Reach] = []

    def capture(*args: Any, **kwargs: Any) -> int:
        seen.append(kwargs["reach"] if "reach" in kwargs else args[0].reach)  # RunOptions
        return 0

    monkeypatch.setattr(module, module.__name__.rsplit(".", 1)[1], capture)
    assert main(list(argv)) == 0
    return seen[0]


def test_validate_errs_on_an_expired_mute_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = reach_of(monkeypatch, syncd.commands.validate, "validate", "x")
    assert (plain.expired_mutes, plain.max_mute) == ("error", 30 * 86400)
    assert DEFAULT_MAX_MUTE == 30 * 86400
    flags = ("--allow-expired-mutes", "--max-mute", "1d12h")
    allowed = reach_of(monkeypatch, syncd.commands.validate, "validate", "x", *flags)
    assert (allowed.expired_mutes, allowed.max_mute) == ("warning", 36 * 3600)


def test_the_daemon_only_warns_of_an_expired_mute(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("run", "--config", "x", "--allow-any-endpoint", "--max-mute", "12h")
    reach = reach_of(monkeypatch, syncd.commands.run, *argv)
    assert (reach.expired_mutes, reach.max_mute) == ("warning", 12 * 3600)


@pytest.mark.parametrize("value", ["0", "soon", "400d"])
def test_a_max_mute_that_is_no_duration_or_past_a_year_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "x", "--max-mute", value]) == 2
    assert "--max-mute" in capsys.readouterr().err
