"""``syncd hipchat-server``: the README's three-command tour, and its options."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.processes import run_syncd, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tour-token-for-the-tests"


class Server:
    def __init__(self, *flags: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "syncd", "hipchat-server", "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        wait_for(lambda: self.url or self.popen.poll() is not None, timeout=20, what="listening")
        assert self.url, self.lines

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str:
        for line in list(self.lines):
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return match.group(1)
        return ""


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server("--room", f"1234567={TOKEN}")
    yield running
    running.popen.send_signal(signal.SIGTERM)
    assert running.popen.wait(timeout=20) == 0


def test_the_tour_delivers_and_the_server_prints_it(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "tour"
    config.mkdir()
    shipped = (ROOT / "examples" / "tour" / "tour.yaml").read_text()
    (config / "tour.yaml").write_text(shipped.replace("http://127.0.0.1:8080", server.url))
    daemon = wait_listening(spawn(config, tmp_path / "state", env={"HIPCHAT_TOUR_TOKEN": TOKEN}))
    try:
        emitted = run_syncd(
            "emit",
            "--url",
            daemon.url,
            "--project",
            "tour",
            "--fingerprint",
            "f1",
            "--classifier",
            "KeyError",
            cwd=tmp_path,
        )
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
        wait_for(
            lambda: any("POST room 1234567 -> 204: " in line for line in server.lines),
            timeout=30,
            what="the notification printed by the server",
        )
        printed = next(line for line in server.lines if "-> 204" in line)
        assert "KeyError" in printed
        assert TOKEN not in "".join(server.lines)
    finally:
        assert terminate(daemon) == 0


def test_failures_and_latency_on_request() -> None:
    failing = Server("--room", f"7={TOKEN}", "--fail-rate", "1", "--latency", "300")
    try:
        started = time.monotonic()
        answer = requests.post(
            f"{failing.url}/v2/room/7/notification",
            json={"message": "hi"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert time.monotonic() - started >= 0.3
        assert answer.status_code == 503
        wait_for(lambda: any("-> 503 (--fail-rate)" in line for line in failing.lines))
    finally:
        failing.popen.send_signal(signal.SIGTERM)
        assert failing.popen.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--room", "7"), "--room wants ID=TOKEN, got '7'=..."),
        (("--room", "7=t", "--fail-rate", "2"), "--fail-rate wants 0 to 1, got 2"),
    ],
)
def test_usage_errors(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    result = run_syncd("hipchat-server", "--listen", "127.0.0.1:0", *flags, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"syncd hipchat-server: error: {message}\n")
