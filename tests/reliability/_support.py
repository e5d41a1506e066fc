"""Helpers shared by the reliability tests (not collected: the name starts with ``_``)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from syncd.testing.hipchat_server import HipChatServer

from ..conftest import wait_for
from ..proc import Proc, spawn, wait_listening

FAST_RETRY = ("--retry-base-delay", "0.05", "--retry-max-delay", "0.2")
TIMESTAMP = "2026-11-26T12:00:00Z"


def room_tokens(*rooms: str) -> dict[str, str]:
    return {room: f"reliability-token-{room}" for room in rooms}


def token_env(tokens: Mapping[str, str]) -> dict[str, str]:
    return {f"TOKEN_{room}": token for room, token in tokens.items()}


def trace_config(endpoint: str, rooms: Iterable[str], *, uid: str = "shop-trace") -> str:
    """One integration for project ``shop`` that notifies every event in every room."""
    listed = "\n".join(f"        - {{id: {room}, token: {{env: TOKEN_{room}}}}}" for room in rooms)
    return f"""\
version: 1
integrations:
  - uid: {uid}
    project: shop
    name: every error
    trigger: {{event: trace}}
    display: {{callstack: false, include_hostname: false}}
    hipchat:
      endpoint: {endpoint}
      message_format: text
      rooms:
{listed}
"""


def numbered_events(first: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    """Events whose message ends in ``n: <number>``; the number identifies them."""
    return [
        {
            "project": "shop",
            "fingerprint": f"fp-{n % 7}",
            "timestamp": TIMESTAMP,
            "classifiers": [f"Error{n}"],
            "attributes": {"n": str(n)},
            **extra,
        }
        for n in range(first, first + count)
    ]


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


def start(config: Path, state: Path, *extra: str, env: Mapping[str, str] | None = None) -> Proc:
    return wait_listening(spawn(config, state, *FAST_RETRY, *extra, env=dict(env or {})))


def spawn_with(
    config: Path,
    state: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Proc:
    """Like ``tests.proc.spawn``, with a ``preexec_fn`` run in the child before exec."""
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(state),
            "--listen",
            "127.0.0.1:0",
            *extra,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    proc = Proc(popen)

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return wait_listening(proc)


def kill9(proc: Proc) -> None:
    if proc.popen.poll() is None:
        os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(timeout=10)


def terminate(proc: Proc, timeout: float = 30) -> int:
    """SIGTERM, then the exit status (a kill after ``timeout``)."""
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
    try:
        return proc.popen.wait(timeout=timeout)
    except Exception:
        proc.stop()
        raise


__all__ = [
    "FAST_RETRY",
    "TIMESTAMP",
    "duplicates",
    "first_deliveries",
    "integrity",
    "kill9",
    "numbered_events",
    "numbers",
    "outbox_rows",
    "room_tokens",
    "spawn_with",
    "start",
    "terminate",
    "token_env",
    "trace_config",
    "wait_for",
]
