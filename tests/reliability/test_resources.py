"""Resources and throughput over a long life.

A daemon under a file-descriptor limit it cannot raise (``LimitNOFILE=256``,
soft and hard: to need fewer requests) keeps taking events and answering
``/status`` however many HTTP requests it served; a client that keeps its
connection alive is not slowed down to the pace of TCP's delayed ACKs.

Both once failed: each request thread kept its own SQLite connection (two
descriptors leaked per request), and answers went out in two writes without
TCP_NODELAY (about 40 ms per answer on a kept-alive connection).
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from pathlib import Path

import requests

from tests.support.configs import minimal
from tests.support.processes import spawn, terminate, wait_listening

FD_LIMIT = 256
REQUESTS = 300


def limit_fds() -> None:
    # Soft and hard, as LimitNOFILE= sets them: the daemon raises a soft limit to
    # the hard one at start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_many_requests_do_not_exhaust_file_descriptors(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("fd-check"))
    proc = wait_listening(
        spawn(config, tmp_path / "state", env={"HIPCHAT_TOKEN": "x"}, preexec_fn=limit_fds)
    )
    event = {"project": "elsewhere", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    statuses: Counter[str] = Counter()
    try:
        before = len(os.listdir(f"/proc/{proc.popen.pid}/fd"))
        for n in range(REQUESTS):
            # A connection per request, as ``syncd emit`` and many senders do.
            if n % 3:
                answer = requests.post(proc.url + "/v1/events", json=event, timeout=10)
            else:
                answer = requests.get(proc.url + "/status", timeout=10)
            statuses[f"{answer.request.method} {answer.status_code}"] += 1
        after = len(os.listdir(f"/proc/{proc.popen.pid}/fd"))
        assert proc.popen.poll() is None, proc.log[-3000:]
    finally:
        terminate(proc)
    assert set(statuses) == {"POST 202", "GET 200"}, statuses
    assert after - before < 20, f"{after - before} more open files after {REQUESTS} requests"


def test_a_kept_alive_connection_is_not_held_up_by_delayed_acks(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("keep-alive"))
    proc = wait_listening(spawn(config, tmp_path / "state", env={"HIPCHAT_TOKEN": "x"}))
    event = {"project": "elsewhere", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    try:
        with requests.Session() as session:
            assert session.get(proc.url + "/healthz", timeout=10).status_code == 200
            began = time.monotonic()
            for n in range(40):
                if n % 2:
                    answer = session.post(proc.url + "/v1/events", json=event, timeout=10)
                    assert answer.status_code == 202
                else:
                    assert session.get(proc.url + "/healthz", timeout=10).status_code == 200
            took = time.monotonic() - began
    finally:
        terminate(proc)
    # Fresh connections take about 2 ms a request here; allow 25 ms.
    assert took < 1.0, f"40 requests on one connection took {took:.2f} s"
