"""The HTTP front when the process runs out of descriptors.

The limit is lowered in a child process, after the server is built, as if
the rest of the daemon had taken what the connection cap left it: accept()
then fails with EMFILE while connections wait in the backlog, which keeps
the listener readable. The server must neither spin on it nor stop
answering, and must say what is happening once, not once per failure.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.paths import ROOT
from tests.support.processes import Proc, collect, cpu_seconds
from tests.support.waiting import wait_for

SERVER = """
import logging, os, resource, sys, threading
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
from syncd.service.http import HTTPServer, Response
def slow(_):
    threading.Event().wait(1)
    return Response.text(200, "slow\\n")
routes = {("GET", "/healthz"): lambda _: Response.text(200, "ok\\n"), ("GET", "/slow"): slow}
server = HTTPServer("127.0.0.1", 0, routes)
server.start()
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/dev/fd")) + 8, hard))
print("listening on", server.url, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def starved() -> Iterator[Proc]:
    popen = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = collect(popen)

    def listening() -> bool:
        match = re.search(r"listening on (\S+)", proc.log)
        proc.url = match.group(1) if match else ""
        return bool(proc.url) or popen.poll() is not None

    try:
        wait_for(listening, what="the server to listen")
        assert proc.url, proc.log
        yield proc
    finally:
        proc.stop()


def address(proc: Proc) -> tuple[str, int]:
    host, _, port = proc.url.removeprefix("http://").rpartition(":")
    return host, int(port)


def answered(proc: Proc) -> bool:
    answer = requests.get(proc.url + "/healthz", timeout=2)
    assert answer.status_code == 200, answer.text
    return True


def test_running_out_of_descriptors_costs_no_cpu_and_probes_are_answered(starved: Proc) -> None:
    with contextlib.ExitStack() as idle:
        for _ in range(40):
            idle.enter_context(socket.create_connection(address(starved), timeout=10))
        assert answered(starved)
        began, cpu = time.monotonic(), cpu_seconds(starved.popen.pid)
        wait_for(
            lambda: answered(starved) and time.monotonic() - began > 2,
            timeout=20,
            what="two seconds of answers with no descriptor to spare",
        )
        share = (cpu_seconds(starved.popen.pid) - cpu) / (time.monotonic() - began)
    assert share < 0.5, f"the server used {share:.0%} of a core"
    warnings = [line for line in starved.lines if "cannot accept connections" in line]
    assert len(warnings) == 1, starved.log
    assert warnings[0].startswith("WARNING cannot accept connections: Too many open files (")


def test_with_every_connection_busy_accepting_pauses_until_one_is_done(starved: Proc) -> None:
    """No connection can give its descriptor up while its request is served, so the
    server stops polling the listener for a moment instead of failing in a loop."""
    request = b"GET /slow HTTP/1.1\r\nHost: " + starved.url[7:].encode() + b"\r\n\r\n"
    with contextlib.ExitStack() as busy:
        for _ in range(20):
            sock = busy.enter_context(socket.create_connection(address(starved), timeout=10))
            sock.sendall(request)
        began, cpu = time.monotonic(), cpu_seconds(starved.popen.pid)

        def recovered() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(starved.url + "/healthz", timeout=0.5).status_code == 200
            return False

        wait_for(recovered, timeout=30, what="the slow requests to finish")
        share = (cpu_seconds(starved.popen.pid) - cpu) / (time.monotonic() - began)
    assert share < 0.5, f"the server used {share:.0%} of a core"
    warnings = [line for line in starved.lines if "cannot accept connections" in line]
    assert len(warnings) == 1, starved.log
