"""``syncd outbox``: a running daemon's dead letters and queue, and sending dead letters again."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.commands.remote import cell
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError

REASON_WIDTH = 70


def list_items(
    url: str, *, dead: bool, uid: str | None, limit: int, token: str | None = None
) -> int:
    """Print one row per item; exit 0."""
    from syncd.commands.remote import fetch_outbox

    items = fetch_outbox(url, "dead" if dead else "pending", uid=uid, limit=limit, token=token)
    rows = [("ID", "INTEGRATION", "ROOM", "ATTEMPTS", "SINCE", "REASON")]
    rows.extend(_row(item) for item in items)
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    if len(items) == limit:
        print(f"(the first {limit}; --limit shows more)")
    return EXIT_OK


def _row(item: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    since = datetime.fromtimestamp(float(item["created_at"]), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return (
        cell(item["id"]),
        cell(item["uid"]),
        cell(item["room"]),
        cell(item["attempts"]),
        since,
        cell(item.get("reason") or "-", REASON_WIDTH),
    )


def retry(
    url: str,
    ids: Sequence[int],
    *,
    all_dead: bool,
    uid: str | None,
    room: str | None,
    token: str | None = None,
) -> int:
    """Queue dead letters again; exit 0 when some were, 1 when none matched."""
    from syncd.commands.remote import retry_dead

    if bool(ids) == all_dead:
        raise UsageError("give item ids, or --all-dead (with --uid and --room to narrow it)")
    if (uid or room) and not all_dead:
        raise UsageError("--uid and --room go with --all-dead")
    body: dict[str, Any] = (
        {"ids": list(ids)} if ids else {"all_dead": True, "uid": uid, "room": room}
    )
    retried = retry_dead(url, body, token=token)
    if not retried:
        print("no dead letter matched")
        return EXIT_FAILED
    print(f"queued again: {len(retried)} ({', '.join(str(i) for i in retried)})")
    return EXIT_OK
