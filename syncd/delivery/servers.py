"""What each HipChat server may be sent now: a share of the workers, and rest
after it failed as a whole.

A server gets at most ``per_server`` sends in flight, so a slow or hostile one
cannot hold every worker. A server that is down (no connection, no answer in
time, or 502/503/504) is down for every room on it: its rooms rest until the
failed send's retry time instead of each trying on its own, so a long outage
costs a few requests per retry period, not one per room, and a recovering
server is not met by every room at once. A 500 or a rate limit may concern one
room or token only and rests nothing.

A server is an address and port, not the text of an endpoint: ``127.0.0.1``,
``localhost``, ``127.0.0.1:0443`` and a second DNS name of one machine would
otherwise each get their own share, and four of them every worker. A name's
addresses are looked up once and kept (see :class:`ServerAddresses`); a send
counts against every address its name has, so a name listing the slow
server's address among others cannot slip past that server's share. Every
loopback and unspecified address is one server: a program listening on
``0.0.0.0`` answers on all of them.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from syncd.hipchat.wire import DeliveryResult
from syncd.registry import Snapshot

SERVER_DOWN = frozenset({502, 503, 504})
DEFAULT_PORTS = {"http": 80, "https": 443}
# How long a name's addresses are trusted before the next send looks again: a
# moved server is followed within this, at one look-up per name per period.
ADDRESS_REFRESH = 60.0
# A name with more addresses counts against its first ones only: bounded work per send.
MAX_ADDRESSES = 16
LOCAL_MACHINE = "local"
# Past this many servers, those not sent to for a refresh period are forgotten.
FORGET_AFTER = 1024

Resolve = Callable[[str, int], Sequence[str]]
Address = str  # "192.0.2.1:443", "[2001:db8::1]:443", "local:8080", or "name:port" unresolved
Key = frozenset[Address]


def server_of(endpoint: str) -> str:
    """The server an endpoint names, as text: scheme, host and port, the port
    always written and without leading zeros (``https://h:0443`` is ``https://h:443``)."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return f"{scheme}://{parts.netloc}".lower()
    host = (parts.hostname or "").rstrip(".")
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port if port is not None else DEFAULT_PORTS.get(scheme, 0)}"


def host_and_port(server: str) -> tuple[str, int] | None:
    """The host and port of :func:`server_of`'s text; None when it names no port."""
    parts = urlsplit(server)
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname or "", port) if port is not None else None


def address_of(host: str, port: int) -> Address:
    """One address as a key: every loopback or unspecified address is this machine."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"{host}:{port}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return f"{LOCAL_MACHINE}:{port}"
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"


def system_resolve(host: str, port: int) -> Sequence[str]:
    """The addresses the system gives for ``host`` (as urllib3 will connect to them)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return ()
    return [str(sockaddr[0]) for *_, sockaddr in answers]


@dataclass(frozen=True)
class _Known:
    key: Key
    until: float  # when the next send looks the name up again
    refreshing: bool = False


class ServerAddresses:
    """Each server's addresses, looked up on its first send and again once per
    ``refresh`` seconds, by one worker while the others use what was known.

    A send costs a dictionary look-up, never a DNS query; a name that does not
    resolve here (a proxy may resolve it) is its own server, as written.
    """

    def __init__(self, resolve: Resolve = system_resolve, refresh: float = ADDRESS_REFRESH) -> None:
        self._resolve = resolve
        self._refresh = refresh
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self.version = 0  # changes when any server's addresses change

    def key(self, server: str, now: float) -> Key:
        """The addresses ``server`` counts against now."""
        known, fresh = self._claim(server, now)
        if fresh:
            assert known is not None
            return known.key
        try:
            key = self._look_up(server)
        except BaseException:
            if known is not None:  # the next send asks again
                with self._lock:
                    self._known[server] = known
            raise
        self._store(server, known, key, now)
        return key

    def _claim(self, server: str, now: float) -> tuple[_Known | None, bool]:
        """What is known of ``server`` and whether it will do; a stale entry is
        marked as being looked up, so that the other workers use it meanwhile."""
        with self._lock:
            known = self._known.get(server)
            if known is None:
                return None, False
            if known.until > now or known.refreshing:
                return known, True
            self._known[server] = _Known(known.key, known.until, refreshing=True)
            return known, False

    def _store(self, server: str, known: _Known | None, key: Key, now: float) -> None:
        with self._lock:
            if known is None or key != known.key:
                self.version += 1
            if known is None and len(self._known) >= FORGET_AFTER:
                self._forget_stale(now)
            self._known[server] = _Known(key, now + self._refresh)

    def _forget_stale(self, now: float) -> None:
        """Servers not sent to for a refresh period are looked up again if they
        come back: what config churn leaves behind is not kept for ever."""
        for server in [s for s, known in self._known.items() if known.until <= now]:
            del self._known[server]

    def current(self, server: str) -> Key | None:
        """What ``server`` counted against at its last send, without a look-up."""
        with self._lock:
            known = self._known.get(server)
        return known.key if known is not None else None

    def known(self) -> Iterable[tuple[str, Key]]:
        """The servers whose addresses are known, with them."""
        with self._lock:
            return [(server, known.key) for server, known in self._known.items()]

    def _look_up(self, server: str) -> Key:
        parsed = host_and_port(server)
        if parsed is None:
            return frozenset({server})
        host, port = parsed
        if _is_ip(host):
            return frozenset({address_of(host, port)})
        found = list(dict.fromkeys(self._resolve(host, port)))[:MAX_ADDRESSES]
        return frozenset(address_of(a, port) for a in found) or frozenset({f"{host}:{port}"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def server_down(result: DeliveryResult) -> bool:
    """A failure that says the server, not one room, is unavailable."""
    return result.outcome == "retry" and (result.status is None or result.status in SERVER_DOWN)


class Servers:
    """Sends in flight and rest per server address, and the integrations to pass over now.

    Callers name a server by :func:`server_of`'s text; what is counted is its
    addresses, so that every way of writing one server shares its one share.
    """

    def __init__(self, per_server: int, addresses: ServerAddresses | None = None) -> None:
        self.per_server = per_server
        self.addresses = addresses if addresses is not None else ServerAddresses()
        self._lock = threading.Lock()
        self._busy: dict[Address, int] = {}
        self._resting: dict[Address, float] = {}
        self._held: dict[str, list[Key]] = {}  # what each server's sends in flight counted against
        self._index: tuple[Snapshot | None, int, dict[Address, frozenset[str]]] = (None, -1, {})
        self._by_server: tuple[Snapshot | None, dict[str, frozenset[str]]] = (None, {})

    def take(self, server: str, now: float) -> bool:
        """A slot for one send, unless one of the server's addresses is full or resting."""
        key = self.addresses.key(server, now)
        with self._lock:
            if any(
                self._busy.get(a, 0) >= self.per_server or self._resting.get(a, 0.0) > now
                for a in key
            ):
                return False
            for address in key:
                self._busy[address] = self._busy.get(address, 0) + 1
            self._held.setdefault(server, []).append(key)
            return True

    def give_back(self, server: str) -> bool:
        """Free a slot; True when an address had been full, so others may now claim."""
        with self._lock:
            held = self._held[server]
            key = held.pop()
            if not held:
                del self._held[server]
            was_full = False
            for address in key:
                busy = self._busy.pop(address) - 1
                if busy:
                    self._busy[address] = busy
                was_full = was_full or busy + 1 >= self.per_server
            return was_full

    def outcome(self, server: str, result: DeliveryResult, retry_at: float) -> None:
        """Learn from a send: a server down rests until ``retry_at``; a success ends a rest."""
        with self._lock:
            held = self._held.get(server)
            key = held[-1] if held else None
        if key is None:
            key = self.addresses.current(server) or self.addresses.key(server, 0.0)
        with self._lock:
            for address in key:
                if result.ok:
                    self._resting.pop(address, None)
                elif server_down(result):
                    self._resting[address] = max(retry_at, self._resting.get(address, 0.0))

    def rest_ends(self, now: float) -> float | None:
        """The earliest end of a rest still running, for an idle worker's timer."""
        with self._lock:
            return min((until for until in self._resting.values() if until > now), default=None)

    def skip(self, snapshot: Snapshot, now: float) -> frozenset[str]:
        """The integrations one of whose server's addresses is full or resting."""
        with self._lock:
            for address in [a for a, until in self._resting.items() if until <= now]:
                del self._resting[address]
            unavailable = [a for a, busy in self._busy.items() if busy >= self.per_server]
            unavailable.extend(self._resting)
            if not unavailable:
                return frozenset()
            by_address = self._uids_by_address(snapshot)
        return frozenset().union(*(by_address.get(a, frozenset()) for a in unavailable))

    def _uids_by_address(self, snapshot: Snapshot) -> dict[Address, frozenset[str]]:
        """Built again only when the set or a server's addresses changed: from the
        set's integrations per server (once per set) and each known server's addresses."""
        cached, version, by_address = self._index
        if cached is snapshot and version == self.addresses.version:
            return by_address
        version = self.addresses.version
        if self._by_server[0] is not snapshot:
            self._by_server = (snapshot, _uids_by_server(snapshot))
        by_server = self._by_server[1]
        grouped: dict[Address, set[str]] = {}
        for server, key in self.addresses.known():
            uids = by_server.get(server)
            for address in key if uids else ():
                grouped.setdefault(address, set()).update(uids or ())
        by_address = {address: frozenset(uids) for address, uids in grouped.items()}
        self._index = (snapshot, version, by_address)
        return by_address


def _uids_by_server(snapshot: Snapshot) -> dict[str, frozenset[str]]:
    grouped: dict[str, set[str]] = {}
    for uid, notifier in snapshot.notifiers.items():
        grouped.setdefault(server_of(notifier.integration.hipchat.endpoint), set()).add(uid)
    return {server: frozenset(uids) for server, uids in grouped.items()}
