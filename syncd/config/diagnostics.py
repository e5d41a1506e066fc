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


def failed(diagnostics: Sequence[Diagnostic], *, strict: bool = False) -> bool:
    """Whether these diagnostics fail a run: any error, or with ``--strict`` any warning."""
    return count_errors(diagnostics) > 0 or (strict and bool(diagnostics))


def summary(diagnostics: Sequence[Diagnostic], files_checked: int, *, strict: bool = False) -> str:
    """One line that always counts the files checked, so that a run that checked
    none, or fewer than meant (a hook's pattern that matched nothing), shows it,
    and says why a run failed, ``--strict`` included."""
    errors = count_errors(diagnostics)
    warnings = len(diagnostics) - errors
    checked = f"({_plural(files_checked, 'file')} checked)"
    if errors:
        bad_files = len({d.file for d in diagnostics if d.severity == "error"})
        text = f"{_plural(errors, 'error')} in {_plural(bad_files, 'file')}"
    elif warnings and strict:
        warned = len({d.file for d in diagnostics})
        return (
            f"failed: {_plural(warnings, 'warning')} in {_plural(warned, 'file')}, "
            f"and --strict fails the run on warnings {checked}"
        )
    else:
        text = "valid"
    if warnings:
        text += f", {_plural(warnings, 'warning')}"
    return f"{text} {checked}"


def _github_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_escape_property(text: str) -> str:
    return _github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


class TextReporter:
    """``file:line:col: severity: path: message``, one per line, as compilers print."""

    def report(
        self, diagnostics: Sequence[Diagnostic], files_checked: int, *, strict: bool = False
    ) -> str:
        return "".join(f"{d}\n" for d in diagnostics)


class GithubReporter:
    """``::error file=…,line=…,col=…::`` workflow commands: annotations on the pull request."""

    def report(
        self, diagnostics: Sequence[Diagnostic], files_checked: int, *, strict: bool = False
    ) -> str:
        lines = []
        for d in diagnostics:
            props = f"file={_github_escape_property(d.file)},line={d.line},col={d.col}"
            where = f"{d.path}: " if d.path else ""
            lines.append(f"::{d.severity} {props}::{_github_escape_data(where + d.message)}\n")
        return "".join(lines)


class JsonReporter:
    """One JSON document with the verdict, counts and every diagnostic, for tools:
    ``valid`` says the files hold no error, ``passed`` whether the run passes them
    (``strict``: warnings fail it too)."""

    def report(
        self, diagnostics: Sequence[Diagnostic], files_checked: int, *, strict: bool = False
    ) -> str:
        errors = count_errors(diagnostics)
        payload = {
            "valid": errors == 0,
            "strict": strict,
            "passed": not failed(diagnostics, strict=strict),
            "files_checked": files_checked,
            "errors": errors,
            "warnings": len(diagnostics) - errors,
            "diagnostics": [asdict(d) for d in diagnostics],
        }
        return json.dumps(payload, indent=2) + "\n"


class Reporter(Protocol):
    def report(
        self, diagnostics: Sequence[Diagnostic], files_checked: int, *, strict: bool = False
    ) -> str: ...


REPORTER_BY_FORMAT: Mapping[OutputFormat, Reporter] = {
    "text": TextReporter(),
    "github": GithubReporter(),
    "json": JsonReporter(),
}


def report(
    diagnostics: Sequence[Diagnostic],
    fmt: OutputFormat,
    files_checked: int,
    *,
    strict: bool = False,
) -> str:
    """The diagnostics in the output format asked for."""
    return REPORTER_BY_FORMAT[fmt].report(diagnostics, files_checked, strict=strict)


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
