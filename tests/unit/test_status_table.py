"""``syncd status`` and ``syncd outbox list`` print what a daemon answered, with
no control character of it reaching the terminal."""

from __future__ import annotations

import re
from typing import Any

import pytest

from syncd.commands import outbox, remote
from syncd.commands.remote import render_status

ROOM = "ops\x1b[2J\x1b]0;owned\x07\rroom"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def hostile_status() -> dict[str, Any]:
    return {
        "applied_revision": "sha256:1\x1b[31m",
        "attempted_revision": "sha256:2\r",
        "last_reconcile": {"ok": False, "at": 0, "diagnostics": ["a\x1b[2J.yaml:1:1: error: x"]},
        "outbox_depth": 1,
        "outbox_lost_at_start": "lost\u2028at start",
        "integrations": {
            "uid\x9b31m": {
                "state": "enabled\x00",
                "queue_depth": 1,
                "rooms": {
                    ROOM: {
                        "healthy": False,
                        "last_error": "ConnectionError\r\n\x1b[1mforged",
                        "dead_letters": 1,
                    },
                    "2": {"healthy": True},
                },
            }
        },
    }


def test_the_status_table_escapes_every_value_and_keeps_its_columns() -> None:
    text = render_status(hostile_status())
    assert RAW.search(text) is None, text
    assert "ops\\x1b[2J\\x1b]0;owned\\x07\\rroom" in text
    assert "ConnectionError\\r\\n\\x1b[1mforged" in text
    lines = text.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("INTEGRATION"))
    rows = lines[header : header + 3]
    room_column = rows[0].index("ROOM")
    assert rows[1][room_column:].startswith("2 ")
    assert rows[2][room_column:].startswith("ops\\x1b")
    health_column = rows[0].index("HEALTH")
    assert rows[1][health_column:].startswith("ok ")
    assert rows[2][health_column:].startswith("UNHEALTHY ")


def test_the_outbox_list_escapes_every_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    item = {
        "id": 7,
        "uid": "uid\x1b[31m",
        "room": ROOM,
        "attempts": 3,
        "created_at": 0,
        "reason": "HTTP 500\r\x1b[2Jforged",
    }
    monkeypatch.setattr(remote, "fetch_outbox", lambda *a, **k: [item])
    assert outbox.list_items("http://127.0.0.1:1", dead=True, uid=None, limit=100) == 0
    shown = capsys.readouterr().out
    assert RAW.search(shown) is None, shown
    assert "HTTP 500\\r\\x1b[2Jforged" in shown and "uid\\x1b[31m" in shown
