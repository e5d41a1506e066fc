"""Dead letters an operator can see and send again: /status, metrics, ``syncd outbox``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.testing.hipchat_server import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.events import numbered_events
from tests.support.processes import Proc, run_syncd, start, terminate
from tests.support.waiting import wait_for

TOKENS = room_tokens("3101", "3102")


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def daemon(tmp_path: Path, hipchat: HipChatServer) -> Iterator[Proc]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
    proc = start(config, tmp_path / "state", env=token_env(TOKENS))
    yield proc
    assert terminate(proc) == 0
    assert not any(token in proc.log for token in TOKENS.values())


def syncd(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = run_syncd(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def test_a_dead_letter_is_shown_listed_and_sent_again(
    daemon: Proc, hipchat: HipChatServer, tmp_path: Path
) -> None:
    hipchat.inject(Fault.status(401, "Invalid OAuth session"), room="3101")
    assert daemon.post_events(numbered_events(0, 1)).status_code == 202
    wait_for(lambda: len(hipchat.messages_for("3102")) == 1, what="the healthy room's message")
    wait_for(
        lambda: daemon.status()["integrations"]["shop-trace"]["dead_letters"] == 1,
        what="the dead letter in /status",
    )
    status = daemon.status()["integrations"]["shop-trace"]
    assert status["rooms"]["3101"]["dead_letters"] == 1
    assert status["rooms"]["3102"]["dead_letters"] == 0
    metrics = requests.get(f"{daemon.url}/metrics", timeout=10).text
    assert '\nsyncd_outbox_dead_letters{integration="shop-trace"} 1.0\n' in metrics
    code, shown = syncd(tmp_path, "status", "--url", daemon.url)
    assert code == 1 and "UNHEALTHY" in shown

    code, listed = syncd(tmp_path, "outbox", "list", "--url", daemon.url)
    assert code == 0
    header, row = listed.splitlines()[:2]
    assert header.split() == ["ID", "INTEGRATION", "ROOM", "ATTEMPTS", "SINCE", "REASON"]
    item_id, uid, room, attempts = row.split()[:4]
    assert (uid, room, attempts) == ("shop-trace", "3101", "1")
    assert "HTTP 401 Unauthorized: Invalid OAuth session" in row
    assert "dead-lettered; `syncd outbox retry" in daemon.log

    code, said = syncd(tmp_path, "outbox", "retry", item_id, "--url", daemon.url)
    assert (code, said) == (0, f"queued again: 1 ({item_id})\n")
    wait_for(lambda: len(hipchat.messages_for("3101")) == 1, what="the dead letter delivered")
    wait_for(lambda: daemon.status()["integrations"]["shop-trace"]["dead_letters"] == 0)
    code, said = syncd(tmp_path, "outbox", "retry", "--all-dead", "--url", daemon.url)
    assert (code, said) == (1, "no dead letter matched\n")
    code, shown = syncd(tmp_path, "status", "--url", daemon.url)
    assert code == 0, shown


def test_outbox_requests_are_checked(daemon: Proc, tmp_path: Path) -> None:
    bad = requests.post(f"{daemon.url}/v1/outbox/retry", json={"ids": "all"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "ids wants a non-empty list of outbox item ids"
    listing = requests.get(f"{daemon.url}/v1/outbox?state=delivered", timeout=10)
    assert listing.status_code == 400
    code, said = syncd(tmp_path, "outbox", "retry", "--url", daemon.url)
    assert code == 2
    assert "give item ids, or --all-dead" in said
    code, said = syncd(tmp_path, "outbox", "retry", "7", "--uid", "x", "--url", daemon.url)
    assert code == 2 and "--uid and --room go with --all-dead" in said
