from __future__ import annotations

import json
from typing import get_args

import pytest

from syncd.config.diagnostics import REPORTER_BY_FORMAT, Diagnostic, OutputFormat, report

PROBLEM = Diagnostic("a.yaml", 3, 7, "$.integrations[0].uid", "duplicate uid 'x'")


def test_every_output_format_has_a_reporter() -> None:
    assert set(REPORTER_BY_FORMAT) == set(get_args(OutputFormat))


def test_text_is_one_compiler_style_line_per_problem() -> None:
    assert report([PROBLEM], "text", 1) == (
        "a.yaml:3:7: error: $.integrations[0].uid: duplicate uid 'x'\n"
    )


def test_github_is_a_workflow_annotation() -> None:
    assert report([PROBLEM], "github", 1) == (
        "::error file=a.yaml,line=3,col=7::$.integrations[0].uid: duplicate uid 'x'\n"
    )


def test_json_carries_the_verdict_and_counts() -> None:
    document = json.loads(report([PROBLEM], "json", 4))
    assert (document["valid"], document["files_checked"], document["errors"]) == (False, 4, 1)


HOSTILE = Diagnostic(
    "evil\n\x1b[31mred\x1b[0m\r\x07\x7f\x85\u2028\u2029\t.yaml",
    1,
    1,
    "",
    "duplicate uid 'a'; also defined at other\nsyncd: applied.yaml:1:1",
)


def test_text_escapes_control_characters_in_names_and_values() -> None:
    """A file name with a line break and ANSI escapes reached the terminal raw."""
    out = report([HOSTILE], "text", 1)
    assert out == (
        "evil\\n\\x1b[31mred\\x1b[0m\\r\\x07\\x7f\\x85\\u2028\\u2029\\t.yaml:1:1: error: "
        "duplicate uid 'a'; also defined at other\\nsyncd: applied.yaml:1:1\n"
    )
    assert out.count("\n") == 1 and "\x1b" not in out


def test_github_escapes_control_characters_before_its_own_escapes() -> None:
    out = report([HOSTILE], "github", 1)
    assert out.count("\n") == 1 and "\x1b" not in out and "\r" not in out
    assert out.startswith("::error file=evil\\n\\x1b[31mred\\x1b[0m\\r\\x07\\x7f")
    assert out.endswith("also defined at other\\nsyncd: applied.yaml:1:1\n")


def test_json_carries_names_exactly_and_escaped_by_json() -> None:
    out = report([HOSTILE], "json", 1)
    assert "\x1b" not in out and "\u2028" not in out and "\x85" not in out
    (found,) = json.loads(out)["diagnostics"]
    assert found["file"] == HOSTILE.file


@pytest.mark.parametrize(
    "name",
    ["teams/payments/ops.yaml", "équipe/opérations.yaml", "チーム/通知.yaml", "a b\\c%d:e,f.yaml"],
)
def test_ordinary_names_print_as_they_are(name: str) -> None:
    found = Diagnostic(name, 2, 3, "$.x", "unknown key 'é'")
    assert report([found], "text", 1) == f"{name}:2:3: error: $.x: unknown key 'é'\n"
