"""Unit tests run in one thread, on no network and no other process.

A unit test that starts a thread, opens a socket or runs a subprocess fails
here; it belongs in tests/integration or tests/e2e.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any, NoReturn

import pytest


def _refuse(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"a unit test may not {what}; move it to tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def stay_a_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading.Thread, "start", _refuse("start a thread"))
    monkeypatch.setattr(socket.socket, "connect", _refuse("open a connection"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("listen on a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("run a subprocess"))
