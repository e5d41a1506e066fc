"""syncd as a real subprocess: the CLI once, or the daemon to signal or kill."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.waiting import wait_for

FAST_RETRY = ("--retry-base-delay", "0.05", "--retry-max-delay", "0.2")
# What `syncd run` must be told about endpoints, for the HipChat test server on a
# loopback port that changes per test: any endpoint, plain http included.
TEST_POLICY = ("--allow-any-endpoint", "--allow-http-endpoint")


def run_syncd(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


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


def spawn(
    config: Path,
    state: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    policy: tuple[str, ...] = TEST_POLICY,
) -> Proc:
    """``syncd run`` on a free loopback port; its output is collected line by line.
    ``policy``: the endpoint flags, () for a test that gives its own in ``extra``."""
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
            *policy,
            *extra,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    return collect(popen)


def collect(popen: subprocess.Popen[str]) -> Proc:
    """A started process whose output (stdout, with stderr in it) is collected line
    by line, so a test can wait on what it says."""
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


def start(
    config: Path,
    state: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    policy: tuple[str, ...] = TEST_POLICY,
) -> Proc:
    """A listening daemon with fast retries."""
    return wait_listening(spawn(config, state, *FAST_RETRY, *extra, env=env, policy=policy))


# The PATH systemd gives a service.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def start_as_unit(command: list[str], credentials_dir: Path, env: Mapping[str, str]) -> Proc:
    """A unit's command line started as systemd would: from /, with its PATH, its
    credentials directory and ``env`` (the unit's Environment=) only; listening, or
    stopped if it is not (a failing test leaves no daemon behind)."""
    popen = subprocess.Popen(
        command,
        cwd="/",
        env={"PATH": SYSTEMD_PATH, "CREDENTIALS_DIRECTORY": str(credentials_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = collect(popen)
    try:
        return wait_listening(proc)
    except BaseException:  # pytest's failure too: no daemon left behind
        proc.stop()
        raise


def kill9(proc: Proc) -> None:
    if proc.popen.poll() is None:
        os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(timeout=10)


def terminate(proc: Proc, timeout: float = 30) -> int:
    """SIGTERM, then the exit status (a kill after ``timeout``)."""
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
    try:
        return proc.popen.wait(timeout=timeout)
    except Exception:
        proc.stop()
        raise


def _proc_status(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field_name:
            return int(value.split()[0]) * 1024
    raise LookupError(f"{field_name} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """A running process's resident memory now (Linux)."""
    return _proc_status(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory a running process has had since it started (Linux)."""
    return _proc_status(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
