"""``syncd run`` under a fake systemd: the notify protocol over a real socket."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.support.configs import minimal
from tests.support.processes import spawn, wait_listening
from tests.support.waiting import wait_for


def read(sock: socket.socket, until: str, timeout: float = 20.0) -> list[list[str]]:
    """Datagrams received until one contains ``until``."""
    got: list[list[str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            fields = sock.recv(4096).decode().split("\n")
        except TimeoutError:
            break
        got.append(fields)
        if until in fields:
            return got
    raise AssertionError(f"no {until} within {timeout}s; got {got}")


def test_ready_reload_watchdog_stopping(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    proc = spawn(
        config,
        tmp_path / "state",
        env={
            "HIPCHAT_TOKEN": "notify-test-token",
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "WATCHDOG_USEC": "400000",
        },
    )
    try:
        ready = read(sock, "READY=1")[-1]
        assert any(f.startswith("STATUS=1 integrations, revision sha256:") for f in ready)
        wait_listening(proc)
        assert proc.status()["last_reconcile"]["ok"] is True

        watchdog = read(sock, "WATCHDOG=1", timeout=5)
        assert watchdog[-1] == ["WATCHDOG=1"]

        proc.popen.send_signal(signal.SIGHUP)
        reload = [m for m in read(sock, "READY=1") if m != ["WATCHDOG=1"]]
        assert reload[0][0] == "RELOADING=1"
        assert reload[0][1].startswith("MONOTONIC_USEC=")
        assert "READY=1" in reload[-1]

        proc.popen.send_signal(signal.SIGTERM)
        stopping = [m for m in read(sock, "STOPPING=1") if m != ["WATCHDOG=1"]]
        assert stopping[-1][0] == "STOPPING=1"
        assert proc.popen.wait(timeout=20) == 0
    finally:
        proc.stop()
        sock.close()


def test_journal_priorities_under_systemd(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    proc = wait_listening(
        spawn(config, tmp_path / "state", env={"HIPCHAT_TOKEN": "t-123", "JOURNAL_STREAM": "8:1"})
    )
    try:
        (config / "b.yaml").write_text("version: 1\nintegrations: [\n")
        wait_for(lambda: any(line.startswith("<3>") for line in proc.lines), what="an error line")
        assert any(line.startswith("<6>syncd: applied") for line in proc.lines)
    finally:
        proc.stop()


def test_json_logs(tmp_path: Path) -> None:
    import json

    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    proc = wait_listening(
        spawn(config, tmp_path / "state", "--log-format", "json", env={"HIPCHAT_TOKEN": "t-123"})
    )
    proc.stop()
    entries = [json.loads(line) for line in proc.lines]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("listening on http://127.0.0.1:") for e in entries)
