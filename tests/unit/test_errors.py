from __future__ import annotations

import pytest

from syncd.errors import EXIT_INTERRUPTED, Failure, UsageError, handled


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with handled("run") as result:
        raise UsageError("--listen wants HOST:PORT")
    assert result.code == 2
    assert capsys.readouterr().err == "syncd run: error: --listen wants HOST:PORT\n"


def test_a_failure_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with handled("plan") as result:
        raise Failure("refused")
    assert result.code == 1


def test_ctrl_c_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    with handled("validate") as result:
        raise KeyboardInterrupt
    assert result.code == EXIT_INTERRUPTED == 130


def test_an_unexpected_error_is_reported_as_a_bug_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_DEBUG", raising=False)
    with handled("status") as result:
        raise ZeroDivisionError("division by zero")
    err = capsys.readouterr().err
    assert result.code == 1
    assert err == (
        "syncd status: internal error (a bug in syncd, please report it): "
        "ZeroDivisionError: division by zero\n"
    )


def test_a_command_that_returns_keeps_its_code() -> None:
    with handled("validate") as result:
        result.code = 0
    assert result.code == 0
