"""``syncd rules test``: what one event would do, per integration, for review.

Beyond Backtrace's UI: a reviewer (or CI, next to ``syncd plan``) sees for an
example event which action decides, with its place in the file, the
mentions, what the trigger does from a fresh state, and the message HipChat
would receive. Nothing is sent, no token is read, no state is kept.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncd.commands.configdir import load_valid
from syncd.config import semantics
from syncd.config.model import Integration
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError
from syncd.events.routing import judge, route_event
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
    options = semantics.Options(allow_plaintext_tokens=True, exclude=exclude)
    config = load_valid(config_dir, options)
    event = read_event(event_file)
    chosen = _chosen(config.integrations, event["project"], uids)
    if not chosen:
        print(f"no integration serves project {event['project']}: nothing would notify")
        return EXIT_FAILED
    flagged = event.get("new_group")
    fresh = bool(flagged) if flagged is not None else new_group
    notified = False
    for integration in chosen:
        lines, notifies = explain(integration, event, fresh)
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
    integration: Integration, event: Mapping[str, Any], new_group: bool
) -> tuple[list[str], bool]:
    """The lines for one integration, and whether the event would notify through it."""
    (judged,) = judge(event, [integration])
    lines = [f"{integration.uid} ({integration.name}, {integration.state}):"]
    if judged.rule is None:
        lines.append("  actions:  no submit or filter matches: the event may notify")
    else:
        action = integration.actions[judged.rule]
        at = f" at {action.source}" if action.source else ""
        lines.append(f"  actions:  decided by actions[{judged.rule}] ({action.action}){at}")
    lines.append(f"  mentions: {judged.mention or 'none'}")
    routing = route_event(event, [judged], new_group=new_group, windows={}, now=0.0)
    what = routing.notes[0].split(": ", 1)[1]
    lines.append(f"  trigger:  {integration.trigger.event}, from a fresh state: {what}")
    if routing.items:
        mentions = (judged.mention,) if judged.mention else ()
        message = render_message(event, integration, mentions)
        body = json.dumps(notification_body(message), indent=2, ensure_ascii=False)
        lines.append("  HipChat would receive (POST /v2/room/{id}/notification):")
        lines.extend("    " + line for line in body.splitlines())
    return lines, bool(routing.items)
