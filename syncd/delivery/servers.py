"""What each HipChat server may be sent now: sends in flight that follow the
work, and rest after it failed as a whole.

A server's sends in flight are bounded by a limit its answers move, additive
increase and multiplicative decrease as TCP's congestion window, counted in
sends instead of bytes (:class:`SendLimit`). Every answer in time that found the
limit in use (half of it taken at least) raises it: by one per answer until
the first sign of overload (doubling every round trip, so that a backlog
reaches the server's pace within a few round trips), then by one per round
trip. An answer later than twice the server's latency floor (the least seen
over the last one or two minutes) raises nothing: the answers queue somewhere,
in the server or in this process, and more sends in flight would only queue
longer. A sign of overload (no answer in time, a transport error, a 5xx, a
408, a 429 or HipChat Server's rate-limit 403: every ``retry``) halves the
limit, once per round trip: sends begun before the last cut were sent at the
old limit and cut nothing more, so a burst of refusals is one cut, not a
collapse. Additive increase and multiplicative decrease is what lets several
daemons sending to one server converge on fair shares of what it takes, with
no word between them. A limit learns nothing while the work does not fill it
(a few rooms): it follows the work, not the idle time.

Whatever the limit, a server gets at most ``most`` sends in flight (the
dispatcher's ``max_in_flight``, and never more than half its workers), so a
slow or hostile one, which answers nothing and so teaches nothing until its
sends time out, cannot hold every worker. A server that is down (no
connection, no answer in time, or 502/503/504) is down for every room on it:
its rooms rest until the failed send's retry time instead of each trying on
its own, so a long outage costs a few requests per retry period, not one per
room, and a recovering server is not met by every room at once. A 500 or a
rate limit may concern one room or token only and rests nothing.

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
import math
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
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
# A server's sends in flight before its answers taught more: what a fixed share
# of the default workers allowed before the limit followed the work.
INITIAL_IN_FLIGHT = 32
# The cut on a sign of overload: the limit is halved.
DECREASE = 0.5
# An answer holds the latency while within this many times the server's floor,
# plus SLACK seconds (a floor of a millisecond would otherwise stop growth on
# the first scheduling hiccup).
TOLERANCE = 2.0
SLACK = 0.02
# The floor is the least latency seen in the current and the previous period
# of this many seconds: a server that became slower for good is followed.
FLOOR_PERIOD = 60.0

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

    def fresh(self, server: str, now: float) -> bool:
        """Whether :meth:`key` would answer without a look-up now."""
        with self._lock:
            known = self._known.get(server)
        return known is not None and (known.until > now or known.refreshing)

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


@dataclass(frozen=True, slots=True)
class SendLimit:
    """One server address's limit on sends in flight, as its answers moved it.

    ``threshold``: below it the limit grows by one per answer (slow start),
    above by one per round trip; ``cut_at``: when it was last cut; ``floor`` and
    ``low``: the least latency of the previous period and of the one ending at
    ``period_ends``; ``seen``: when an answer last came.
    """

    value: float
    threshold: float = math.inf
    cut_at: float = -math.inf
    floor: float = math.inf
    low: float = math.inf
    period_ends: float = -math.inf
    seen: float = -math.inf

    @property
    def allowed(self) -> int:
        return max(1, int(self.value))

    def answered(self, latency: float, in_use: bool, now: float, most: int) -> SendLimit:
        """An answer came after ``latency`` seconds: up by a step if the latency
        holds and the limit was ``in_use`` (half of it taken at least, since the
        send began), never past ``most``."""
        latency = max(0.0, latency)
        floor, low, ends = self.floor, self.low, self.period_ends
        if now >= ends:
            floor, low, ends = (low if low < math.inf else floor), latency, now + FLOOR_PERIOD
        else:
            low = min(low, latency)
        value = self.value
        holds = latency <= min(floor, low) * TOLERANCE + SLACK
        if holds and in_use and value < most:
            value = min(float(most), value + (1.0 if value < self.threshold else 1.0 / value))
        return SendLimit(value, self.threshold, self.cut_at, floor, low, ends, now)

    def overloaded(self, sent_at: float, now: float) -> SendLimit:
        """A sign of overload from a send begun at ``sent_at``: halved, unless the
        send began before the last cut (it was sent at the limit already cut)."""
        if sent_at <= self.cut_at:
            return replace(self, seen=now)
        value = max(1.0, self.value * DECREASE)
        return replace(self, value=value, threshold=value, cut_at=now, seen=now)


class Servers:
    """Sends in flight, their limits and rest per server address, and the
    integrations to pass over now.

    Callers name a server by :func:`server_of`'s text; what is counted is its
    addresses, so that every way of writing one server shares its one limit.
    ``most`` bounds every server's limit; ``initial`` is a server's limit before
    its first answer (at most ``most``).
    """

    def __init__(
        self,
        most: int,
        addresses: ServerAddresses | None = None,
        *,
        initial: int = INITIAL_IN_FLIGHT,
    ) -> None:
        self.most = most
        self.initial = max(1, min(initial, most))
        self.addresses = addresses if addresses is not None else ServerAddresses()
        self._lock = threading.Lock()
        self._busy: dict[Address, int] = {}
        self._limits: dict[Address, SendLimit] = {}
        # When a send last found half its address's limit taken: answers to sends
        # begun before then were sent with the limit in use, and may raise it.
        self._in_use: dict[Address, float] = {}
        # Addresses that turned a send away or were filled by one: the slots a send
        # there frees are passed on to idle workers, those its limit grew by since too.
        self._crowded: set[Address] = set()
        self._resting: dict[Address, float] = {}
        self._held: dict[str, list[Key]] = {}  # what each server's sends in flight counted against
        self._index: tuple[Snapshot | None, int, dict[Address, frozenset[str]]] = (None, -1, {})
        self._by_server: tuple[Snapshot | None, dict[str, frozenset[str]]] = (None, {})

    def _allowed(self, address: Address) -> int:
        limit = self._limits.get(address)
        return self.initial if limit is None else min(self.most, limit.allowed)

    def limit(self, server: str) -> int:
        """Sends ``server`` may have in flight now (the least of its addresses')."""
        key = self.addresses.current(server)
        with self._lock:
            if key is None:
                return self.initial
            return min(self._allowed(a) for a in key)

    def room(self, now: float, server: str | None = None) -> int:
        """Sends that could start now on the servers sent to so far, and on
        ``server`` its first limit if nothing was sent to it yet (at least one,
        for a server not sent to yet and not named): idle workers to wake for new
        items, no more."""
        first = self.initial if server is not None and self.addresses.current(server) is None else 0
        with self._lock:
            known = self._limits.keys() | self._busy.keys()
            free = sum(
                max(0, self._allowed(a) - self._busy.get(a, 0))
                for a in known
                if self._resting.get(a, 0.0) <= now
            )
        return max(1, free + first)

    def full(self) -> bool:
        """Whether a server has every send it may have in flight."""
        with self._lock:
            return any(busy >= self._allowed(a) for a, busy in self._busy.items())

    def take(self, server: str, now: float) -> bool:
        """A slot for one send, unless one of the server's addresses is full or resting."""
        key = self.addresses.key(server, now)
        with self._lock:
            full = [a for a in key if self._busy.get(a, 0) >= self._allowed(a)]
            if full:
                self._crowded.update(full)
                return False
            if any(self._resting.get(a, 0.0) > now for a in key):
                return False
            for address in key:
                busy = self._busy[address] = self._busy.get(address, 0) + 1
                allowed = self._allowed(address)
                if busy * 2 >= allowed:
                    self._in_use[address] = now
                if busy >= allowed:
                    self._crowded.add(address)
            self._held.setdefault(server, []).append(key)
            return True

    def give_back(self, server: str) -> int:
        """Free a slot. Returns the sends the server may now start besides those in
        flight when it was full or had turned one away since a claim last found
        nothing waiting (idle workers to wake, the caller among them), else 0: a
        limit that grows while a backlog waits is filled at each answer."""
        with self._lock:
            held = self._held[server]
            key = held.pop()
            if not held:
                del self._held[server]
            waited = False
            free = self.most
            for address in key:
                busy = self._busy.pop(address) - 1
                if busy:
                    self._busy[address] = busy
                allowed = self._allowed(address)
                waited = waited or address in self._crowded or busy + 1 >= allowed
                free = min(free, allowed - busy)
            return free if waited and free > 0 else 0

    def drained(self) -> None:
        """A claim found no head to take: what waits is for full servers only (a
        claim passes over them), so the slots the others free wake no one."""
        with self._lock:
            self._crowded = {a for a in self._crowded if self._busy.get(a, 0) >= self._allowed(a)}

    def outcome(
        self,
        server: str,
        result: DeliveryResult,
        retry_at: float,
        *,
        sent_at: float | None = None,
        answered_at: float | None = None,
    ) -> None:
        """Learn from a send: a server down rests until ``retry_at``; a success ends
        a rest. Given when the send took its slot and when its answer came, its
        limit learns too: up on a success whose latency holds, down on any failure
        to retry."""
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
            if sent_at is not None and answered_at is not None:
                self._learn(key, result, sent_at, answered_at)

    def _learn(self, key: Key, result: DeliveryResult, sent_at: float, now: float) -> None:
        if result.outcome not in ("delivered", "retry"):
            return  # a refusal of this one request (a 404, a bad token) says nothing of load
        if len(self._limits) >= FORGET_AFTER and any(a not in self._limits for a in key):
            self._forget_limits(now)
        for address in key:
            limit = self._limits.get(address) or SendLimit(float(self.initial))
            if result.ok:
                in_use = self._in_use.get(address, -math.inf) >= sent_at
                limit = limit.answered(now - sent_at, in_use, now, self.most)
            else:
                limit = limit.overloaded(sent_at, now)
            self._limits[address] = limit

    def _forget_limits(self, now: float) -> None:
        """Limits of addresses with nothing in flight and no answer for two floor
        periods start again at ``initial``: config churn is not kept for ever."""
        stale = now - 2 * FLOOR_PERIOD
        for address in [a for a, limit in self._limits.items() if limit.seen < stale]:
            if address not in self._busy:
                del self._limits[address]
                self._in_use.pop(address, None)

    def rest_ends(self, now: float) -> float | None:
        """The earliest end of a rest still running, for an idle worker's timer."""
        with self._lock:
            return min((until for until in self._resting.values() if until > now), default=None)

    def skip(self, snapshot: Snapshot, now: float) -> frozenset[str]:
        """The integrations one of whose server's addresses is full or resting."""
        with self._lock:
            for address in [a for a, until in self._resting.items() if until <= now]:
                del self._resting[address]
            unavailable = [a for a, busy in self._busy.items() if busy >= self._allowed(a)]
            self._crowded.update(unavailable)
            unavailable.extend(self._resting)
            if not unavailable:
                return frozenset()
            by_address = self._uids_by_address(snapshot)
        if len(unavailable) == 1:
            # The usual case, one full server: its set as kept, not a copy per claim.
            return by_address.get(unavailable[0], frozenset())
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
