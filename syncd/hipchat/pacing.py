"""What the last answers said about the budget left, per token and per room.

A dispatcher that asks :meth:`Pacing.delay_before_send` waits instead of
spending a request on a certain 429. The headers are read through the one
table of them, ``hipchat_api.LIMIT_HEADERS``. Thread-safe; times are unix
seconds given by the caller, so no clock is read here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from syncd.hipchat.wire import LIMIT_HEADERS, RoomTarget, header_number, reset_time

DEFAULT_MAX_DELAY = 300.0


@dataclass
class _Window:
    remaining: float
    reset_at: float


class Pacing:
    def __init__(self, max_delay: float = DEFAULT_MAX_DELAY) -> None:
        self._max_delay = max_delay
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._blocked: dict[str, float] = {}

    def observe(self, target: RoomTarget, headers: Mapping[str, str], now: float) -> None:
        """Take in the ``X-Ratelimit-*`` and ``X-FloodControl-*`` headers of a response."""
        with self._lock:
            for limit in LIMIT_HEADERS:
                remaining = header_number(headers, limit.remaining)
                reset = header_number(headers, limit.reset)
                if remaining is not None and reset is not None:
                    self._windows[target.key(limit.scope)] = _Window(
                        remaining, reset_time(reset, now)
                    )

    def note_send(self, target: RoomTarget, now: float) -> None:
        """Count a request about to go out, so that concurrent senders share the budget."""
        with self._lock:
            for key in (target.token_key, target.room_key):
                window = self._windows.get(key)
                if window is not None and window.reset_at > now:
                    window.remaining -= 1

    def block(self, target: RoomTarget, until: float) -> None:
        """Hold every send to this room until ``until`` (after a rate-limit answer)."""
        with self._lock:
            key = target.room_key
            self._blocked[key] = max(until, self._blocked.get(key, until))

    def delay_before_send(self, target: RoomTarget, now: float) -> float:
        """Seconds to wait before the next request to ``target``; 0 means send now."""
        with self._lock:
            delays = [self._window_delay(key, now) for key in (target.token_key, target.room_key)]
            delays.append(self._blocked_delay(target.room_key, now))
        return min(max(delays), self._max_delay)

    def _window_delay(self, key: str, now: float) -> float:
        window = self._windows.get(key)
        if window is None:
            return 0.0
        if window.reset_at <= now:
            del self._windows[key]
            return 0.0
        return window.reset_at - now if window.remaining <= 0 else 0.0

    def _blocked_delay(self, key: str, now: float) -> float:
        until = self._blocked.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._blocked[key]
            return 0.0
        return until - now
