"""The state dir's file system fills up while ``syncd run`` takes events in and delivers.

The state dir is a small tmpfs of its own (``mount -t tmpfs``, root only; unmounted
at the end); the space left is then filled with a ballast file. Without root the
test falls back to ``RLIMIT_FSIZE`` on the daemon (set with ``prlimit``, raised
again to "free space"), with ``SIGXFSZ`` ignored so a write fails with EFBIG.

While full, ``POST /v1/events`` answers 503 with a JSON error (never 500, never a
202 for events that were not stored), the daemon keeps running and says in its
log what is wrong; ``/readyz`` says not ready (it once said ready throughout),
``/status`` says ``outbox_writable: false`` and ``syncd_outbox_writable`` is 0;
once space is back it takes events again and says ready, and everything it
accepted, before and after, is delivered; the database passes its integrity check.
What was queued before the disk filled is delivered while it is full: settling
a send needs no new space. Nor does a full disk flood the log (it once logged a
traceback every 5 ms per worker).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from syncd.testing import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.delivery import integrity, numbers
from tests.support.events import numbered_events
from tests.support.processes import FAST_RETRY, Proc, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

TOKENS = room_tokens("4001", "4002")
FS_SIZE = 8 << 20
BIG = "x" * 40_000  # per event: a full file system refuses a batch of these for sure


@contextlib.contextmanager
def small_tmpfs(where: Path, size: int) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` bytes at ``where``; yields False when that is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


def fill(directory: Path) -> Path:
    """Write a ballast file until the file system is full."""
    ballast = directory / "ballast"
    chunk = b"\0" * (64 << 10)
    with ballast.open("wb", buffering=0) as out:
        for size in (64 << 10, 4096, 512, 1):
            piece = chunk[:size]
            for _ in range(FS_SIZE // size + 1):
                try:
                    out.write(piece)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
            else:
                pytest.fail("the file system never filled up")
    return ballast


def ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Disk:
    """Makes the daemon's disk full and frees it again, by one of two methods."""

    def __init__(self, state: Path, tmpfs: bool) -> None:
        self.state = state
        self.tmpfs = tmpfs
        self.ballast: Path | None = None
        self.proc: Proc | None = None

    def make_full(self) -> None:
        if self.tmpfs:
            self.ballast = fill(self.state)
        else:
            assert self.proc is not None
            used = max(p.stat().st_size for p in self.state.iterdir() if p.is_file())
            limit = used + 4096
            resource.prlimit(
                self.proc.popen.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)
            )

    def free(self) -> None:
        if self.tmpfs:
            assert self.ballast is not None
            self.ballast.unlink()
        else:
            assert self.proc is not None
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self.proc.popen.pid, resource.RLIMIT_FSIZE, unlimited)


def post(proc: Proc, events: list[dict[str, object]]) -> requests.Response:
    return requests.post(proc.url + "/v1/events", json=events, timeout=60)


def readiness(proc: Proc) -> tuple[int, str]:
    answer = requests.get(proc.url + "/readyz", timeout=10)
    return answer.status_code, answer.text


def writable_gauge(proc: Proc) -> float:
    text = requests.get(proc.url + "/metrics", timeout=10).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("syncd_outbox_writable ")]
    return float(line.split()[1])


def says_not_ready(proc: Proc, named: str) -> None:
    """Readiness, /status and the metric all say the outbox cannot be written."""
    wait_for(lambda: readiness(proc)[0] == 503, timeout=10, what="/readyz to say not ready")
    _, text = readiness(proc)
    assert text.startswith("not ready: the outbox cannot be written: "), text
    assert named in text or "bytes free on the state dir's file system" in text, text
    assert requests.get(proc.url + "/healthz", timeout=10).status_code == 200
    document = proc.status()
    assert document["outbox_writable"] is False
    assert document["outbox_write_problem"] == text.split(": ", 2)[2].strip()
    assert writable_gauge(proc) == 0


def run_scenario(tmp_path: Path, disk_for: Callable[[Path], Disk]) -> None:
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    with HipChatServer(TOKENS, limits=None) as hipchat:
        (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
        disk = disk_for(state)
        proc = wait_listening(
            spawn(config, state, *FAST_RETRY, env=token_env(TOKENS), preexec_fn=ignore_sigxfsz)
        )
        disk.proc = proc
        accepted: set[int] = set()
        refused: set[int] = set()
        n = 0
        try:
            answer = post(proc, numbered_events(n, 20))
            assert answer.status_code == 202, answer.text
            accepted.update(range(n, n + 20))
            n += 20
            wait_for(lambda: len(hipchat.messages) >= 10, timeout=30, what="deliveries")

            disk.make_full()
            log_mark = len(proc.lines)
            statuses = []
            for _ in range(8):
                batch = numbered_events(n, 10, hostname="h", classifiers=[BIG])
                answer = post(proc, batch)
                statuses.append(answer.status_code)
                assert answer.status_code in (202, 503), (answer.status_code, answer.text)
                if answer.status_code == 202:
                    accepted.update(range(n, n + 10))
                else:
                    error = answer.json()["error"]
                    assert error["code"] == 503, error
                    assert "retry" in error["message"], error
                    assert "Traceback" not in answer.text
                    refused.update(range(n, n + 10))
                n += 10
            assert 503 in statuses, statuses
            assert proc.popen.poll() is None, proc.log
            assert requests.get(proc.url + "/healthz", timeout=10).status_code == 200
            status = requests.get(proc.url + "/status", timeout=10)
            assert status.status_code in (200, 503), status.text
            # ENOSPC is SQLite's "database or disk is full"; EFBIG (the rlimit) its
            # "disk I/O error".
            named = "database or disk is full" if disk.tmpfs else "disk I/O error"
            says_not_ready(proc, named)
            wait_for(
                lambda: any(
                    "could not store" in line and named in line for line in proc.lines[log_mark:]
                ),
                timeout=10,
                what=f"the log to say the events could not be stored: {named}",
            )

            disk.free()

            def ingest_works() -> bool:
                nonlocal n
                answer = post(proc, numbered_events(n, 5))
                assert answer.status_code in (202, 503), (answer.status_code, answer.text)
                if answer.status_code == 202:
                    accepted.update(range(n, n + 5))
                else:
                    refused.update(range(n, n + 5))
                n += 5
                return answer.status_code == 202

            wait_for(ingest_works, timeout=20, what="ingest to work again once space is back")
            wait_for(lambda: readiness(proc) == (200, "ready\n"), timeout=10, what="ready")
            assert proc.status()["outbox_writable"] is True
            assert writable_gauge(proc) == 1
            answer = post(proc, numbered_events(n, 20))
            assert answer.status_code == 202, answer.text
            accepted.update(range(n, n + 20))
            n += 20

            expected = {(r, k) for r in TOKENS for k in accepted}
            wait_for(
                lambda: {(r, k) for r in TOKENS for k in numbers(hipchat, r)} >= expected,
                timeout=60,
                what="every accepted notification",
            )
            wait_for(lambda: proc.status()["outbox_depth"] == 0, timeout=30, what="empty outbox")
            assert proc.popen.poll() is None, proc.log
        finally:
            code = terminate(proc)
        assert code == 0, proc.log[-5000:]
        for room in TOKENS:
            got = numbers(hipchat, room)
            assert set(got) == accepted, (room, sorted(set(got) ^ accepted))
            assert not set(got) & refused, "an event answered 503 was stored and delivered"
            firsts = list(dict.fromkeys(got))
            assert firsts == sorted(firsts), room
        assert integrity(state / "outbox.db") == "ok"


@pytest.mark.parametrize("method", ["tmpfs", "rlimit"])
def test_disk_full_on_the_state_dir(tmp_path: Path, method: str) -> None:
    if method == "rlimit":
        if not hasattr(resource, "prlimit"):
            pytest.skip("resource.prlimit (Linux) is not available here")
        run_scenario(tmp_path, lambda state: Disk(state, tmpfs=False))
        return
    with small_tmpfs(tmp_path / "state", FS_SIZE) as mounted:
        if not mounted:
            pytest.skip("mounting a small tmpfs needs root; the rlimit variant still runs")
        run_scenario(tmp_path, lambda state: Disk(state, tmpfs=True))


def test_a_full_disk_does_not_flood_the_log(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    with contextlib.ExitStack() as stack, HipChatServer(TOKENS, limits=None) as hipchat:
        mounted = stack.enter_context(small_tmpfs(state, FS_SIZE))
        if not mounted and not hasattr(resource, "prlimit"):
            pytest.skip("neither a tmpfs mount (root) nor resource.prlimit is available")
        hipchat.inject(Fault.slow(0.05), times=100_000)
        (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
        proc = wait_listening(
            spawn(config, state, *FAST_RETRY, env=token_env(TOKENS), preexec_fn=ignore_sigxfsz)
        )
        disk = Disk(state, tmpfs=mounted)
        disk.proc = proc
        try:
            assert post(proc, numbered_events(0, 100)).status_code == 202
            wait_for(lambda: len(hipchat.messages) >= 2, timeout=20, what="deliveries")
            disk.make_full()
            mark = len(proc.lines)
            began = time.monotonic()
            limit = 40  # ten a second per worker would already be plenty
            wait_for(
                lambda: time.monotonic() - began >= 1.0 or len(proc.lines) - mark > limit,
                timeout=10,
                what="a second of full disk",
            )
            logged = proc.lines[mark:]
            disk.free()
            assert len(logged) <= limit, (
                f"{len(logged)} log lines ({sum(map(len, logged))} bytes) within "
                f"{time.monotonic() - began:.2f} s of a full disk:\n{''.join(logged[:3])}"
            )
        finally:
            terminate(proc)


def test_what_was_queued_is_delivered_while_the_disk_is_full(tmp_path: Path) -> None:
    """A full file system, not a file-size limit: under ``RLIMIT_FSIZE`` SQLite's
    log cannot grow whatever space is free, and settling a send needs it to."""
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    with small_tmpfs(state, FS_SIZE) as mounted, HipChatServer(TOKENS, limits=None) as hipchat:
        if not mounted:
            pytest.skip("mounting a small tmpfs needs root")
        (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
        hipchat.inject(Fault.server_error(503), times=100_000)
        proc = wait_listening(spawn(config, state, *FAST_RETRY, env=token_env(TOKENS)))
        disk = Disk(state, tmpfs=True)
        try:
            assert post(proc, numbered_events(0, 30)).status_code == 202
            wait_for(lambda: len(hipchat.attempts) >= 2, timeout=20, what="failed attempts")
            disk.make_full()
            refused = post(proc, numbered_events(30, 10, hostname="h", classifiers=[BIG]))
            assert refused.status_code == 503, refused.text
            says_not_ready(proc, "database or disk is full")
            hipchat.clear_faults()
            wait_for(
                lambda: all(sorted(set(numbers(hipchat, r))) == list(range(30)) for r in TOKENS),
                timeout=60,
                what="what was queued, delivered while the disk is full",
            )
            wait_for(lambda: proc.status()["outbox_depth"] == 0, timeout=30, what="empty outbox")
            assert readiness(proc)[0] == 503, "space came back by itself"
            disk.free()
            wait_for(lambda: readiness(proc)[0] == 200, timeout=20, what="ready again")
            assert post(proc, numbered_events(40, 5)).status_code == 202
        finally:
            code = terminate(proc)
        assert code == 0, proc.log[-5000:]
        assert integrity(state / "outbox.db") == "ok"
