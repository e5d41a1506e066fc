"""The unit kind is enforced, not only named."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest


def test_a_unit_test_cannot_start_a_thread() -> None:
    with pytest.raises(AssertionError, match="may not start a thread"):
        threading.Thread(target=print).start()


def test_a_unit_test_cannot_open_a_connection() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="may not open"):
        sock.connect(("127.0.0.1", 9))


def test_a_unit_test_cannot_run_a_subprocess() -> None:
    with pytest.raises(AssertionError, match="may not run a subprocess"):
        subprocess.run(["true"], check=False)
