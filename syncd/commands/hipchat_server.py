"""``syncd hipchat-server``: the bundled HipChat look-alike, for a local tour and CI.

It answers like HipChat's room notification API (tokens, ``auth_test``, error
bodies; no rate limits unless asked) and prints each request it gets, so a
user can watch what syncd sends without a HipChat server of their own.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from syncd.commands.run import parse_listen
from syncd.errors import EXIT_OK, UsageError
from syncd.testing import Attempt, HipChatServer, Received
from syncd.testing.hipchat_contract import RateLimitMode

MAX_SHOWN = 200


def parse_rooms(pairs: Sequence[str]) -> dict[str, str]:
    """``ID=TOKEN`` pairs; the ID may also be a room name."""
    rooms: dict[str, str] = {}
    for pair in pairs:
        room, sep, token = pair.partition("=")
        if not sep or not room or not token:
            raise UsageError(f"--room wants ID=TOKEN, got {pair.split('=')[0]!r}=...")
        rooms[room] = token
    return rooms


def describe(attempt: Attempt, received: Received | None) -> str:
    """One line per request: when, which room, the answer, and what was posted."""
    when = datetime.fromtimestamp(attempt.time, UTC).strftime("%H:%M:%S")
    answer = "no answer" if attempt.status is None else str(attempt.status)
    line = f"{when} {attempt.method} room {attempt.room or '?'} -> {answer}"
    if received is not None:
        text = " ".join(str(received.body.get("message", "")).split())
        shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."
        line += f": {shown}"
    elif attempt.fault == "status":
        line += " (--fail-rate)"
    return line


def serve(
    listen: str,
    rooms: Sequence[str],
    *,
    latency_ms: float = 0.0,
    fail_rate: float = 0.0,
    rate_limits: RateLimitMode = "none",
) -> int:
    """Serve until SIGTERM or Ctrl-C; exit 0 after SIGTERM."""
    address = parse_listen(listen)
    if not 0.0 <= fail_rate <= 1.0:
        raise UsageError(f"--fail-rate wants 0 to 1, got {fail_rate:g}")
    if not latency_ms >= 0:
        raise UsageError(f"--latency wants 0 or more milliseconds, got {latency_ms:g}")
    server = HipChatServer(
        parse_rooms(rooms), limits=rate_limits, host=address.host, port=address.port
    )
    server.misbehave(latency=latency_ms / 1000, fail_rate=fail_rate)
    server.on_request(lambda attempt, received: print(describe(attempt, received), flush=True))
    try:
        server.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {listen} (--listen): {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        print(f"HipChat look-alike listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    print("stopped", file=sys.stderr)
    return EXIT_OK
