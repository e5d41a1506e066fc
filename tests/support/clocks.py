"""A clock a test moves by hand, shared by the threads of a delivery and the
HipChat test server: time passes only when the test says so."""

from __future__ import annotations

import threading


class Clock:
    def __init__(self, now: float) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
