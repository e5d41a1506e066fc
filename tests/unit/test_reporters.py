from __future__ import annotations

import json
from typing import get_args

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
