"""``syncd emit``: one error event posted to a running daemon."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.config.diagnostics import printable
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError


def parse_attributes(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a mapping; the value may itself hold ``=``."""
    attributes: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--attribute wants NAME=VALUE, got {pair!r}")
        attributes[name] = value
    return attributes


def build_event(
    project: str,
    fingerprint: str,
    *,
    timestamp: str | None = None,
    classifiers: Sequence[str] = (),
    callstack: Sequence[str] = (),
    attributes: Mapping[str, str] | None = None,
    optional: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The event as the ingest API takes it; ``optional`` fields only when given."""
    event: dict[str, object] = {
        "project": project,
        "fingerprint": fingerprint,
        "timestamp": timestamp or datetime.now(UTC).isoformat(timespec="seconds"),
        "classifiers": list(classifiers),
        "callstack": list(callstack),
        "attributes": dict(attributes or {}),
    }
    event.update({k: v for k, v in (optional or {}).items() if v is not None})
    return event


def emit(
    url: str, event: Mapping[str, object], *, token: str | None = None, wait_ready: float = 0.0
) -> int:
    """Exit 0 when the daemon accepted the event for an integration, 1 when it refused
    it or no integration serves the event's project.

    ``wait_ready``: a daemon started a moment ago (a tour pasted as one block, a
    script) is waited for, up to that many seconds, instead of failing at once.
    """
    from syncd.commands.remote import emit as post
    from syncd.commands.remote import wait_ready as wait

    if wait_ready > 0:
        wait(url, wait_ready, token=token)
    status, answer = post(url, dict(event), token=token)
    if status != 202:
        _print_refusal(status, answer)
        return EXIT_FAILED
    print(f"accepted {answer['ids'][0]}: {answer['notifications']} notification(s) queued")
    results = answer.get("events")
    why = [str(line) for line in results[0].get("why", [])] if results else _summary(answer)
    for line in why:
        print(f"  {printable(line)}")  # a mute's reason is a config's text
    unmatched = why[:1] == [f"no integration for project {event.get('project')}"]
    return EXIT_FAILED if unmatched else EXIT_OK


def _summary(answer: Mapping[str, Any]) -> list[str]:
    """Reasons counted per integration: the daemon's answer when a project has more
    integrations than it lists one by one."""
    lines = [
        f"{uid}: {reason}" + (f" ({count} events)" if count > 1 else "")
        for uid, tally in (answer.get("integrations") or {}).items()
        for reason, count in tally.get("events", {}).items()
    ]
    more = answer.get("integrations_not_listed")
    if more:
        lines.append(f"and {more['integrations']} more integration(s)")
    return lines


def _print_refusal(status: int, answer: Any) -> None:
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    print(f"syncd emit: refused ({status}): {error.get('message', answer)}", file=sys.stderr)
    for problem in error.get("problems", []):
        print(f"  {problem['path']}: {problem['message']}", file=sys.stderr)
