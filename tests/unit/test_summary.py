"""The line ``syncd validate`` ends with: how many files were checked, and why the
run passed or failed, whatever the outcome."""

from __future__ import annotations

import json

import pytest

from syncd.config.diagnostics import Diagnostic, report, summary

ERROR = Diagnostic("a.yaml", 3, 7, "$.integrations[0].uid", "duplicate uid 'x'")
WARNING = Diagnostic("b.yaml", 7, 17, "$.integrations[0].hipchat.endpoint", "plain http", "warning")


@pytest.mark.parametrize(
    ("diagnostics", "checked", "strict", "said"),
    [
        ([], 2, False, "valid (2 files checked)"),
        ([], 1, True, "valid (1 file checked)"),
        ([WARNING], 3, False, "valid, 1 warning (3 files checked)"),
        ([ERROR], 2, False, "1 error in 1 file (2 files checked)"),
        ([ERROR, ERROR, WARNING], 2, False, "2 errors in 1 file, 1 warning (2 files checked)"),
        (
            [WARNING],
            1,
            True,
            "failed: 1 warning in 1 file, and --strict fails the run on warnings (1 file checked)",
        ),
        ([ERROR, WARNING], 2, True, "1 error in 1 file, 1 warning (2 files checked)"),
    ],
)
def test_the_summary_always_counts_the_files_checked(
    diagnostics: list[Diagnostic], checked: int, strict: bool, said: str
) -> None:
    assert summary(diagnostics, checked, strict=strict) == said


def test_json_says_whether_the_run_passed_under_strict() -> None:
    relaxed = json.loads(report([WARNING], "json", 1))
    strict = json.loads(report([WARNING], "json", 1, strict=True))
    assert (relaxed["valid"], relaxed["strict"], relaxed["passed"]) == (True, False, True)
    assert (strict["valid"], strict["strict"], strict["passed"]) == (True, True, False)
    assert strict["files_checked"] == 1
