"""Events in, step one: is this payload one event or a list of events the
daemon can take? Checked against ``event.schema.json``, with each problem named
by its JSON path. Nothing here reads YAML or the config: a request is judged
before anything else is looked at.

What a refusal costs is bounded by the request, not by how wrong it is: at
most ``MAX_LISTED`` problems are listed, each message cut to
``MAX_MESSAGE`` characters (jsonschema repeats the offending value, which may
be a megabyte). Past them an event is only judged, valid or not, by the
compiled check, which builds no error: the events with problems are counted,
their problems are not, since counting a problem means building it, and a
megabyte of ``[1, 1, ...]`` holds half a million.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from syncd.config.diagnostics import json_path
from syncd.schemacheck import Schema

if TYPE_CHECKING:
    import jsonschema

MAX_LISTED = 100
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


@dataclass(frozen=True)
class Checked:
    """The events; the first problems found, each named by its event's index and
    field path; how many events have problems; and whether the problems listed
    are all there are (when not, the others are not counted)."""

    events: list[dict[str, Any]]
    problems: list[Problem]
    invalid: int = 0
    complete: bool = True

    @property
    def summary(self) -> str:
        """What the refusal says before its list of problems."""
        if self.complete:
            return "invalid event"
        return (
            f"invalid event: {self.invalid:,} of {len(self.events):,} event(s) have "
            f"problems; the first {len(self.problems)} problems are listed, the others "
            "not counted"
        )


_EXAMPLE_TIME = "2026-11-26T09:14:03Z"


def validate_events(payload: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """One event or a list of events against ``event.schema.json``, every problem listed."""
    checked = check_events(payload, listed=None)
    return checked.events, checked.problems


def check_events(payload: Any, *, listed: int | None = MAX_LISTED) -> Checked:
    """One event or a list of events against ``event.schema.json``: the first
    ``listed`` problems (all when None), and how many events have problems."""
    events = payload if isinstance(payload, list) else [payload]
    problems = [] if events else [Problem("$", "expected an event or a non-empty list of events")]
    invalid, complete = 0, True
    for index, event in enumerate(events):
        verdict = EVENT.verdict(event)
        if verdict:
            continue
        room = None if listed is None else listed - len(problems)
        prefix: tuple[str | int, ...] = (index,) if isinstance(payload, list) else ()
        found, more = _first_problems(event, prefix, room, verdict)
        problems.extend(found)
        invalid += bool(found) or more
        complete = complete and not more
    return Checked(events, problems, invalid, complete)


def _first_problems(
    event: Any, prefix: tuple[str | int, ...], room: int | None, verdict: bool | None
) -> tuple[list[Problem], bool]:
    """Up to ``room`` of the event's problems (all when None), and whether it has
    others: with no room left, only whether it has any."""
    if room is not None and room <= 0:
        return [], not _valid(event, verdict)
    found = list(islice(_problems(event, prefix), None if room is None else room + 1))
    return found[:room], room is not None and len(found) > room


def _valid(event: Any, verdict: bool | None) -> bool:
    """The compiled check's verdict where it has one, else jsonschema's, which
    stops at the event's first problem."""
    if verdict is not None:
        return verdict
    return bool(EVENT.validator().is_valid(event))


def _problems(event: Any, prefix: tuple[str | int, ...]) -> Iterator[Problem]:
    for error in EVENT.validator().iter_errors(event):
        yield Problem(json_path((*prefix, *error.absolute_path)), _message(error))


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, but in syncd's words where it would repeat a long value."""
    limit = error.validator_value
    worded = {
        "format": f"not an RFC 3339 date-time with an offset, such as {_EXAMPLE_TIME}",
        "maxLength": f"longer than {limit} characters",
        "maxItems": f"more than {limit} items",
        "maxProperties": f"more than {limit} attributes",
    }
    message = worded.get(str(error.validator), error.message)
    if "propertyNames" in error.relative_schema_path:
        message = f"an attribute name {message}"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def event_size(event: object) -> int:
    """An event's size as compact JSON in UTF-8: what the per-event bound counts."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def is_rfc3339(value: object) -> bool:
    """RFC 3339 date-time, offset required. jsonschema checks ``date-time`` only
    with an extra package installed; a timestamp is the one format we rely on."""
    if not isinstance(value, str):
        return True
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    text = (
        value[: match.start(1)] + ("59" if match[1] == "60" else match[1]) + value[match.end(1) :]
    )
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


EVENT = Schema("event.schema.json", (("date-time", is_rfc3339),))
