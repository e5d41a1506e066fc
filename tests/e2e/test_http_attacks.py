"""Attacks on the HTTP front of a real ``syncd run``, as a hostile local caller makes them.

Each attack runs while the test asks for ``/healthz`` and ingests an event: the
daemon must keep answering both, and its memory and CPU must stay where they
were. The browser attacks are requests a web page on the host can make
without the daemon's help: a text/plain POST (no CORS preflight), a POST
from a foreign origin, and a read through a rebound DNS name.
"""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.service.http import HEADER_TIMEOUT
from tests.support.configs import minimal, write_files
from tests.support.events import event
from tests.support.processes import (
    Proc,
    cpu_seconds,
    peak_rss_bytes,
    rss_bytes,
    spawn,
    wait_listening,
)
from tests.support.waiting import wait_for

ENV = {"HIPCHAT_TOKEN": "attacks-room-token"}
# An event no integration serves: ingest answers 202 and queues nothing.
UNSERVED = event(project="nosuch")
MiB = 1 << 20


def run_daemon(tmp_path: Path, preexec_fn: Callable[[], None] | None = None) -> Proc:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    return wait_listening(spawn(config, tmp_path / "state", env=ENV, preexec_fn=preexec_fn))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Proc]:
    proc = run_daemon(tmp_path)
    yield proc
    proc.stop()


def address(proc: Proc) -> tuple[str, int]:
    host, _, port = proc.url.removeprefix("http://").rpartition(":")
    return host, int(port)


def served(proc: Proc, session: requests.Session | None = None) -> bool:
    """/healthz answered 200 within two seconds, and an event was taken."""
    client: Any = session or requests
    health = client.get(proc.url + "/healthz", timeout=2)
    assert health.status_code == 200, (health.status_code, health.text)
    ingest = client.post(proc.url + "/v1/events", json=UNSERVED, timeout=2)
    assert ingest.status_code == 202, (ingest.status_code, ingest.text)
    return True


@dataclass
class Connection:
    sock: socket.socket
    opened: float
    closed: float | None = None


@dataclass
class Attackers:
    """``count`` connections that send ``head`` and then one byte per ``every`` seconds
    (none with ``drip`` empty), reopened as the server closes them while ``reopen`` is set."""

    target: tuple[str, int]
    count: int
    head: bytes
    drip: bytes = b"X"
    every: float = 0.5
    reopen: bool = True
    connections: list[Connection] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attackers:
        for _ in range(self.count):
            self._open()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        for conn in self.connections:
            conn.sock.close()
        self.selector.close()

    def _open(self) -> None:
        sock = socket.create_connection(self.target, timeout=10)
        with contextlib.suppress(OSError):
            sock.sendall(self.head)
        sock.setblocking(False)
        conn = Connection(sock, time.monotonic())
        with self.lock:
            self.connections.append(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            for key, _ in self.selector.select(0):
                self._read(key.data)
            for conn in self.open():
                with contextlib.suppress(OSError):
                    conn.sock.send(self.drip)

    def _read(self, conn: Connection) -> None:
        try:
            if conn.sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.selector.unregister(conn.sock)
        conn.closed = time.monotonic()
        if self.reopen and not self.stopping.is_set():
            self._open()

    def open(self) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.closed is None]

    def cut(self) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.closed is not None]


# --- point 6: slow senders, big headers, idle connections ------------------------------


def test_trickling_headers_hold_no_slot_and_are_cut(daemon: Proc) -> None:
    """As the issue measured: 512 connections each trickling header bytes held
    every slot, and real ingest was refused for as long as they trickled."""
    head = b"POST /v1/events HTTP/1.1\r\nHost: " + daemon.url[7:].encode() + b"\r\nX-A"
    with Attackers(address(daemon), 512, head) as attackers, requests.Session() as session:
        assert served(daemon)
        first = attackers.connections[: attackers.count]
        # Until every first connection has been cut, whether to make room or for
        # its pace, the daemon answers on a kept-alive connection and on new ones.
        wait_for(
            lambda: served(daemon, session) and all(c.closed for c in first),
            timeout=HEADER_TIMEOUT + 10,
            what="every trickling connection to be cut",
        )
        assert served(daemon)
        lifetimes = [c.closed - c.opened for c in attackers.cut() if c.closed is not None]
    assert max(lifetimes) < HEADER_TIMEOUT + 3, max(lifetimes)


def send_until_refused(target: tuple[str, int], head: bytes, filler: bytes, total: int) -> bytes:
    """Send ``head`` then ``filler`` until ``total`` bytes or the server stops reading;
    the answer, if one came before the connection was reset."""
    with socket.create_connection(target, timeout=10) as sock:
        sent = 0
        with contextlib.suppress(OSError):
            sock.sendall(head)
            while sent < total:
                sock.sendall(filler)
                sent += len(filler)
        try:
            return sock.recv(65536)
        except OSError:
            return b""


@pytest.mark.parametrize(
    "filler",
    [b"a" * 65536, b"X-Pad: a\r\n" * 6000],
    ids=["one-long-header", "many-headers"],
)
def test_60_connections_of_6_mb_headers_leave_memory_flat(daemon: Proc, filler: bytes) -> None:
    """As the issue measured: 60 connections each sending 5.9 MB of headers took
    the daemon from 47 to 970 MiB."""
    before = rss_bytes(daemon.popen.pid)
    peak_before = peak_rss_bytes(daemon.popen.pid)
    head = b"GET /status HTTP/1.1\r\nHost: " + daemon.url[7:].encode() + b"\r\nX-Big: "
    with ThreadPoolExecutor(60) as pool:
        answers = [
            pool.submit(send_until_refused, address(daemon), head, filler, 5_900_000)
            for _ in range(60)
        ]
        assert served(daemon)
        statuses = {a.result()[:12] for a in answers}
    # A reset may overtake the answer; every answer that came is the 431.
    assert statuses <= {b"HTTP/1.1 431", b""}, statuses
    assert b"HTTP/1.1 431" in statuses
    grown = peak_rss_bytes(daemon.popen.pid) - max(before, peak_before)
    assert grown < 32 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"
    assert served(daemon)


def low_descriptor_limit() -> None:
    # Soft and hard, as LimitNOFILE=256 sets them: the daemon raises a soft limit
    # to the hard one at start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_300_idle_connections_under_ulimit_256_cost_no_cpu(tmp_path: Path) -> None:
    """As the issue measured: with ``ulimit -n 256``, 300 idle connections made
    accept() fail with EMFILE in a busy loop, a core at 100%, nothing logged."""
    proc = run_daemon(tmp_path, preexec_fn=low_descriptor_limit)
    try:
        with Attackers(address(proc), 300, b"", drip=b"") as attackers:
            assert served(proc)
            began, cpu_before = time.monotonic(), cpu_seconds(proc.popen.pid)
            wait_for(
                lambda: served(proc) and time.monotonic() - began > 2,
                timeout=20,
                what="two seconds of answers under the idle connections",
            )
            share = (cpu_seconds(proc.popen.pid) - cpu_before) / (time.monotonic() - began)
            assert attackers.cut(), "no idle connection was ever cut"
        assert share < 0.5, f"the daemon used {share:.0%} of a core"
        assert "connections at once" in proc.log, proc.log
    finally:
        proc.stop()


# --- point 10: browsers on the host ----------------------------------------------------


@pytest.fixture(scope="module")
def browsed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = run_daemon(tmp_path_factory.mktemp("browsed"))
    yield proc
    proc.stop()


POSTS = [("/v1/events", UNSERVED), ("/-/reload", {}), ("/v1/outbox/retry", {"ids": [1]})]


@pytest.mark.parametrize(("path", "body"), POSTS, ids=[p for p, _ in POSTS])
def test_a_text_plain_post_from_a_page_is_a_415(browsed: Proc, path: str, body: object) -> None:
    before = browsed.status()
    answer = requests.post(
        browsed.url + path,
        data=json.dumps(body),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
        timeout=10,
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"]["message"] == "Content-Type must be application/json"
    assert browsed.status()["last_reconcile"] == before["last_reconcile"]


@pytest.mark.parametrize(("path", "body"), POSTS, ids=[p for p, _ in POSTS])
def test_a_post_from_a_foreign_origin_is_a_403(browsed: Proc, path: str, body: object) -> None:
    before = browsed.status()
    answer = requests.post(
        browsed.url + path, json=body, headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert answer.status_code == 403, answer.text
    assert browsed.status()["last_reconcile"] == before["last_reconcile"]


@pytest.mark.parametrize("path", ["/status", "/v1/registry", "/metrics", "/v1/outbox?state=dead"])
def test_a_rebound_name_reads_nothing(browsed: Proc, path: str) -> None:
    port = address(browsed)[1]
    answer = requests.get(browsed.url + path, headers={"Host": f"evil.example:{port}"}, timeout=10)
    assert answer.status_code == 421, answer.text
    assert "applied_revision" not in answer.text


def test_the_probes_and_the_clis_own_requests_still_work(browsed: Proc) -> None:
    port = address(browsed)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"10.1.2.3:{port}"):
        probe = requests.get(browsed.url + "/healthz", headers={"Host": host}, timeout=10)
        assert probe.status_code == 200, (host, probe.text)
    assert requests.get(browsed.url + "/status", timeout=10).status_code == 200
    assert served(browsed)
