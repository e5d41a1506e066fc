"""Diagnostics, how many are listed, and their output formats.

Every problem syncd finds in a file becomes a :class:`Diagnostic` pointing at a
1-based line and column, so editors, pre-commit and CI annotations can jump to it.

A file or a set may hold more problems than anyone reads, and every one listed
is carried to validate's output, the daemon's log, ``/status`` and the answer
to a reload: so at most ``MAX_FILE_DIAGNOSTICS`` are listed per file and
``MAX_SET_DIAGNOSTICS`` per set, errors before warnings, and one last line per
file or set counts the rest (:func:`capped_set`). Every name and value a
diagnostic prints is shown with its control characters escaped
(:func:`printable`), so a file name cannot move a terminal's cursor or forge a
log line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Literal, ParamSpec, Protocol

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
        """One line whatever the file name or the values quoted: control characters
        escaped (this is what the text format, the log and ``/status`` show)."""
        where = f"{self.path}: " if self.path else ""
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {where}{self.message}"
        return printable(text)


# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators:
# what moves a terminal's cursor, starts an escape sequence or ends a line.
_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    **{ord(c): e for c, e in (("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def printable(text: str) -> str:
    """``text`` with control characters written as Python writes them in a string
    (``\\n``, ``\\x1b``, ``\\u2028``); other text, non-ASCII included, unchanged."""
    return text.translate(_ESCAPES)


def count_errors(diagnostics: Iterable[Diagnostic]) -> int:
    return sum(1 for d in diagnostics if d.severity == "error")


MAX_FILE_DIAGNOSTICS = 100
MAX_SET_DIAGNOSTICS = 1000


@dataclass(frozen=True, slots=True)
class Unworded:
    """Problems found at one place, worded only if they are listed.

    Finding a problem costs little; wording it (its place in the file, a close
    match, what YAML made of a value) costs more, and a hostile file holds a
    hundred thousand of them of which a hundred are listed. ``errors`` and
    ``warnings`` say how many diagnostics ``word`` gives.
    """

    file: str
    line: int
    col: int
    word: Callable[[], Iterable[Diagnostic]]
    errors: int = 1
    warnings: int = 0


Problem = Diagnostic | Unworded


def _tally(problem: Problem) -> tuple[int, int]:
    if isinstance(problem, Unworded):
        return problem.errors, problem.warnings
    return (1, 0) if problem.severity == "error" else (0, 1)


def worded(problems: Iterable[Problem]) -> list[Diagnostic]:
    """Every problem in words, each once (several findings may name one problem)."""
    out: dict[Diagnostic, None] = {}
    for problem in problems:
        if isinstance(problem, Unworded):
            out.update(dict.fromkeys(problem.word()))
        else:
            out[problem] = None
    return list(out)


@dataclass(frozen=True, slots=True)
class Omitted:
    """Problems a cap left out: how many of each severity, and the first of them in
    order, where the line that counts them points."""

    errors: int
    warnings: int
    first: Diagnostic

    def __add__(self, other: Omitted | None) -> Omitted:
        if other is None:
            return self
        first = min(self.first, other.first)
        return Omitted(self.errors + other.errors, self.warnings + other.warnings, first)

    @property
    def count(self) -> int:
        return self.errors + self.warnings

    def line(self, scope: Literal["file", "set"], limit: int) -> Diagnostic:
        """The one diagnostic that stands for them all: an error when any of them is
        one, so a set never passes for what it does not show."""
        counted = ((self.errors, "error"), (self.warnings, "warning"))
        kinds = [_plural(n, word) for n, word in counted if n]
        message = (
            f"and {self.count:,} more problem{'s' if self.count != 1 else ''} in this {scope} "
            f"({', '.join(kinds)}) not listed: at most {limit:,} are listed per {scope}, "
            "errors first; the first of them is here"
        )
        severity: Severity = "error" if self.errors else "warning"
        return Diagnostic(self.first.file, self.first.line, self.first.col, "", message, severity)


# One problem in a listing: where it sorts, where it is, how many errors and
# warnings it stands for, and the problem (or the function that words it).
_Entry = tuple[tuple[bool, str, int, int, int], str, int, int, int, int, "Problem | Word"]
Word = Callable[[], Iterable[Diagnostic]]
_P = ParamSpec("_P")


class Listing:
    """The first ``limit`` problems found, in listing order (errors first, then by
    place), and a count of the others: a file's problems held in memory bounded by
    the cap, however many it has.

    A problem past the first ``limit`` is never listed, since each stands for one
    problem at least; so the list is cut back to ``limit`` whenever it doubles, and
    from then on a problem that sorts after the last one kept (the bar) is only
    counted, in O(1), and never worded: a file of 100,000 problems words a hundred.
    A problem's place is all it takes to sort it; its producer finds that place
    from the YAML node in hand (``LoadedFile.place``), not by walking its path.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: list[_Entry] = []
        self._found = 0
        self._left: Omitted | None = None
        # Where the last of ``limit`` kept problems sorts, once there are that many:
        # a problem that sorts at or after it is past the cap.
        self._bar: tuple[bool, str, int, int] | None = None
        # The problems past the bar: how many errors and warnings, and the first place.
        self._past_errors = 0
        self._past_warnings = 0
        self._past_first: tuple[str, int, int] | None = None

    def add(self, problem: Problem) -> None:
        errors, warnings = _tally(problem)
        file, line, col = problem.file, problem.line, problem.col
        if self._past(errors, file, line, col):
            self._count(errors, warnings, file, line, col)
        else:
            self._put(file, line, col, errors, warnings, problem)

    def found(
        self,
        file: str,
        line: int,
        col: int,
        errors: int,
        warnings: int,
        word: Callable[_P, Iterable[Diagnostic]],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> bool:
        """As ``add(Unworded(...))`` with ``word`` given ``args``, without making one for
        each of the many problems that will not be listed. False when this one is
        past the cap: counted only."""
        if self._past(errors, file, line, col):
            self._count(errors, warnings, file, line, col)
            return False
        self._put(file, line, col, errors, warnings, partial(word, *args, **kwargs))
        return True

    def count_after(self, errors: int) -> None:
        """Errors known to sort after one that ``found`` just counted past the cap
        (the rest of a run in the order of the file): counted too, without their
        places, since the first place left out is at or before them."""
        self._past_errors += errors

    def _past(self, errors: int, file: str, line: int, col: int) -> bool:
        # A later problem sorts after an earlier one at the same place.
        bar = self._bar
        return bar is not None and (errors == 0, file, line, col) >= bar

    def _count(self, errors: int, warnings: int, file: str, line: int, col: int) -> None:
        self._past_errors += errors
        self._past_warnings += warnings
        first = self._past_first
        if first is None or (file, line, col) < first:
            self._past_first = (file, line, col)

    def _put(
        self, file: str, line: int, col: int, errors: int, warnings: int, item: Problem | Word
    ) -> None:
        order = (errors == 0, file, line, col, self._found)
        self._found += 1
        self._kept.append((order, file, line, col, errors, warnings, item))
        if len(self._kept) >= 2 * self.limit:
            self._cut()

    def extend(self, problems: Iterable[Problem]) -> Listing:
        for problem in problems:
            self.add(problem)
        return self

    def problems(self) -> list[Problem]:
        """Those kept, in listing order."""
        self._cut()
        return [_problem(entry) for entry in self._kept]

    def _cut(self) -> None:
        self._kept.sort(key=lambda entry: entry[0])
        if len(self._kept) > self.limit:
            self._left = _left_out(self._kept[self.limit :]) + self._left
            del self._kept[self.limit :]
        if len(self._kept) == self.limit:
            self._bar = self._kept[-1][0][:4]

    def _omitted(self) -> Omitted | None:
        """What the cuts and the bar left out."""
        if self._past_first is None:
            return self._left
        file, line, col = self._past_first
        past = Omitted(self._past_errors, self._past_warnings, Diagnostic(file, line, col, "", ""))
        return past + self._left

    def result(self, omitted: Omitted | None = None) -> tuple[list[Diagnostic], Omitted | None]:
        """The first ``limit`` problems in words, sorted, and what was left out, added
        to ``omitted``. Only the problems listed are worded."""
        self._cut()
        kept, taken, before = self._kept, 0, self._omitted()
        for at, entry in enumerate(kept):
            if taken >= self.limit:
                left = _left_out(kept[at:]) + before
                words = worded(_problem(e) for e in kept[:at])
                return _cap_worded(words, self.limit, left + omitted)
            taken += entry[4] + entry[5]
        rest: Omitted | None = omitted if before is None else before + omitted
        return _cap_worded(worded(_problem(e) for e in kept), self.limit, rest)


def _problem(entry: _Entry) -> Problem:
    _, file, line, col, errors, warnings, item = entry
    if isinstance(item, Diagnostic | Unworded):
        return item
    return Unworded(file, line, col, item, errors, warnings)


def cap(
    problems: Iterable[Problem], limit: int, omitted: Omitted | None = None
) -> tuple[list[Diagnostic], Omitted | None]:
    """The first ``limit`` problems in order, errors before warnings (an error is
    never left out while a warning is listed), in words, and what was left out,
    added to ``omitted``."""
    return Listing(limit).extend(problems).result(omitted)


def _left_out(rest: list[_Entry]) -> Omitted:
    errors = sum(entry[4] for entry in rest)
    warnings = sum(entry[5] for entry in rest)
    _, file, line, col, *_ = min(rest, key=lambda entry: entry[1:4])
    return Omitted(errors, warnings, Diagnostic(file, line, col, "", ""))


def _cap_worded(
    diagnostics: list[Diagnostic], limit: int, omitted: Omitted | None
) -> tuple[list[Diagnostic], Omitted | None]:
    if len(diagnostics) <= limit:
        return sorted(_clipped(d) for d in diagnostics), omitted
    ordered = sorted(diagnostics, key=lambda d: (d.severity != "error", d))
    rest = ordered[limit:]
    errors = count_errors(rest)
    left = Omitted(errors, len(rest) - errors, min(rest))
    return sorted(_clipped(d) for d in ordered[:limit]), left + omitted


MAX_TEXT = 1000  # characters of a listed diagnostic's path or message


def _clipped(diagnostic: Diagnostic) -> Diagnostic:
    """A listed diagnostic of bounded size: a key of 100,000 characters is quoted in
    its message and its path, and a set lists a thousand."""
    path, message = diagnostic.path, diagnostic.message
    if len(path) <= MAX_TEXT and len(message) <= MAX_TEXT:
        return diagnostic
    return replace(diagnostic, path=_clip(path), message=_clip(message))


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[: MAX_TEXT - 30]}… ({len(text) - MAX_TEXT + 30:,} more characters)"


@dataclass(frozen=True, slots=True)
class Counts:
    """Every problem found, listed or not: what a summary counts."""

    errors: int = 0
    warnings: int = 0
    error_files: int = 0
    warned_files: int = 0  # files with a problem of either kind
    omitted: int = 0  # problems not listed

    @classmethod
    def of(cls, diagnostics: Sequence[Diagnostic]) -> Counts:
        """Counted from a list that is all there is."""
        errors = count_errors(diagnostics)
        error_files = len({d.file for d in diagnostics if d.severity == "error"})
        warned = len({d.file for d in diagnostics})
        return cls(errors, len(diagnostics) - errors, error_files, warned)


FileProblems = tuple[Sequence[Problem], Omitted | None]


def capped_set(files: Iterable[FileProblems]) -> tuple[tuple[Diagnostic, ...], Counts]:
    """A set's diagnostics as listed, and its counts: per file, what its cap kept
    (``Omitted``: what it left out), each file capped again with what came since
    (a clash with another file), then the whole set capped; a file's line counting
    what it left out is kept while any of its problems is listed, otherwise they
    are counted in the set's."""
    listed: list[Diagnostic] = []
    lines: dict[str, Omitted] = {}
    errors = warnings = error_files = warned = 0
    for diagnostics, omitted in files:
        shown, left = cap(diagnostics, MAX_FILE_DIAGNOSTICS, omitted)
        if not shown:
            continue
        listed.extend(shown)
        found = count_errors(shown) + (left.errors if left else 0)
        errors += found
        warnings += len(shown) - count_errors(shown) + (left.warnings if left else 0)
        error_files += found > 0
        warned += 1
        if left is not None:
            lines[shown[0].file] = left
    kept, left_out = cap(listed, MAX_SET_DIAGNOSTICS)
    ends = list(_file_lines(kept, lines))
    for file in lines.keys() - {d.file for d in kept}:
        left_out = lines[file] + left_out
    last = set(ends)  # a file's line that counts the rest ends that file's lines
    out = sorted(kept + ends, key=lambda d: (d.file, d in last, d))
    if left_out is not None:
        out.append(left_out.line("set", MAX_SET_DIAGNOSTICS))
    hidden = errors + warnings - len(kept)
    return tuple(out), Counts(errors, warnings, error_files, warned, hidden)


def _file_lines(kept: list[Diagnostic], lines: Mapping[str, Omitted]) -> Iterator[Diagnostic]:
    for file in {d.file for d in kept} & lines.keys():
        yield lines[file].line("file", MAX_FILE_DIAGNOSTICS)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n:,} {word}s"


def failed(diagnostics: Sequence[Diagnostic], *, strict: bool = False) -> bool:
    """Whether these diagnostics fail a run: any error, or with ``--strict`` any warning."""
    return count_errors(diagnostics) > 0 or (strict and bool(diagnostics))


def summary(
    diagnostics: Sequence[Diagnostic],
    files_checked: int,
    *,
    strict: bool = False,
    counts: Counts | None = None,
) -> str:
    """One line that always counts the files checked, so that a run that checked
    none, or fewer than meant (a hook's pattern that matched nothing), shows it,
    and says why a run failed, ``--strict`` included. ``counts``: every problem
    found, when the diagnostics are only those listed."""
    found = counts or Counts.of(diagnostics)
    checked = f"({_plural(files_checked, 'file')} checked)"
    if found.errors:
        text = f"{_plural(found.errors, 'error')} in {_plural(found.error_files, 'file')}"
    elif found.warnings and strict:
        text = (
            f"failed: {_plural(found.warnings, 'warning')} in "
            f"{_plural(found.warned_files, 'file')}, and --strict fails the run on warnings"
        )
        return f"{text}{_unlisted(found)} {checked}"
    else:
        text = "valid"
    if found.warnings:
        text += f", {_plural(found.warnings, 'warning')}"
    return f"{text}{_unlisted(found)} {checked}"


def _unlisted(found: Counts) -> str:
    return f", {found.omitted:,} not listed" if found.omitted else ""


def _github_escape_data(text: str) -> str:
    """A workflow command's own escapes, after the control characters are written
    out: a raw ESC would reach the log viewer, which draws ANSI sequences."""
    return printable(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_escape_property(text: str) -> str:
    return _github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


class TextReporter:
    """``file:line:col: severity: path: message``, one per line, as compilers print."""

    def report(
        self,
        diagnostics: Sequence[Diagnostic],
        files_checked: int,
        *,
        strict: bool = False,
        counts: Counts | None = None,
    ) -> str:
        return "".join(f"{d}\n" for d in diagnostics)


class GithubReporter:
    """``::error file=…,line=…,col=…::`` workflow commands: annotations on the pull request."""

    def report(
        self,
        diagnostics: Sequence[Diagnostic],
        files_checked: int,
        *,
        strict: bool = False,
        counts: Counts | None = None,
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
        self,
        diagnostics: Sequence[Diagnostic],
        files_checked: int,
        *,
        strict: bool = False,
        counts: Counts | None = None,
    ) -> str:
        found = counts or Counts.of(diagnostics)
        payload = {
            "valid": found.errors == 0,
            "strict": strict,
            "passed": not failed(diagnostics, strict=strict),
            "files_checked": files_checked,
            "errors": found.errors,
            "warnings": found.warnings,
            "not_listed": found.omitted,
            "diagnostics": [asdict(d) for d in diagnostics],
        }
        return json.dumps(payload, indent=2) + "\n"


class Reporter(Protocol):
    def report(
        self,
        diagnostics: Sequence[Diagnostic],
        files_checked: int,
        *,
        strict: bool = False,
        counts: Counts | None = None,
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
    counts: Counts | None = None,
) -> str:
    """The diagnostics in the output format asked for; ``counts`` as for :func:`summary`."""
    return REPORTER_BY_FORMAT[fmt].report(diagnostics, files_checked, strict=strict, counts=counts)


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
