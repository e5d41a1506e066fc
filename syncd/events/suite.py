"""A rule suite: cases of timed events, each with what the integrations it
names should do, read from a loaded YAML file and compared with what happened.

Reading places every problem at its ``file:line:col``, as ``syncd validate``
does: the YAML and the schema (``suite.schema.json``) first, then what a
schema cannot say (a time out of order, an integration the config lacks, an
event that is not one once the defaults are added). Comparing is per
integration a case names: everything it did must be listed, at its time, so
that a change of frequency, which moves a digest or throttles what was sent,
fails the case. At one time, outcomes are compared in any order.

Pure: the file is loaded, and the events run, by the caller
(``syncd.commands.suite``, with ``syncd.events.timeline``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.config.diagnostics import MAX_FILE_DIAGNOSTICS, Diagnostic, printable
from syncd.config.loader import DataPath, LoadedFile
from syncd.config.model import MAX_DURATION, parse_duration
from syncd.config.schema import add_schema_problems
from syncd.events.timeline import FILTERED, Happened, Outcome
from syncd.events.validation import is_rfc3339, validate_events
from syncd.schemacheck import Schema

SUITE = Schema("suite.schema.json")
DEFAULT_START = "2026-01-01T00:00:00Z"
# The latest time a step may name: a week of events, then the longest window.
MAX_AT = 2 * MAX_DURATION
_SHOWN_PROBLEMS = 3  # of one event's, in its one diagnostic


@dataclass(frozen=True)
class Step:
    """A time (seconds since the case's start), the event that comes then, and what
    the integrations named do then."""

    at: int
    event: Mapping[str, Any] | None
    expect: Mapping[str, tuple[Outcome, ...]]


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    line: int
    col: int
    steps: tuple[Step, ...]

    @property
    def events(self) -> list[tuple[float, Mapping[str, Any] | None]]:
        return [(step.at, step.event) for step in self.steps]


@dataclass(frozen=True)
class Suite:
    start: float  # when 0s is, as a Unix time
    cases: tuple[Case, ...]


def read_suite(loaded: LoadedFile, uids: Collection[str]) -> tuple[Suite | None, list[Diagnostic]]:
    """The suite, or None and its problems (at most a file's share, and a line
    that counts the others)."""
    if loaded.ok:
        add_schema_problems(loaded, SUITE)
    listed, omitted = loaded.problems.result()
    if omitted is not None:
        listed.append(omitted.line("file", MAX_FILE_DIAGNOSTICS))
    if listed or not loaded.ok:
        return None, [_in_suite_words(d) for d in listed]
    reader = _Reader(loaded, uids)
    suite = reader.suite(loaded.data)
    if reader.problems:
        return None, sorted(reader.problems)[:MAX_FILE_DIAGNOSTICS]
    return suite, []


def _in_suite_words(diagnostic: Diagnostic) -> Diagnostic:
    """The loader words an empty file for an integrations file."""
    if diagnostic.path == "$" and diagnostic.message.startswith("file is empty"):
        message = "file is empty; expected 'version: 1' and 'cases:'"
        return Diagnostic(diagnostic.file, diagnostic.line, diagnostic.col, "$", message)
    return diagnostic


class _Reader:
    """Schema-valid data to a :class:`Suite`, each problem kept at its place."""

    def __init__(self, loaded: LoadedFile, uids: Collection[str]) -> None:
        self.loaded = loaded
        self.uids = uids
        self.problems: list[Diagnostic] = []

    def error(self, path: DataPath, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.loaded.diagnostic(path, message, at_key=at_key))

    def suite(self, data: Mapping[str, Any]) -> Suite:
        start = self.start(data.get("start", DEFAULT_START))
        defaults = data.get("defaults") or {}
        cases = tuple(
            self.case(("cases", index), case, start, defaults)
            for index, case in enumerate(data["cases"])
        )
        return Suite(start, cases)

    def start(self, text: str) -> float:
        if is_rfc3339(text):
            try:
                return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
        self.error(("start",), f"{text!r} is not an RFC 3339 date-time such as {DEFAULT_START}")
        return 0.0

    def case(
        self, path: DataPath, data: Mapping[str, Any], start: float, defaults: Mapping[str, Any]
    ) -> Case:
        line, col = self.loaded.position(path)
        merged = over(defaults, data.get("defaults") or {})
        steps: list[Step] = []
        for index, step in enumerate(data["timeline"]):
            previous = steps[-1].at if steps else 0
            steps.append(self.step((*path, "timeline", index), step, start, merged, previous))
        return Case(data["name"], self.loaded.path, line, col, tuple(steps))

    def step(
        self,
        path: DataPath,
        data: Mapping[str, Any],
        start: float,
        defaults: Mapping[str, Any],
        previous: int,
    ) -> Step:
        at = self.at((*path, "at"), data["at"], previous)
        event = None
        if "event" in data:
            event = self.event((*path, "event"), over(defaults, data["event"]), start + at)
        expect = {
            uid: _outcomes(value)
            for uid, value in (data.get("expect") or {}).items()
            if self.known((*path, "expect", uid), uid)
        }
        return Step(at, event, expect)

    def at(self, path: DataPath, value: str | int, previous: int) -> int:
        try:
            seconds = parse_duration(value, MAX_AT)
        except ValueError as exc:
            self.error(path, str(exc))
            return previous
        if seconds < previous:
            self.error(
                path,
                f"{clock_text(seconds)} is before the step above it, at {clock_text(previous)}: "
                "a timeline lists its steps in time order",
            )
            return previous
        return seconds

    def event(self, path: DataPath, event: dict[str, Any], at: float) -> Mapping[str, Any] | None:
        """The event as ingest takes it: over the defaults, at its time unless it
        names one, and valid as ``POST /v1/events`` wants it."""
        event.setdefault("timestamp", rfc3339(at))
        events, problems = validate_events(event)
        if not problems:
            return events[0]
        found = "; ".join(f"{p.path}: {p.message}" for p in problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        self.error(
            path,
            f"not a valid event, with the defaults: {found}"
            + (f"; and {more} more problem(s)" if more > 0 else ""),
        )
        return None

    def known(self, path: DataPath, uid: str) -> bool:
        if uid in self.uids:
            return True
        close = difflib.get_close_matches(uid, list(self.uids), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.error(path, f"no integration {uid!r} in the config{hint}", at_key=True)
        return False


def over(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields over its defaults: each replaces the default's, but for
    the attributes, which are added name by name."""
    merged = {**base, **top}
    attributes = base.get("attributes"), top.get("attributes")
    if isinstance(attributes[0], dict) and isinstance(attributes[1], dict):
        merged["attributes"] = {**attributes[0], **attributes[1]}
    return merged


def _outcomes(value: object) -> tuple[Outcome, ...]:
    """An expectation as the schema lets it be written: a name, a mapping of one
    name to its details, or a list of those ([]: nothing)."""
    if isinstance(value, list):
        return tuple(_outcome(item) for item in value)
    return (_outcome(value),)


def _outcome(value: object) -> Outcome:
    if isinstance(value, str):
        return Outcome(value)
    assert isinstance(value, dict)
    ((kind, detail),) = value.items()
    if kind == FILTERED:
        return Outcome(kind, rule=detail)
    if isinstance(detail, str):  # a digest's count line
        return Outcome(kind, more=detail)
    details: Mapping[str, Any] = detail or {}
    rooms, mentions = details.get("rooms"), details.get("mentions")
    return Outcome(
        kind,
        rooms=None if rooms is None else tuple(str(room) for room in rooms),
        title=details.get("title"),
        mentions=None if mentions is None else tuple(mentions),
        more=details.get("more"),
    )


def matches(expected: Outcome, actual: Outcome) -> bool:
    """Whether what happened is what was expected, in every detail expected."""
    rooms = expected.rooms
    return (
        expected.kind == actual.kind
        and expected.rule in (None, actual.rule)
        and (rooms is None or sorted(rooms) == sorted(actual.rooms or ()))
        and expected.mentions in (None, actual.mentions)
        and _starts(expected.title, actual.title)
        and _starts(expected.more, actual.more)
    )


def _starts(wanted: str | None, found: str | None) -> bool:
    """A text as written, or its start up to a space (a title without its time)."""
    if wanted is None:
        return True
    return found is not None and (found == wanted or found.startswith(wanted + " "))


def differences(case: Case, happened: Sequence[Happened]) -> list[str]:
    """How what happened differs from what the case expects: for each integration
    it names that did otherwise, its name and its timeline (`` `` as expected,
    ``-`` expected only, ``+`` happened only). None when the case passes."""
    expected = _expected(case)
    actual: dict[str, list[tuple[float, Outcome]]] = {uid: [] for uid in expected}
    for happening in happened:
        if happening.uid in actual:
            actual[happening.uid].append((happening.at, happening.outcome))
    lines = []
    for uid, wanted in expected.items():
        rows = _timeline_rows(wanted, actual[uid])
        if any(mark != " " for mark, _ in rows):
            lines.append(f"{uid}:")
            lines.extend(f"  {line}" for line in rows_text(rows))
    return lines


Row = tuple[str, tuple[float, str]]  # a mark, and a time with what happened then


def rows_text(rows: Sequence[Row]) -> Iterator[str]:
    width = max(len(clock_text(at)) for _, (at, _) in rows)
    for mark, (at, text) in rows:
        yield f"{mark} {clock_text(at):>{width}}  {text}"


def _expected(case: Case) -> dict[str, list[tuple[float, Outcome]]]:
    """Each integration the case names, in the order first named, with what it
    should do and when."""
    expected: dict[str, list[tuple[float, Outcome]]] = {}
    for step in case.steps:
        for uid, outcomes in step.expect.items():
            expected.setdefault(uid, []).extend((step.at, outcome) for outcome in outcomes)
    return expected


def _timeline_rows(
    wanted: Sequence[tuple[float, Outcome]], got: Sequence[tuple[float, Outcome]]
) -> list[Row]:
    at_times: dict[float, tuple[list[Outcome], list[Outcome]]] = {}
    for at, outcome in wanted:
        at_times.setdefault(at, ([], []))[0].append(outcome)
    for at, outcome in got:
        at_times.setdefault(at, ([], []))[1].append(outcome)
    rows: list[Row] = []
    for at in sorted(at_times):
        rows.extend((mark, (at, text)) for mark, text in _rows_at(*at_times[at]))
    return rows


def _rows_at(wanted: Sequence[Outcome], got: Sequence[Outcome]) -> list[tuple[str, str]]:
    """One time's outcomes, in any order: those that match, then each one missing
    beside what happened of its kind (shown in the details it expects), then
    what happened besides."""
    left = list(got)
    rows, missing = [], []
    for outcome in wanted:
        found = next((i for i, other in enumerate(left) if matches(outcome, other)), None)
        if found is None:
            missing.append(outcome)
        else:
            left.pop(found)
            rows.append((" ", describe(outcome, outcome)))
    for outcome in missing:
        rows.append(("-", describe(outcome, outcome)))
        alike = next((i for i, other in enumerate(left) if other.kind == outcome.kind), None)
        if alike is not None:
            rows.append(("+", describe(left.pop(alike), outcome)))
    rows.extend(("+", describe(other)) for other in left)
    return rows


_DETAILS = ("rooms", "title", "mentions", "more")


def describe(outcome: Outcome, like: Outcome | None = None) -> str:
    """One line: the kind, and the details ``like`` names (None: the details the
    outcome has), as JSON values, escaped for a terminal."""
    head = outcome.kind if outcome.rule is None else f"{outcome.kind} by actions[{outcome.rule}]"
    parts = [head]
    for name in _DETAILS:
        value = getattr(outcome, name)
        if (like is None and value) or (like is not None and getattr(like, name) is not None):
            parts.append(f"{name}={_json(value)}")
    return printable(" ".join(parts))


def _json(value: object) -> str:
    shown = list(value) if isinstance(value, tuple) else value
    return json.dumps(shown, ensure_ascii=False)


def rfc3339(at: float) -> str:
    """A Unix time as an event's timestamp: ``2026-11-26T09:00:45Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def clock_text(seconds: float) -> str:
    """A time on the case's clock as a step writes it: ``0s``, ``45s``, ``1h30m``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s"))
    return "".join(f"{n}{unit}" for n, unit in units if n) or "0s"
