"""Diagnostics and their output formats.

Every problem syncd finds in a file becomes a :class:`Diagnostic` pointing at a
1-based line and column, so editors, pre-commit and CI annotations can jump to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

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


class TextReporter:
    """``file:line:col: severity: path: message``, one per line, as compilers print."""

    def report(self, diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
        return "".join(f"{d}\n" for d in diagnostics)


class GithubReporter:
    """``::error file=…,line=…,col=…::`` workflow commands: annotations on the pull request."""

    def report(self, diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
        lines = []
        for d in diagnostics:
            props = f"file={_github_escape_property(d.file)},line={d.line},col={d.col}"
            where = f"{d.path}: " if d.path else ""
            lines.append(f"::{d.severity} {props}::{_github_escape_data(where + d.message)}\n")
        return "".join(lines)


class JsonReporter:
    """One JSON document with the verdict, counts and every diagnostic, for tools."""

    def report(self, diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
        errors = count_errors(diagnostics)
        payload = {
            "valid": errors == 0,
            "files_checked": files_checked,
            "errors": errors,
            "warnings": len(diagnostics) - errors,
            "diagnostics": [asdict(d) for d in diagnostics],
        }
        return json.dumps(payload, indent=2) + "\n"


class Reporter(Protocol):
    def report(self, diagnostics: Sequence[Diagnostic], files_checked: int) -> str: ...


REPORTER_BY_FORMAT: Mapping[OutputFormat, Reporter] = {
    "text": TextReporter(),
    "github": GithubReporter(),
    "json": JsonReporter(),
}


def report(diagnostics: Sequence[Diagnostic], fmt: OutputFormat, files_checked: int) -> str:
    """The diagnostics in the output format asked for."""
    return REPORTER_BY_FORMAT[fmt].report(diagnostics, files_checked)


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
