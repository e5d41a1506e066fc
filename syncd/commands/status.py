"""``syncd status``: a running daemon's /status, as a table or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from syncd.config.diagnostics import printable
from syncd.errors import EXIT_FAILED, EXIT_OK


def status(url: str, *, as_json: bool = False, token: str | None = None) -> int:
    """Exit 0 healthy, 1 degraded; an unreachable daemon is a usage error (2)."""
    from syncd.commands.remote import degraded, fetch_status, render_status

    document = fetch_status(url, token=token)
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(render_status(document) + mute_lines(document.get("mutes")))
    return EXIT_FAILED if degraded(document) else EXIT_OK


def mute_lines(mutes: object) -> str:
    """The active mutes, one line each: whose notifications, which rooms, until when
    and how long is left, and why; every text escaped, as a daemon may be anyone's."""
    if not isinstance(mutes, list) or not mutes:
        return ""
    lines = ["", "active mutes:"]
    lines.extend(_mute_line(mute) for mute in mutes if isinstance(mute, Mapping))
    return "\n".join(lines) + "\n"


def _mute_line(mute: Mapping[str, Any]) -> str:
    whose = f"uid {mute.get('uid')}" if mute.get("uid") else f"project {mute.get('project')}"
    rooms = mute.get("rooms")
    where = "every room" if not rooms else "rooms " + ", ".join(str(r) for r in rooms)
    left = _left(mute.get("remaining_seconds"))
    text = (
        f"  {mute.get('mute')}: {whose}, {where}, until {mute.get('until')} "
        f"({left} left): {mute.get('reason')}"
    )
    return printable(text)


def _left(seconds: object) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "?"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d{hours}h{rest // 60}m" if days else f"{hours}h{rest // 60}m"
