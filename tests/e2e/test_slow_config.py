"""``syncd run`` as a real process on a config that takes seconds to read and check.

The cost is real and sized by the test: 20,000 valid integrations in 50 files
(a few seconds of CPU), against a ``--reconcile-timeout`` of 1 s where the
test wants the budget to cut it. What is checked is what an operator sees:
the probes, the set served, a reload's answer, a stop's exit.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import requests

from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.lastgood import holds
from tests.support.processes import Proc, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

ENV = {"HIPCHAT_TOKEN": "slow-test-token"}
INTEGRATION = """\
  - uid: {uid}
    project: bulk
    name: {uid}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: 1234567
          token: {{env: HIPCHAT_TOKEN}}
"""
EVENT = {"project": "checkout", "fingerprint": "f1", "timestamp": "2026-11-26T12:00:00Z"}


def slow_set(directory: Path, files: int = 50, per_file: int = 400) -> Path:
    """``files * per_file`` integrations, put in place by one rename, so the watcher
    sees them arrive at once."""
    stage = directory.with_name(f".{directory.name}-stage")
    stage.mkdir()
    for n in range(files):
        body = "".join(INTEGRATION.format(uid=f"bulk-{n}-{i}") for i in range(per_file))
        (stage / f"bulk-{n:02}.yaml").write_text("version: 1\nintegrations:\n" + body)
    os.rename(stage, directory)
    return directory


def probes(proc: Proc) -> str:
    """The daemon's URL, from the line it logs once the probes answer."""
    found: list[str] = []

    def said() -> bool:
        found[:] = re.findall(r"answering /healthz on (http://\S+);", proc.log)
        return bool(found) or proc.popen.poll() is not None

    wait_for(said, timeout=20, what="the probes to answer")
    assert found, proc.log
    return found[0]


def line_of(proc: Proc, text: str) -> int:
    return next(i for i, line in enumerate(proc.lines) if text in line)


def count(proc: Proc, text: str) -> int:
    return sum(text in line for line in list(proc.lines))


def said(proc: Proc, text: str, before: int = 0, timeout: float = 60) -> None:
    """Wait for one more log line holding ``text`` than ``before``: unlike polling
    the API, waiting on the log takes no time from the daemon."""
    wait_for(
        lambda: count(proc, text) > before or proc.popen.poll() is not None, timeout, repr(text)
    )
    assert count(proc, text) > before, proc.log


def test_a_restart_with_a_slow_config_serves_the_last_known_good_set_at_once(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    state = tmp_path / "state"
    first = wait_listening(spawn(config, state, env=ENV))
    try:
        wait_for(lambda: holds(state / "last-known-good", "a.yaml"), what="the copy")
    finally:
        assert terminate(first) == 0, first.log
    slow_set(config / "bulk")

    proc = spawn(config, state, "--reconcile-timeout", "1", env=ENV)
    try:
        url = probes(proc)
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        wait_for(lambda: requests.get(url + "/readyz", timeout=5).status_code == 200)
        registry = requests.get(url + "/v1/registry", timeout=5).json()
        assert [i["uid"] for i in registry["integrations"]] == ["a"]
        queued = requests.post(url + "/v1/events", json=[EVENT], timeout=10)
        assert queued.status_code == 202 and queued.json()["notifications"] == 1

        said(proc, "rejected")
        status = requests.get(url + "/status", timeout=5).json()
        assert status["last_reconcile"]["ok"] is False
        assert "took more than 1 s to load (--reconcile-timeout)" in str(status["last_reconcile"])
        assert list(status["integrations"]) == ["a"]
        assert requests.get(url + "/readyz", timeout=5).status_code == 200
        # Served from the start, not once the config dir's answer was in.
        assert line_of(proc, "serving the last-known-good set") < line_of(proc, "rejected")
        assert line_of(proc, "answering /healthz") < line_of(proc, "serving the last-known")
    finally:
        proc.stop()


def test_sigterm_during_a_long_first_reconcile_exits_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config"
    slow_set(config)
    proc = spawn(config, tmp_path / "state", env=ENV)
    try:
        url = probes(proc)
        first = requests.get(url + "/readyz", timeout=5)
        assert (first.status_code, first.text) == (503, "not ready: first reconcile running\n")
        sent = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(timeout=20) == 0, proc.log
        # The reconcile needs seconds more; the stop waits on it a second at most,
        # well within the drain time (10 s).
        assert time.monotonic() - sent < 8
        assert "applied" not in proc.log
        assert "SIGTERM: stopping" in proc.log
    finally:
        proc.stop()


def test_a_reload_during_a_long_reconcile_answers_504_and_a_fix_is_applied_after_the_cut(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    proc = wait_listening(spawn(config, tmp_path / "state", "--reconcile-timeout", "1", env=ENV))
    try:
        applied = count(proc, "applied")
        slow_set(config / "bulk")
        late = requests.post(proc.url + "/-/reload", json={}, timeout=30)
        error = late.json()["error"]
        if late.status_code == 500:
            # The cut can land within the reload's wait, when that reconcile started
            # as the request came: its answer is then the rejection itself.
            assert "(--reconcile-timeout)" in error["diagnostics"][0], late.text
        else:
            assert late.status_code == 504, late.text
            assert error["message"].startswith(
                "reload did not finish within 1 s: a reconcile has been "
            )
            assert "--reconcile-timeout 1 s" in error["message"]

        # The slow files go, a fix comes: it is applied once the budget cut the slow set.
        os.rename(config / "bulk", tmp_path / "bulk-removed")
        write_files(config, ("b.yaml", minimal("b")))
        said(proc, "applied", before=applied)
        status = proc.status()
        assert sorted(status["integrations"]) == ["a", "b"]
        assert status["last_failure"] is not None  # the slow set, cut or gone while read
    finally:
        proc.stop()


def test_the_reconcile_timeout_must_be_more_than_0(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    state = str(tmp_path / "state")
    for value in ("0", "-1", "nan"):
        refused = run_cli(
            "run",
            "--config",
            str(config),
            "--state-dir",
            state,
            "--reconcile-timeout",
            value,
            cwd=tmp_path,
            env=ENV,
        )
        assert (refused.returncode, refused.stderr) == (
            2,
            f"syncd run: error: --reconcile-timeout wants more than 0 seconds, got {value}\n",
        )
