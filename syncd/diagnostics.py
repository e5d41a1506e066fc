"""Diagnostics and their output formats.

Every problem syncd finds in a file becomes a :class:`Diagnostic` pointing at a
1-based line and column, so editors, pre-commit and CI annotations can jump to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]
OutputFormat = Literal["text", "json", "github"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    col: int
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {where}{self.message}"


def count_errors(diagnostics: Iterable[Diagnostic]) -> int:
    return sum(1 for d in diagnostics if d.severity == "error")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    errors = count_errors(diagnostics)
    warnings = len(diagnostics) - errors
    bad_files = len({d.file for d in diagnostics if d.severity == "error"})
    checked = _plural(files_checked, "file")
    if errors:
        text = f"{_plural(errors, 'error')} in {_plural(bad_files, 'file')} ({checked} checked)"
    else:
        text = f"{checked} valid"
    if warnings:
        text += f", {_plural(warnings, 'warning')}"
    return text


def _github_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_escape_property(text: str) -> str:
    return _github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_text(diagnostics: Sequence[Diagnostic]) -> str:
    return "".join(f"{d}\n" for d in diagnostics)


def format_github(diagnostics: Sequence[Diagnostic]) -> str:
    lines = []
    for d in diagnostics:
        props = f"file={_github_escape_property(d.file)},line={d.line},col={d.col}"
        where = f"{d.path}: " if d.path else ""
        lines.append(f"::{d.severity} {props}::{_github_escape_data(where + d.message)}\n")
    return "".join(lines)


def format_json(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    payload = {
        "valid": count_errors(diagnostics) == 0,
        "files_checked": files_checked,
        "errors": count_errors(diagnostics),
        "warnings": len(diagnostics) - count_errors(diagnostics),
        "diagnostics": [asdict(d) for d in diagnostics],
    }
    return json.dumps(payload, indent=2) + "\n"


def render(diagnostics: Sequence[Diagnostic], fmt: OutputFormat, files_checked: int) -> str:
    if fmt == "json":
        return format_json(diagnostics, files_checked)
    if fmt == "github":
        return format_github(diagnostics)
    return format_text(diagnostics)


def json_path(parts: Iterable[str | int]) -> str:
    """``$.integrations[2].hipchat.rooms[0].id``; odd keys are bracket-quoted."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append("[" + json.dumps(part) + "]")
    return "".join(out)
