"""``syncd run`` paces its cyclic garbage collector for a daemon as it starts,
before the set is loaded, and says so (``syncd.service.collector``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syncd.service.collector import YOUNG
from syncd.testing.hipchat_server import HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.events import event
from tests.support.example import example
from tests.support.processes import FAST_RETRY, spawn, wait_listening
from tests.support.waiting import wait_for


def paced_line() -> str:
    """The daemon's log line, from the threshold a new interpreter starts with
    (this one's may have been set)."""
    out = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"garbage collector: a young collection every {YOUNG} new objects, not {int(out.stdout)}"


def test_the_daemon_paces_its_collector_and_delivers(tmp_path: Path) -> None:
    tokens = room_tokens("101")
    with HipChatServer(tokens, limits=None) as server:
        config = tmp_path / "config"
        config.mkdir()
        (config / "shop.yaml").write_text(trace_config(server.url, tokens))
        proc = spawn(config, tmp_path / "state", *FAST_RETRY, env=token_env(tokens))
        try:
            wait_listening(proc)
            paced = paced_line()
            assert paced in proc.log
            assert proc.log.index(paced) < proc.log.index("listening on")
            answer = proc.post_events([event()])
            assert answer.status_code == 202, answer.text
            wait_for(lambda: len(server.messages) == 1, timeout=10, what="the notification")
        finally:
            proc.stop()


def test_the_example_is_served_with_the_collector_paced(tmp_path: Path) -> None:
    """examples/integrations.yaml, every field set: the same line, and every
    integration of the example served."""
    ex = example(tmp_path)
    proc = spawn(ex.config_dir, tmp_path / "state", *ex.flags, env=ex.env)
    try:
        wait_listening(proc)
        assert paced_line() in proc.log
        assert sorted(proc.status()["integrations"]) == sorted(ex.uids), proc.log
    finally:
        proc.stop()
