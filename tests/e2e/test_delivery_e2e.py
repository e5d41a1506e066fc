"""End to end through a real ``syncd run`` subprocess and the HipChat test server."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.testing.hipchat_server import Fault, HipChatServer
from tests.support.configs import trace_config
from tests.support.delivery import numbers
from tests.support.events import numbered_events
from tests.support.processes import Proc, run_syncd, spawn, wait_listening
from tests.support.waiting import wait_for

TOKENS = {"2001": "e2e-token-room-2001", "2002": "e2e-token-room-2002"}
ENV = {"HIPCHAT_TOKEN_2001": TOKENS["2001"], "HIPCHAT_TOKEN_2002": TOKENS["2002"]}
FAST_RETRY = ("--retry-base-delay", "0.05", "--retry-max-delay", "0.2")


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def setup(tmp_path: Path, hipchat: HipChatServer) -> Iterator[tuple[Path, Path]]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "shop.yaml").write_text(trace_config(hipchat.url, ["2001", "2002"]))
    yield config, tmp_path / "state"


def start(config: Path, state: Path, *extra: str) -> Proc:
    return wait_listening(spawn(config, state, *FAST_RETRY, *extra, env=ENV))


@pytest.mark.slow
def test_1000_events_give_exactly_the_expected_messages(
    setup: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    proc = start(*setup)
    try:
        for batch in range(10):
            answer = proc.post_events(numbered_events(batch * 100, 100))
            assert answer.status_code == 202, answer.text
            assert answer.json()["notifications"] == 200
        hipchat.wait_for_messages(2000, timeout=120)
        for room in TOKENS:
            assert numbers(hipchat, room) == list(range(1000))
        sample = hipchat.messages_for("2001")[42].body
        assert sample == {
            "message": "Error in shop: Error42 at 2026-11-26T12:00:00Z\n"
            "Classifiers: Error42\nAttributes:\nn: 42",
            "message_format": "text",
            "color": "yellow",
            "notify": False,
        }
        wait_for(lambda: proc.status()["outbox_depth"] == 0, timeout=30)
    finally:
        proc.stop()
    assert not any(t in proc.log for t in TOKENS.values())


@pytest.mark.slow
def test_kill_9_during_delivery_loses_nothing(
    setup: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    config, state = setup
    hipchat.inject(Fault.slow(0.02), times=10_000)
    proc = start(config, state, "--workers", "4")
    accepted = 0
    for batch in range(3):
        answer = proc.post_events(numbered_events(batch * 100, 100))
        assert answer.status_code == 202
        accepted += answer.json()["notifications"]
    wait_for(lambda: len(hipchat.messages) >= 100, timeout=60, what="delivery to be under way")
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(timeout=10)
    before_restart = len(hipchat.messages)
    assert before_restart < accepted, "killed too late to prove anything"

    hipchat.clear_faults()
    again = start(config, state)
    try:
        wait_for(
            lambda: (
                {(r, n) for r in TOKENS for n in numbers(hipchat, r)}
                == {(r, n) for r in TOKENS for n in range(300)}
            ),
            timeout=60,
            what="every accepted notification",
        )
        wait_for(lambda: again.status()["outbox_depth"] == 0, timeout=30)
    finally:
        again.stop()
    duplicates = sum(c - 1 for r in TOKENS for c in Counter(numbers(hipchat, r)).values() if c > 1)
    assert duplicates <= 4, f"{duplicates} duplicates; at most the 4 in flight may repeat"
    for room in TOKENS:
        assert sorted(set(numbers(hipchat, room))) == list(range(300))


def test_hipchat_down_then_back_delivers_everything_in_order(
    setup: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    hipchat.inject(Fault.server_error(503), times=15)
    hipchat.inject(Fault.reset(), times=10)
    proc = start(*setup)
    try:
        assert proc.post_events(numbered_events(0, 50)).status_code == 202
        hipchat.wait_for_messages(100, timeout=60)
        for room in TOKENS:
            assert numbers(hipchat, room) == list(range(50))
        failed = [a for a in hipchat.attempts if a.status != 204]
        assert len(failed) == 25
    finally:
        proc.stop()


@pytest.mark.slow
def test_429_storm_is_honoured(setup: tuple[Path, Path], hipchat: HipChatServer) -> None:
    hipchat.inject(Fault.rate_limited(retry_after="1"), times=3, room="2001")
    proc = start(*setup)
    try:
        assert proc.post_events(numbered_events(0, 5)).status_code == 202
        hipchat.wait_for_messages(5, room="2001", timeout=30)
        hipchat.wait_for_messages(5, room="2002", timeout=30)
        tries = [a for a in hipchat.attempts if a.room == "2001"]
        limited = [a for a in tries if a.status == 429]
        assert len(limited) == 3
        for before, after in itertools.pairwise(tries):
            if before.status == 429:
                assert after.time - before.time >= 0.95, "Retry-After: 1 was not honoured"
        assert numbers(hipchat, "2001") == list(range(5))
        # The other room was not held up by the rate-limited one.
        first_2002 = min(a.time for a in hipchat.attempts if a.room == "2002")
        assert first_2002 < limited[-1].time
    finally:
        proc.stop()


def test_bad_events_get_400_and_change_nothing(
    setup: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    config, state = setup
    proc = start(config, state)
    try:
        late = {"project": "shop", "fingerprint": "f", "timestamp": "yesterday"}
        bad = proc.post_events(
            [numbered_events(0, 1)[0], {"project": "shop", "fingerprint": 3}, late]
        )
        assert bad.status_code == 400
        problems = bad.json()["error"]["problems"]
        assert {"path": "$[1].fingerprint", "message": "3 is not of type 'string'"} in problems
        assert {"path": "$[1]", "message": "'timestamp' is a required property"} in problems
        assert {
            "path": "$[2].timestamp",
            "message": "not an RFC 3339 date-time with an offset, such as 2026-11-26T09:14:03Z",
        } in problems
        json_type = {"Content-Type": "application/json"}
        garbage = requests.post(
            proc.url + "/v1/events", data=b"{not json", headers=json_type, timeout=5
        )
        assert garbage.status_code == 400
        huge = requests.post(
            proc.url + "/v1/events", data=b"x" * (2 << 20), headers=json_type, timeout=5
        )
        assert huge.status_code == 413
        assert proc.status()["outbox_depth"] == 0
    finally:
        proc.stop()
    with sqlite3.connect(state / "outbox.db") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert hipchat.messages == []


def test_emit_command(setup: tuple[Path, Path], hipchat: HipChatServer, tmp_path: Path) -> None:
    proc = start(*setup)
    try:
        ok = run_syncd(
            "emit",
            "--url",
            proc.url,
            "--project",
            "shop",
            "--fingerprint",
            "x",
            "--classifier",
            "Boom",
            "--attribute",
            "n=7",
            cwd=tmp_path,
        )
        assert ok.returncode == 0, ok.stderr
        assert "2 notification(s) queued" in ok.stdout
        assert "\n  shop-trace: queued for 2 room(s)\n" in ok.stdout
        hipchat.wait_for_messages(2, timeout=30)
        nobody = run_syncd(
            "emit", "--url", proc.url, "--project", "nosuch", "--fingerprint", "x", cwd=tmp_path
        )
        assert nobody.returncode == 1
        assert nobody.stdout.endswith(
            ": 0 notification(s) queued\n  no integration for project nosuch\n"
        )
        refused = run_syncd(
            "emit", "--url", proc.url, "--project", "", "--fingerprint", "x", cwd=tmp_path
        )
        assert refused.returncode == 1
        assert "$.project" in refused.stderr
    finally:
        proc.stop()


def test_ingest_token_is_required_when_configured(
    setup: tuple[Path, Path], hipchat: HipChatServer, tmp_path: Path
) -> None:
    config, state = setup
    proc = wait_listening(
        spawn(config, state, *FAST_RETRY, env={**ENV, "SYNCD_INGEST_TOKEN": "ingest-secret"})
    )
    try:
        assert proc.post_events(numbered_events(0, 1)).status_code == 401
        emitted = run_syncd(
            "emit",
            "--url",
            proc.url,
            "--project",
            "shop",
            "--fingerprint",
            "x",
            cwd=tmp_path,
            env={"SYNCD_INGEST_TOKEN": "ingest-secret"},
        )
        assert emitted.returncode == 0, emitted.stderr
    finally:
        proc.stop()
    assert "ingest-secret" not in proc.log


def test_non_loopback_listen_needs_an_ingest_token(setup: tuple[Path, Path]) -> None:
    config, state = setup
    env = {k: v for k, v in os.environ.items() if k != "SYNCD_INGEST_TOKEN"}
    proc = spawn(config, state, "--listen", "0.0.0.0:0", env={**env, **ENV})
    assert proc.popen.wait(timeout=20) == 1
    wait_for(lambda: "without an ingest token" in proc.log, timeout=5)


def test_sigterm_drains_in_flight_sends_and_leaves_the_rest_queued(
    setup: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    config, state = setup
    hipchat.inject(Fault.slow(0.5), times=1000)
    proc = start(config, state, "--workers", "2")
    assert proc.post_events(numbered_events(0, 10)).status_code == 202
    wait_for(lambda: len(hipchat.attempts) >= 1 or len(hipchat.messages) >= 1, timeout=20)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=30) == 0
    with sqlite3.connect(state / "outbox.db") as db:
        states = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    assert states.get("inflight", 0) == 0, states
    assert states.get("delivered", 0) == len(hipchat.messages) >= 1
    assert states.get("pending", 0) == 20 - len(hipchat.messages) > 0
