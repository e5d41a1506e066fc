"""sd_notify over a real datagram socket, path and abstract."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.service.systemd import ServiceManager


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
        name = address
    else:
        name = f"@syncd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    sock.settimeout(5)
    yield sock, name
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_reloading_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notify = ServiceManager({"NOTIFY_SOCKET": name})
    assert notify.enabled
    assert notify.ready("2 integrations,\n  revision abc")
    assert received(sock) == ["READY=1", "STATUS=2 integrations, revision abc"]
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify.reloading()
    lines = received(sock)
    assert lines[0] == "RELOADING=1"
    usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify.stopping("draining")
    assert received(sock) == ["STOPPING=1", "STATUS=draining"]
    assert notify.watchdog()
    assert received(sock) == ["WATCHDOG=1"]


def test_without_a_socket_nothing_happens() -> None:
    notify = ServiceManager({})
    assert not notify.enabled
    assert not notify.ready()


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    assert not ServiceManager({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert ServiceManager(env).watchdog_interval == interval
