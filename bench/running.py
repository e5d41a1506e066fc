"""A real ``syncd run`` for a bench: its log lines as they come, its peak RSS and
CPU read from /proc (Linux), and a stop by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class Daemon:
    """``args`` run in ``cwd`` with ``source`` (a checkout of syncd) first on the path."""

    def __init__(self, args: Sequence[str], source: Path, env: dict[str, str], cwd: Path) -> None:
        full = {**os.environ, **env, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
        for dropped in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "SYNCD_INGEST_TOKEN"):
            full.pop(dropped, None)
        self.popen = subprocess.Popen(
            list(args),
            env=full,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), line))

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(1 for _, line in self.lines if fragment in line)

    def wait_count(self, fragment: str, count: int, timeout: float) -> float:
        """When the ``count``-th line holding ``fragment`` came (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [at for at, line in self.lines if fragment in line]
            if len(found) >= count:
                return found[count - 1]
            if self.popen.poll() is not None:
                raise SystemExit(f"syncd run exited {self.popen.returncode}:\n{self.log[-3000:]}")
            time.sleep(0.002)
        raise SystemExit(
            f"no {count} lines with {fragment!r} within {timeout:g} s:\n{self.log[-3000:]}"
        )

    @property
    def log(self) -> str:
        with self._lock:
            return "".join(line for _, line in self.lines)

    def status(self, field: str) -> int:
        """A /proc/PID/status figure in bytes (VmHWM: peak RSS, VmRSS: now)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) * 1024
        raise LookupError(field)

    def cpu(self) -> float:
        """User and system CPU seconds used so far."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
