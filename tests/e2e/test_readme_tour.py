"""The README's by-hand tour, pasted as one block into a shell, as a newcomer would.

It runs as written, in a network namespace of its own so that its fixed ports
(8080, 8514) are free whatever else runs on the machine; only its state dir
is moved into the test's temp dir. Without the namespace tool the test is
skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.processes import collect
from tests.support.waiting import wait_for


def tour_block() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("The same by hand")
    match = re.search(r"```sh\n(.*?)```", readme[start:], re.S)
    assert match, "the tour's code block"
    return match.group(1)


def _namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="unshare --net is not available here")
def test_the_tour_pasted_as_one_block_delivers(tmp_path: Path) -> None:
    block = tour_block().replace("/tmp/syncd-tour", str(tmp_path / "state"))
    script = f"ip link set lo up\nset -e\n{block}\nwait\n"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("HIPCHAT_TOUR_TOKEN", None)
    popen = subprocess.Popen(
        ["unshare", "--net", "bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    shell = collect(popen)
    try:
        wait_for(
            lambda: "POST room 1234567 -> 204: " in shell.log or popen.poll() is not None,
            timeout=30,
            what="the server to print the notification",
        )
        assert "POST room 1234567 -> 204: " in shell.log, shell.log
        assert "accepted " in shell.log
        printed = next(line for line in shell.lines if "-> 204" in line)
        assert "KeyError" in printed
        assert "tour-token" not in printed
        assert (tmp_path / "tour" / "tour.yaml").exists()
    finally:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(timeout=30)
