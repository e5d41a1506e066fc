"""What the test server's handler threads share: rooms, queued faults, budgets
and the record of every request. One lock guards it all, so a test reads a
consistent record while requests keep arriving.
"""

from __future__ import annotations

import random
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from syncd.testing.hipchat_contract import (
    Attempt,
    Fault,
    Limits,
    Received,
    ServerRoom,
    Spent,
    Window,
    spend,
)


@dataclass
class _Queued:
    fault: Fault
    left: int


class ServerState:
    """Everything the handler threads share; one lock guards it."""

    def __init__(
        self,
        rooms: tuple[ServerRoom, ...],
        limits: Limits | None,
        allow_query_token: bool,
        clock: Callable[[], float],
    ) -> None:
        # Each request looks its room up: by id, else by name; the first room listed wins.
        self._by_id: dict[str, ServerRoom] = {}
        self._by_name: dict[str, ServerRoom] = {}
        for room in rooms:
            self._by_id.setdefault(room.id, room)
            if room.name is not None:
                self._by_name.setdefault(room.name.casefold(), room)
        self.limits = limits
        self.allow_query_token = allow_query_token
        self.clock = clock
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.received: list[Received] = []
        self.attempts: list[Attempt] = []
        self.faults: dict[str | None, deque[_Queued]] = {}
        self.windows: dict[tuple[str, str], Window] = {}
        self.connections: set[socket.socket] = set()
        self.listeners: list[Callable[[Attempt, Received | None], None]] = []
        self.latency = 0.0
        self.fail_rate = 0.0
        self.rng = random.Random()

    def find_room(self, key: str) -> ServerRoom | None:
        return self._by_id.get(key) or self._by_name.get(key.casefold())

    def queue_fault(self, room_id: str | None, fault: Fault, times: int) -> None:
        """``fault`` for the next ``times`` requests to the room (None: to any room)."""
        with self.lock:
            self.faults.setdefault(room_id, deque()).append(_Queued(fault, times))

    def standing_faults(self) -> list[Fault]:
        """The faults every request meets: a delay, and a 503 at the failure rate."""
        faults = [Fault.slow(self.latency)] if self.latency > 0 else []
        with self.lock:
            failing = self.fail_rate > 0 and self.rng.random() < self.fail_rate
        if failing:
            faults.append(Fault.server_error(503))
        return faults

    def faults_left(self, room_id: str | None) -> int:
        """Requests the faults queued for the room (None: for any room) are still for."""
        with self.lock:
            return sum(queued.left for queued in self.faults.get(room_id, ()))

    def take_fault(self, room: ServerRoom | None) -> Fault | None:
        with self.lock:
            for key in ((room.id,) if room else ()) + (None,):
                queue = self.faults.get(key)
                if queue:
                    queued = queue[0]
                    queued.left -= 1
                    if queued.left <= 0:
                        queue.popleft()
                    return queued.fault
        return None

    def spend(
        self, kind: str, key: str, budget: int, length: float, now: float, *, count: bool = True
    ) -> Spent:
        """Judge one request at ``now`` against the ``kind`` budget of ``key`` (a token
        or a room); ``count=False`` only reads the current counts."""
        with self.lock:
            spent = spend(self.windows.get((kind, key)), now, budget, length, count=count)
            if count:
                self.windows[(kind, key)] = spent.window
        return spent

    def record(self, attempt: Attempt, received: Received | None = None) -> None:
        with self.lock:
            self.attempts.append(attempt)
            if received is not None:
                self.received.append(received)
            self.lock.notify_all()
            listeners = list(self.listeners)
        for listener in listeners:
            listener(attempt, received)
