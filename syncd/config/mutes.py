"""Mutes: a room's notifications held back until a time, declared in git beside
the integrations (a deploy freeze, an incident being worked on).

A mute hides notifications; it changes nothing syncd knows. So a mute is not
part of an integration (muting would then update it, and its throttle state
with it), but a value of the set beside the integrations, that routing
consults at the moment a notification would be queued (``events.muting``).

Its time is judged where the set is judged, against the clock the operator's
``Reach`` gives: a mute already past is an error where a commit is checked
(``validate``, ``plan``) and a warning in the daemon, where passing its time
must never make a set invalid on a later reload; one further off than
``--max-mute`` is an error everywhere, so that a mute forgotten in the
repository cannot hide a room for ever. What a mute names (an integration, a
project, rooms) is judged across the files, with the other set-level checks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.config.diagnostics import Diagnostic, Severity, json_path, printable
from syncd.config.loader import DataPath, LoadedFile
from syncd.config.model import Integration, Source
from syncd.config.patterns import PatternError, compile_pattern
from syncd.config.reach import Reach

# The schema's bound on a file's mutes: past it, the schema says so and the
# mutes' own checks (a regex compiled per match) are spared.
MAX_MUTES = 100
# The schema's pattern for ``until``: a text it passes may still name no time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


@dataclass(frozen=True, slots=True)
class MuteMatch:
    """An attribute and the regex searched in its value, as an action's are."""

    attribute: str
    regex: str


@dataclass(frozen=True, slots=True)
class Mute:
    """One mute of a file, named by the file and its index there. ``uid`` or
    ``project`` (one is None) says whose notifications; ``rooms`` None: every
    room of theirs; ``match`` empty: every event."""

    file: str
    index: int
    until: float
    reason: str
    uid: str | None = None
    project: str | None = None
    match: tuple[MuteMatch, ...] = ()
    rooms: tuple[str, ...] | None = None
    # Where the mute, the value naming whom it mutes, and each room were written.
    source: Source | None = field(default=None, compare=False)
    target: Source | None = field(default=None, compare=False)
    room_sources: tuple[Source, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return f"{self.file} mutes[{self.index}]"

    @property
    def until_text(self) -> str:
        return utc_text(self.until)

    def active(self, now: float) -> bool:
        return now < self.until

    def names(self, integration: Integration) -> bool:
        """Whether this mute is about ``integration`` (by uid or by project)."""
        if self.uid is not None:
            return integration.uid == self.uid
        return integration.project == self.project

    def holds_room(self, room: str) -> bool:
        return self.rooms is None or room in self.rooms

    def describe(self) -> str:
        """``teams/pay.yaml mutes[0] until 2026-12-10T09:00:00Z (deploy freeze)``,
        its text escaped: a reason is printed to terminals and logs."""
        return printable(f"{self.name} until {self.until_text} ({self.reason})")


def utc_text(at: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    except (OverflowError, ValueError, OSError):
        return f"{at:.0f} s after 1970"


def parse_until(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with its offset (the schema's
    pattern): ValueError for one without an offset, or no calendar's."""
    moment = datetime.fromisoformat(text.upper())
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    return moment.timestamp()


def _now(reach: Reach) -> float:
    return reach.clock() if reach.clock is not None else time.time()


def _listed(loaded: LoadedFile) -> list[Any]:
    data = loaded.data
    found = data.get("mutes") if isinstance(data, dict) else None
    return found if isinstance(found, list) else []


def add_file_problems(loaded: LoadedFile, reach: Reach) -> None:
    """Each mute's regexes compile (as an action's must) and its time is within the
    operator's bounds; problems go to the file's listing. Past ``MAX_MUTES`` only
    the schema's error is given: checking each would be the cost the bound spares."""
    mutes = _listed(loaded)
    if len(mutes) > MAX_MUTES:
        return
    now = _now(reach)
    for index, mute in enumerate(mutes):
        if isinstance(mute, dict):
            _check_regexes(loaded, index, mute)
            _check_until(loaded, index, mute, reach, now)


def _add(
    loaded: LoadedFile,
    holder: Mapping[str, Any],
    key: str,
    path: DataPath,
    message: str,
    severity: Severity = "error",
) -> None:
    at = loaded.place(holder, key)
    line, col = at if at is not None else loaded.position(path)
    loaded.problems.add(Diagnostic(loaded.path, line, col, _json(path), message, severity))


def _json(path: DataPath) -> str:
    return json_path(path)


def _check_regexes(loaded: LoadedFile, index: int, mute: dict[str, Any]) -> None:
    match = mute.get("match")
    for m, entry in enumerate(match if isinstance(match, list) else ()):
        regex = entry.get("regex") if isinstance(entry, dict) else None
        if not isinstance(regex, str):
            continue
        try:
            compile_pattern(regex)
        except PatternError as exc:
            path = ("mutes", index, "match", m, "regex")
            _add(loaded, entry, "regex", path, f"invalid regex: {exc}")


def _check_until(
    loaded: LoadedFile, index: int, mute: dict[str, Any], reach: Reach, now: float
) -> None:
    text = mute.get("until")
    if not isinstance(text, str):
        return
    path = ("mutes", index, "until")
    try:
        until = parse_until(text)
    except ValueError as exc:
        if _RFC3339.fullmatch(text):  # else the schema says what is wrong with it
            _add(loaded, mute, "until", path, f"{text} is no time a calendar holds: {exc}")
        return
    if until <= now:
        _add(loaded, mute, "until", path, _expired(text, now, reach), reach.expired_mutes)
    elif until - now > reach.max_mute:
        _add(loaded, mute, "until", path, _too_far(text, until - now, reach.max_mute))


def _expired(text: str, now: float, reach: Reach) -> str:
    said = f"{text} is past (now {utc_text(now)}): this mute has ended and mutes nothing; remove it"
    if reach.expired_mutes == "error":
        return said + " (check an old commit with --allow-expired-mutes)"
    return said


def _too_far(text: str, ahead: float, most: int) -> str:
    return (
        f"{text} is {_span(ahead)} from now; a mute may last at most {_span(most)} "
        "(the operator's --max-mute), so that a forgotten one cannot hide a room for ever"
    )


def _span(seconds: float) -> str:
    """``6 days 10 hours``: a span as a person reads it, to the minute."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    units = ((days, "day"), (hours, "hour"), (rest // 60, "minute"))
    said = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in units if n]
    return " ".join(said[:2]) or f"{int(seconds)} seconds"


def mutes_from_data(loaded: LoadedFile, name: str | None = None) -> tuple[Mute, ...]:
    """A schema-valid file's mutes, with where each was written; ``name``: the file
    as the mutes are named (None: as it was read)."""
    named = loaded.path if name is None else name
    return tuple(_mute(loaded, named, index, data) for index, data in enumerate(_listed(loaded)))


def _mute(loaded: LoadedFile, name: str, index: int, data: Mapping[str, Any]) -> Mute:
    def where(*path: str | int) -> Source:
        full = ("mutes", index, *path)
        line, col = loaded.position(full)
        return Source(loaded.path, line, col, _json(full))

    rooms = data.get("rooms")
    return Mute(
        file=name,
        index=index,
        until=parse_until(data["until"]),
        reason=data["reason"],
        uid=data.get("uid"),
        project=data.get("project"),
        match=tuple(MuteMatch(m["attribute"], m["regex"]) for m in data.get("match", ())),
        rooms=None if rooms is None else tuple(str(room) for room in rooms),
        source=where(),
        target=where("uid" if "uid" in data else "project"),
        room_sources=tuple(where("rooms", r) for r in range(len(rooms or ()))),
    )


def set_problems(mutes: Sequence[Mute], integrations: Iterable[Integration]) -> list[Diagnostic]:
    """What the mutes name must be in the set: the integration, a project some
    integration serves, and rooms of the integration(s) named. Looks at the
    integrations only when there are mutes."""
    if not mutes:
        return []
    by_uid: dict[str, Integration] = {}
    by_project: dict[str, list[Integration]] = {}
    for integration in integrations:
        by_uid[integration.uid] = integration
        by_project.setdefault(integration.project, []).append(integration)
    return [problem for mute in mutes for problem in _named(mute, by_uid, by_project)]


def _named(
    mute: Mute, by_uid: Mapping[str, Integration], by_project: Mapping[str, list[Integration]]
) -> Iterator[Diagnostic]:
    named, missing, whose = _whose(mute, by_uid, by_project)
    if not named:
        yield _at(mute.target, mute, missing)
        return
    rooms = {room.id for integration in named for room in integration.rooms}
    for room, source in zip(mute.rooms or (), mute.room_sources, strict=True):
        if room not in rooms:
            yield _at(source, mute, f"room {room} is not a room of {whose}")


def _whose(
    mute: Mute, by_uid: Mapping[str, Integration], by_project: Mapping[str, list[Integration]]
) -> tuple[list[Integration], str, str]:
    """The integrations a mute names, what to say when there are none, and their name."""
    if mute.uid is not None:
        found = by_uid.get(mute.uid)
        named = [found] if found is not None else []
        return named, f"no integration has uid {mute.uid!r}", f"integration {mute.uid!r}"
    named = by_project.get(mute.project or "", [])
    missing = f"no integration serves project {mute.project!r}"
    return named, missing, f"the integrations of project {mute.project!r}"


def _at(source: Source | None, mute: Mute, message: str) -> Diagnostic:
    where = source or mute.source or Source(mute.file, 1, 1)
    return Diagnostic(where.file, where.line, where.col, where.path, message)
