"""``syncd run`` as a real subprocess for tests that signal or kill it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .conftest import wait_for


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = requests.get(self.url + "/status", timeout=5).json()
        return result

    def post_events(self, events: object) -> requests.Response:
        return requests.post(self.url + "/v1/events", json=events, timeout=30)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def spawn(config: Path, state: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(state),
            "--listen",
            "127.0.0.1:0",
            *extra,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = Proc(popen)

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc


def wait_listening(proc: Proc) -> Proc:
    def found() -> bool:
        for line in proc.lines:
            match = re.search(r"listening on (http://\S+),", line)
            if match:
                proc.url = match.group(1)
                return True
        return proc.popen.poll() is not None

    wait_for(found, timeout=20, what="the daemon to listen")
    assert proc.url, proc.log
    return proc
