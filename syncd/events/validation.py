"""Events in, step one: is this payload one event or a list of events the
daemon can take? Checked against ``event.schema.json``, with each problem named
by its JSON path. Nothing here reads YAML or the config: a request is judged
before anything else is looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.config.diagnostics import json_path
from syncd.schemacheck import Schema


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


_EXAMPLE_TIME = "2026-11-26T09:14:03Z"


def validate_events(payload: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """One event or a list of events against ``event.schema.json``."""
    events = payload if isinstance(payload, list) else [payload]
    problems: list[Problem] = []
    if not events:
        problems.append(Problem("$", "expected an event or a non-empty list of events"))
    for index, event in enumerate(events):
        if EVENT.certainly_valid(event):
            continue
        prefix: tuple[str | int, ...] = (index,) if isinstance(payload, list) else ()
        for error in EVENT.validator().iter_errors(event):
            path = json_path((*prefix, *error.absolute_path))
            message = error.message
            if error.validator == "format":
                message = f"not an RFC 3339 date-time with an offset, such as {_EXAMPLE_TIME}"
            problems.append(Problem(path, message))
    return events, problems


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
