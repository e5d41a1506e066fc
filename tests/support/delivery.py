"""What a HipChat test server received and what the outbox file holds, read from outside."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from syncd.testing.hipchat_server import HipChatServer


def numbers(server: HipChatServer, room: str) -> list[int]:
    """The event numbers the room received, in the order they arrived (duplicates kept)."""
    return [int(str(m.body["message"]).rsplit("n: ", 1)[1]) for m in server.messages_for(room)]


def first_deliveries(sequence: list[int]) -> list[int]:
    return list(dict.fromkeys(sequence))


def duplicates(server: HipChatServer, rooms: Iterable[str]) -> int:
    return sum(c - 1 for r in rooms for c in Counter(numbers(server, r)).values())


def integrity(db_path: Path) -> str:
    """``PRAGMA integrity_check`` of a copy of the database (its WAL included).

    A copy, so that the check neither checkpoints nor removes the WAL the daemon
    will recover from on its next start.
    """
    with tempfile.TemporaryDirectory(prefix="syncd-integrity-") as scratch:
        copy = Path(scratch) / db_path.name
        for suffix in ("", "-wal"):
            source = Path(str(db_path) + suffix)
            if source.exists():
                shutil.copyfile(source, str(copy) + suffix)
        conn = sqlite3.connect(copy)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    return "\n".join(str(r[0]) for r in rows)


def outbox_rows(db_path: Path) -> list[tuple[Any, ...]]:
    """``(id, uid, room_id, state, reason)`` of every outbox row, read-only."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT id, uid, room_id, state, reason FROM outbox").fetchall()
    finally:
        conn.close()
