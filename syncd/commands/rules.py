"""``syncd rules test``: what one event would do, per integration, for review.

Beyond Backtrace's UI: a reviewer (or CI, next to ``syncd plan``) sees for an
example event which action decides, with its place in the file, the
mentions, what the trigger does from a fresh state, and the message HipChat
would receive. Each action's line shows where its regex was found: the regex is
searched, not anchored, and the part it found (``nyc`` in ``nyc2``) is what
tells a reviewer that it matches more than was meant. Nothing is sent, no
token is read, no state is kept.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncd.commands.configdir import load_valid
from syncd.config import semantics
from syncd.config.model import ANY_ATTRIBUTE, Action, Integration
from syncd.config.reach import Reach
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError
from syncd.events.muting import NO_MUTES, Mutes
from syncd.events.routing import judge, route_event
from syncd.events.rules import find_match
from syncd.hipchat.render import render_message
from syncd.hipchat.wire import notification_body


def read_event(path: str) -> dict[str, Any]:
    """The event from a JSON file (``-``: standard input), checked as ingest checks it."""
    from syncd.events.validation import validate_events

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        payload = json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read --event {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--event {path} is not JSON: {exc}") from None
    events, problems = validate_events(payload)
    if problems or len(events) != 1:
        found = "; ".join(f"{p.path}: {p.message}" for p in problems) or "want one event"
        raise UsageError(f"--event {path} is not a valid event: {found}")
    return events[0]


def test_event(
    config_dir: Path,
    event_file: str,
    *,
    uids: Sequence[str] = (),
    new_group: bool = True,
    exclude: tuple[str, ...] = (),
) -> int:
    """Exit 0 when the event would notify through at least one integration, 1 when not."""
    # Nothing is sent: where the config's tokens could go is the daemon's question.
    reach = Reach(allow_http=True, allow_link_local=True, expired_mutes="warning")
    options = semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)
    config = load_valid(config_dir, options)
    event = read_event(event_file)
    chosen = _chosen(config.integrations, event["project"], uids)
    if not chosen:
        print(f"no integration serves project {event['project']}: nothing would notify")
        return EXIT_FAILED
    flagged = event.get("new_group")
    fresh = bool(flagged) if flagged is not None else new_group
    # Mutes are judged now, as the daemon would judge them if the event came now.
    mutes, now = Mutes.of(config.mutes), time.time()
    notified = False
    for integration in chosen:
        lines, notifies = explain(integration, event, fresh, mutes, now)
        sys.stdout.write("\n".join(lines) + "\n\n")
        notified = notified or notifies
    return EXIT_OK if notified else EXIT_FAILED


def _chosen(
    integrations: Sequence[Integration], project: str, uids: Sequence[str]
) -> list[Integration]:
    missing = set(uids) - {i.uid for i in integrations}
    if missing:
        raise UsageError(f"no integration {', '.join(sorted(missing))}")
    return [i for i in integrations if i.project == project and (not uids or i.uid in uids)]


def explain(
    integration: Integration,
    event: Mapping[str, Any],
    new_group: bool,
    mutes: Mutes = NO_MUTES,
    now: float = 0.0,
) -> tuple[list[str], bool]:
    """The lines for one integration, and whether the event would notify through it
    (``mutes`` active at ``now`` hold back the rooms they cover)."""
    (judged,) = judge(event, [integration])
    lines = [f"{integration.uid} ({integration.name}, {integration.state}):"]
    if judged.rule is None:
        lines.append("  actions:  no submit or filter matches: the event may notify")
    else:
        action = integration.actions[judged.rule]
        at = f" at {action.source}" if action.source else ""
        lines.append(f"  actions:  decided by actions[{judged.rule}] ({action.action}){at}")
    lines.append(f"  mentions: {' '.join(judged.mentions) or 'none'}")
    routing = route_event(event, [judged], new_group=new_group, windows={}, now=now, mutes=mutes)
    what = routing.notes[0].split(": ", 1)[1]
    lines.append(f"  trigger:  {integration.trigger.event}, from a fresh state: {what}")
    lines.extend(_action_lines(integration.actions, event.get("attributes") or {}))
    if routing.items:
        item = routing.items[0]
        message = render_message(item.event, integration, item.mentions)
        body = json.dumps(notification_body(message), indent=2, ensure_ascii=False)
        lines.append("  HipChat would receive (POST /v2/room/{id}/notification):")
        lines.extend("    " + line for line in body.splitlines())
    return lines, bool(routing.items)


# Event values can be long; a review needs the part found, not all of it.
_SHOWN = 80


def _action_lines(actions: Sequence[Action], attributes: Mapping[str, str]) -> list[str]:
    """One line per action, top down: what it searches and where it was found."""
    if not actions:
        return []
    return ["  each action, top down:"] + [
        f"    actions[{index}] {_described(action)}: {_outcome(action, attributes)}"
        for index, action in enumerate(actions)
    ]


def _quoted(text: str) -> str:
    """JSON-quoted and clipped: spaces at either end and control characters show."""
    clipped = text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
    return json.dumps(clipped, ensure_ascii=False)


def _name(attribute: str) -> str:
    plain = bool(attribute) and attribute.isprintable() and attribute.strip() == attribute
    return attribute if plain else _quoted(attribute)


def _described(action: Action) -> str:
    target = f" {action.target}" if action.action == "mention" and action.target else ""
    on = "any attribute" if action.attribute == ANY_ATTRIBUTE else _name(action.attribute)
    return f"{action.action}{target} on {on}, regex {_quoted(action.regex)}"


def _outcome(action: Action, attributes: Mapping[str, str]) -> str:
    found = find_match(action, attributes)
    if found is None:
        return _no_match(action, attributes)
    if found.attribute is None:
        return "matched the empty value searched when the event has no attributes"
    where = f"{_name(found.attribute)}={_quoted(found.value)}"
    if found.start == found.end:
        return f"matched an empty part of {where} (before character {found.start + 1})"
    part = _quoted(found.value[found.start : found.end])
    return f"matched {part} in {where} (characters {found.start + 1}-{found.end})"


def _no_match(action: Action, attributes: Mapping[str, str]) -> str:
    if action.attribute == ANY_ATTRIBUTE:
        if not attributes:
            return "no match: the event has no attributes"
        return f"no match in any of the event's {len(attributes)} attribute(s)"
    value = attributes.get(action.attribute)
    if value is None:
        return f"no match: the event has no attribute {_name(action.attribute)}"
    return f"no match in {_name(action.attribute)}={_quoted(value)}"
