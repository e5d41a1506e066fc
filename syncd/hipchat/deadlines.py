"""A deadline for a whole HTTP request: connect, send and the answer together.

Socket timeouts bound each read, not the request: a server that trickles one
byte every few seconds keeps a worker forever. Here one thread per client
watches the requests in flight and shuts down the socket of any that outlives
its deadline; the blocked read then fails at once and the caller sees an
ordinary connection error. The sockets are found through urllib3's connection
classes, which tell the deadline of the calling thread about every socket they
open or reuse, so proxies and TLS are covered alike.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.poolmanager import PoolManager


class Watch:
    """One request under a deadline; ``expired`` says whether it was cut."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Deadlines:
    """Cuts requests that outlive their deadline; one watcher thread, started on first use."""

    def __init__(self) -> None:
        self._armed: set[Watch] = set()
        self._cond = threading.Condition()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._waking_at: float | None = None  # when the watcher thread wakes next
        self._pools: dict[str, type[HTTPConnectionPool]] | None = None

    @contextmanager
    def bounded(self, seconds: float) -> Iterator[Watch]:
        """Run the block's request under a deadline ``seconds`` from now."""
        watch = Watch(time.monotonic() + seconds)
        with self._cond:
            self._start()
            self._armed.add(watch)
            # Deadlines mostly come in order: wake the watcher only for an earlier one.
            if self._waking_at is None or watch.deadline < self._waking_at:
                self._cond.notify()
        self._local.watch = watch
        try:
            yield watch
        finally:
            self._local.watch = None
            with self._cond:
                self._armed.discard(watch)

    def attach(self, sock: socket.socket | None) -> None:
        """Tell the calling thread's current deadline about a socket it uses."""
        watch: Watch | None = getattr(self._local, "watch", None)
        if watch is not None:
            watch.attach(sock)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syncd-deadlines", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for watch in [w for w in self._armed if w.deadline <= now]:
                    self._armed.discard(watch)
                    watch.expire()
                self._waking_at = min((w.deadline for w in self._armed), default=None)
                self._cond.wait(None if self._waking_at is None else self._waking_at - now)

    def watch(self, manager: PoolManager) -> None:
        """Make ``manager``'s connections report their sockets here."""
        if self._pools is None:
            self._pools = dict(_pool_classes(self))
        manager.pool_classes_by_scheme = self._pools


class _WatchedConnection(HTTPConnection):
    deadlines: Deadlines  # set on the per-client subclass made by _pool_classes

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.deadlines.attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.deadlines.attach(self.sock)
        super().request(*args, **kwargs)


class _WatchedTLSConnection(_WatchedConnection, HTTPSConnection):
    pass


def _pool_classes(deadlines: Deadlines) -> Mapping[str, type[HTTPConnectionPool]]:
    # Named as urllib3 names its own: the names show in connection errors.
    plain = type("HTTPConnection", (_WatchedConnection,), {"deadlines": deadlines})
    tls = type("HTTPSConnection", (_WatchedTLSConnection,), {"deadlines": deadlines})
    return {
        "http": type("HTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
        "https": type("HTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
    }
