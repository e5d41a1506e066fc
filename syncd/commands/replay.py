"""``syncd plan --replay``: the noise of a change before it merges.

Recorded events (``syncd run --record-events``, or any file of one event per
line, as ``POST /v1/events`` takes them) go through the old set and the new one
on the virtual clock of ``syncd rules test --suite`` (``syncd.events.timeline``:
the daemon's own ingest, routing and throttle windows, each window flushed at
the second it falls due). What each set would send is counted per integration
and room, so a reviewer sees "120 messages a day in #ops become 9 digests"
rather than a diff of YAML.

The file is read twice, once per set, rather than held: a week of events may
be millions of lines. Every line is checked against the event schema on the
first read, so a bad line stops the replay (exit 2) naming its file and line
before anything is printed. The clock is each event's ``timestamp``; one
stamped before the line above it is taken at that line's time, as the clock
never runs back.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from syncd.commands.configdir import load_valid
from syncd.config import semantics
from syncd.config.diagnostics import printable
from syncd.config.model import Integration
from syncd.config.reach import Reach
from syncd.errors import EXIT_OK, UsageError
from syncd.events.timeline import DIGEST, SEND, Happened, Timeline
from syncd.events.validation import check_events

ReplayFormat = Literal["text", "markdown", "json"]
# What is counted per room (messages include digests), and per integration.
ROOM_FIELDS = ("messages", "digests", "mentions")
EVENT_FIELDS = ("filtered", "throttled", "muted")
TOP = 10

_Key = tuple[str, str | None, str]  # integration, room (None: the integration's own), field
_Step = tuple[float, Mapping[str, Any] | None]


@dataclass(frozen=True)
class Change:
    """One count of one integration (and room), before and after."""

    uid: str
    room: str | None
    field: str
    before: int | None
    after: int

    @property
    def delta(self) -> int:
        return self.after - (self.before or 0)


@dataclass(frozen=True)
class Replay:
    """What the events did under each set; ``before`` is None without an old set."""

    events: int
    first: str | None
    last: str | None
    before: Mapping[_Key, int] | None
    after: Mapping[_Key, int]

    def changes(self) -> list[Change]:
        """Every count, by integration, its rooms, then its own counts."""
        order = {f: i for i, f in enumerate(ROOM_FIELDS + EVENT_FIELDS)}
        keys = sorted(
            set(self.after) | set(self.before or {}),
            key=lambda k: (k[0], k[1] is None, k[1] or "", order.get(k[2], len(order)), k[2]),
        )
        return [Change(*key, self._before(key), self.after.get(key, 0)) for key in keys]

    def _before(self, key: _Key) -> int | None:
        return None if self.before is None else self.before.get(key, 0)

    def totals(self) -> dict[str, tuple[int | None, int]]:
        found: dict[str, tuple[int | None, int]] = {}
        for field in ROOM_FIELDS + EVENT_FIELDS:
            after = sum(n for k, n in self.after.items() if k[2] == field)
            before = (
                None
                if self.before is None
                else sum(n for k, n in self.before.items() if k[2] == field)
            )
            found[field] = (before, after)
        return found

    def top(self) -> list[Change]:
        moved = [c for c in self.changes() if c.delta and c.before is not None]
        return sorted(moved, key=lambda c: -abs(c.delta))[:TOP]


def replay(
    events_file: Path,
    config_dir: Path,
    *,
    against_config: Path | None = None,
    fmt: ReplayFormat = "text",
    exclude: tuple[str, ...] = (),
) -> int:
    """The counts on stdout in ``fmt``; exit 0, or UsageError (2) for a bad line."""
    gc.disable()  # as in a suite: nothing here holds a cycle, and the collector costs time
    try:
        result = run_replay(events_file, config_dir, against_config, exclude)
    finally:
        gc.enable()
    sys.stdout.write(render(result, fmt))
    return EXIT_OK


def run_replay(
    events_file: Path, config_dir: Path, against_config: Path | None, exclude: tuple[str, ...]
) -> Replay:
    """With two sets, the new one is counted in a second process while this one
    counts the old, checking every line: the two passes share nothing, and on
    two cores a replay takes the time of one."""
    options = _options(exclude)
    new = Timeline(load_valid(config_dir, options), _unrendered)
    if against_config is None:
        seen = _Seen()
        after = count(new.play(steps(events_file, seen, check=True), seen.start))
        return Replay(seen.events, seen.first, seen.last, None, after)
    old = Timeline(load_valid(against_config, options), _unrendered)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    # Forked, the child has the new set's timeline as loaded: only the counts are pickled.
    child = context.Process(target=_count_set, args=(new, events_file, send), daemon=True)
    child.start()
    send.close()
    try:
        seen = _Seen()
        before = count(old.play(steps(events_file, seen, check=True), seen.start))
        counted: Counter[_Key] = receive.recv()
    finally:
        child.kill()
        child.join()
    return Replay(seen.events, seen.first, seen.last, before, counted)


def _options(exclude: tuple[str, ...]) -> semantics.Options:
    reach = Reach(
        allow_http=True, allow_link_local=True, expired_mutes="warning"
    )  # nothing is sent
    return semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)


def _count_set(timeline: Timeline, events_file: Path, send: Connection) -> None:
    """In the forked process: the set's counts (the lines are checked by the parent,
    which stops this process on a bad one)."""
    seen = _Seen()
    with contextlib.suppress(UsageError):
        start = _first_stamp(events_file)
        send.send(count(timeline.play(steps(events_file, seen, check=False), start)))
    send.close()


def _first_stamp(events_file: Path) -> float:
    for number, event in _events(events_file, check=False):
        return _epoch(event["timestamp"], events_file, number)
    return 0.0


def _unrendered(event: Mapping[str, Any], integration: Integration, n: int, s: float | None) -> str:
    """Counts need no text: a replay renders nothing."""
    return ""


def count(happened: Iterable[Happened]) -> Counter[_Key]:
    """Messages (digests among them) and mentions per room; other outcomes per integration."""
    tally: Counter[_Key] = Counter()
    for one in happened:
        outcome = one.outcome
        if outcome.kind not in (SEND, DIGEST):
            tally[one.uid, None, outcome.kind] += 1
            continue
        for room in outcome.rooms or ():
            tally[one.uid, room, "messages"] += 1
            if outcome.kind == DIGEST:
                tally[one.uid, room, "digests"] += 1
            if outcome.mentions:
                tally[one.uid, room, "mentions"] += 1
    return tally


class _Seen:
    """What the first read of the file learns: the count, the first and last times."""

    def __init__(self) -> None:
        self.events = 0
        self.start = 0.0
        self.first: str | None = None
        self.last: str | None = None


def steps(path: Path, seen: _Seen, *, check: bool) -> Iterator[_Step]:
    """Each event at its time after the first, never earlier than the one above it."""
    at, text, stamp = 0.0, None, 0.0
    for number, event in _events(path, check):
        if event["timestamp"] != text:  # a second's events share their stamp: read once
            text = event["timestamp"]
            stamp = _epoch(event["timestamp"], path, number)
        if seen.first is None:
            seen.first, seen.start = event["timestamp"], stamp
        at = max(at, stamp - seen.start)
        seen.events += 1
        seen.last = event["timestamp"]
        yield at, event


def _events(path: Path, check: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {printable(str(path))}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, _event(raw, path, number, check)


def _event(raw: bytes, path: Path, number: int, check: bool) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(f"{_line(path, number)}: not a JSON event: {printable(message)}") from None
    if not isinstance(event, dict):
        raise UsageError(f"{_line(path, number)}: expected one event (a JSON object) per line")
    if check:
        problems = check_events(event).problems
        if problems:
            first = problems[0]
            raise UsageError(
                f"{_line(path, number)}: invalid event: {first.path}: {printable(first.message)}"
            )
    return event


def _line(path: Path, number: int) -> str:
    """The file and line, as an error names them (written only for an error)."""
    return printable(f"{path}:{number}")


def _epoch(stamp: str, path: Path, number: int) -> float:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise UsageError(f"{printable(f'{path}:{number}')}: timestamp is not RFC 3339") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def render(result: Replay, fmt: ReplayFormat) -> str:
    if fmt == "json":
        return json.dumps(to_data(result), indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(result)
    return _text(result)


def to_data(result: Replay) -> dict[str, Any]:
    """Per integration: its own counts and its rooms'; each count ``{before, after}``
    (``before`` null without an old set)."""
    integrations: dict[str, Any] = {}
    for change in result.changes():
        entry = integrations.setdefault(change.uid, {"rooms": {}})
        counts = entry if change.room is None else entry["rooms"].setdefault(change.room, {})
        counts[change.field] = {"before": change.before, "after": change.after}
    return {
        "events": result.events,
        "first": result.first,
        "last": result.last,
        "compared": result.before is not None,
        "integrations": integrations,
        "totals": {f: {"before": b, "after": a} for f, (b, a) in result.totals().items()},
        "top_changes": [
            {
                "integration": c.uid,
                "room": c.room,
                "field": c.field,
                "before": c.before,
                "after": c.after,
                "change": c.delta,
            }
            for c in result.top()
        ],
    }


def _cell(before: int | None, after: int) -> str:
    if before is None:
        return f"{after:,}"
    if before == after:
        return f"{after:,}"
    return f"{before:,} -> {after:,} ({after - before:+,})"


def _rows(result: Replay) -> Iterator[tuple[str, str | None, str, str]]:
    """(integration, room or None for its events, field, cell) for every count not
    zero in both sets."""
    for c in result.changes():
        if c.after or c.before:
            yield c.uid, c.room, c.field, _cell(c.before, c.after)


def _where(room: str | None, name: Callable[[str], str]) -> str:
    return "(events)" if room is None else f"room {name(room)}"


def _headline(result: Replay) -> str:
    span = f" ({result.first} to {result.last})" if result.first else ""
    sets = "old set -> new set" if result.before is not None else "the new set alone"
    return f"Replay of {result.events:,} event(s){span} through {sets}"


def _text(result: Replay) -> str:
    lines = [_headline(result), ""]
    lines += [
        f"  {printable(u)}  {_where(r, printable)}  {f}: {cell}" for u, r, f, cell in _rows(result)
    ]
    lines += ["", "Totals:"]
    lines += [f"  {f}: {_cell(b, a)}" for f, (b, a) in result.totals().items()]
    lines += ["", "Top changes:", *_top_lines(result, printable), ""]
    return "\n".join(lines)


def _top_lines(result: Replay, name: Callable[[str], str]) -> list[str]:
    if result.before is None:
        return ["  (no old set to compare with: --against-config)"]
    top = result.top()
    if not top:
        return ["  none: the same messages before and after"]
    return [
        f"  {name(c.uid)} {_where(c.room, name)} {c.field}: {_cell(c.before, c.after)}" for c in top
    ]


def _md(text: str) -> str:
    return printable(text).replace("|", "\\|").replace("`", "'")


def _markdown(result: Replay) -> str:
    lines = [
        f"### {_headline(result)}",
        "",
        "| integration | room | count | events |",
        "|---|---|---|---:|",
    ]
    lines += [
        f"| `{_md(u)}` | {'(events)' if r is None else _md(r)} | {f} | {cell} |"
        for u, r, f, cell in _rows(result)
    ]
    lines += ["", "**Totals**", "", "| count | events |", "|---|---:|"]
    lines += [f"| {f} | {_cell(b, a)} |" for f, (b, a) in result.totals().items()]
    lines += ["", "**Top changes**", ""]
    lines += [f"-{line[1:]}" for line in _top_lines(result, lambda t: f"`{_md(t)}`")] + [""]
    return "\n".join(lines)
