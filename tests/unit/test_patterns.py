"""Action regexes are RE2: linear time, and a clear word for what RE2 leaves out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncd.config.configset import ConfigSet
from syncd.config.patterns import PatternError, compile_pattern
from tests.support.configs import errors, minimal


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"(a)\1", "backreferences"),
        ("(?=x)y", "lookahead"),
        ("(?!x)y", "negative lookahead"),
        ("(?<=x)y", "lookbehind"),
        ("[", "missing ]"),
    ],
)
def test_what_re2_cannot_compile_is_explained(pattern: str, says: str) -> None:
    with pytest.raises(PatternError, match=says):
        compile_pattern(pattern)


def test_the_usual_syntax_compiles() -> None:
    for pattern in ("^nyc$", ".*", r"\d{3}-\d+", "(?i)payments", "(?P<team>a|b)", "^(a+)+$"):
        compile_pattern(pattern)


def test_validate_reports_lookahead_at_the_regex(
    check: Callable[..., ConfigSet], capfd: pytest.CaptureFixture[str]
) -> None:
    text = (
        minimal("a") + '    actions:\n      - {action: filter, attribute: env, regex: "(?!prod)"}\n'
    )
    (problem,) = errors(check(("a.yaml", text)))
    assert (problem.line, problem.col, problem.path) == (
        12,
        49,
        "$.integrations[0].actions[0].regex",
    )
    assert problem.message.startswith(
        "invalid regex: invalid perl operator: (?! (negative lookahead"
    )
    assert capfd.readouterr() == ("", ""), "RE2 printed its own log"
