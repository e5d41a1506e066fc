"""What each HipChat server may be sent now: a share of the workers, and rest
after it failed as a whole.

A server gets at most ``per_server`` sends in flight, so a slow or hostile one
cannot hold every worker. A server that is down (no connection, no answer in
time, or 502/503/504) is down for every room on it: its rooms rest until the
failed send's retry time instead of each trying on its own, so a long outage
costs a few requests per retry period, not one per room, and a recovering
server is not met by every room at once. A 500 or a rate limit may concern one
room or token only and rests nothing.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from syncd.hipchat.wire import DeliveryResult
from syncd.registry import Snapshot

SERVER_DOWN = frozenset({502, 503, 504})


def server_of(endpoint: str) -> str:
    """The server an endpoint is on: scheme, host and port."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}".lower()


def server_down(result: DeliveryResult) -> bool:
    """A failure that says the server, not one room, is unavailable."""
    return result.outcome == "retry" and (result.status is None or result.status in SERVER_DOWN)


class Servers:
    """Sends in flight and rest per server, and the integrations to pass over now."""

    def __init__(self, per_server: int) -> None:
        self.per_server = per_server
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._resting: dict[str, float] = {}
        self._uids: tuple[Snapshot | None, dict[str, frozenset[str]]] = (None, {})

    def take(self, server: str, now: float) -> bool:
        """A slot for one send, unless the server is full or resting."""
        with self._lock:
            busy = self._busy.get(server, 0)
            if busy >= self.per_server or self._resting.get(server, 0.0) > now:
                return False
            self._busy[server] = busy + 1
            return True

    def give_back(self, server: str) -> bool:
        """Free a slot; True when the server had been full, so others may now claim."""
        with self._lock:
            busy = self._busy.pop(server) - 1
            if busy:
                self._busy[server] = busy
            return busy + 1 >= self.per_server

    def outcome(self, server: str, result: DeliveryResult, retry_at: float) -> None:
        """Learn from a send: a server down rests until ``retry_at``; a success ends a rest."""
        with self._lock:
            if result.ok:
                self._resting.pop(server, None)
            elif server_down(result):
                self._resting[server] = max(retry_at, self._resting.get(server, 0.0))

    def rest_ends(self, now: float) -> float | None:
        """The earliest end of a rest still running, for an idle worker's timer."""
        with self._lock:
            return min((until for until in self._resting.values() if until > now), default=None)

    def skip(self, snapshot: Snapshot, now: float) -> frozenset[str]:
        """The integrations whose server is full or resting."""
        with self._lock:
            for server in [s for s, until in self._resting.items() if until <= now]:
                del self._resting[server]
            unavailable = [s for s, busy in self._busy.items() if busy >= self.per_server]
            unavailable.extend(self._resting)
            if not unavailable:
                return frozenset()
            cached, by_server = self._uids
            if cached is not snapshot:
                by_server = _uids_by_server(snapshot)
                self._uids = (snapshot, by_server)
        return frozenset().union(*(by_server.get(server, frozenset()) for server in unavailable))


def _uids_by_server(snapshot: Snapshot) -> dict[str, frozenset[str]]:
    grouped: dict[str, set[str]] = {}
    for uid, notifier in snapshot.notifiers.items():
        grouped.setdefault(server_of(notifier.integration.hipchat.endpoint), set()).add(uid)
    return {server: frozenset(uids) for server, uids in grouped.items()}
