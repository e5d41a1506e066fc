"""kill -9 of ``syncd run`` at random moments while it delivers, again and again.

A slow HipChat (every answer delayed) keeps deliveries in flight; each round
restarts the daemon on the same state dir, accepts a few more events, and kills
it once a random number of further messages arrived (sometimes right after it
started listening, before it delivered anything). In the end every accepted
notification reached its room, the first deliveries of each room are in order,
the duplicates are at most one per worker per kill, and SQLite's integrity check
passes after every kill.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.testing import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.delivery import duplicates, first_deliveries, integrity, numbers, outbox_rows
from tests.support.events import numbered_events
from tests.support.processes import Proc, kill9, start, terminate
from tests.support.waiting import wait_for

TOKENS = room_tokens("3001", "3002", "3003", "3004")
WORKERS = 4
ROUNDS = 5
FIRST_BATCH = 150
BATCH_PER_ROUND = 20
SEED = 20261126


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


def test_kill_9_loop_during_delivery_loses_nothing(tmp_path: Path, hipchat: HipChatServer) -> None:
    rng = random.Random(SEED)
    config = tmp_path / "config"
    config.mkdir()
    (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
    state = tmp_path / "state"
    db = state / "outbox.db"
    env = token_env(TOKENS)
    hipchat.inject(Fault.slow(0.02), times=1_000_000)

    accepted: set[int] = set()
    next_n = 0
    kills = 0
    for round_no in range(ROUNDS):
        proc = start(config, state, "--workers", str(WORKERS), env=env)
        try:
            count = FIRST_BATCH if round_no == 0 else BATCH_PER_ROUND
            answer = proc.post_events(numbered_events(next_n, count))
            assert answer.status_code == 202, answer.text
            assert answer.json()["notifications"] == count * len(TOKENS)
            accepted.update(range(next_n, next_n + count))
            next_n += count
            # Kill right away now and then, else once some more messages arrived.
            more = 0 if rng.random() < 0.2 else rng.randint(1, 60)
            target = len(hipchat.messages) + more

            def moved_on(proc: Proc = proc, target: int = target) -> bool:
                return len(hipchat.messages) >= target or proc.popen.poll() is not None

            wait_for(
                moved_on,
                timeout=30,
                what=f"round {round_no}: {more} more deliveries",
            )
            assert proc.popen.poll() is None, proc.log
            delivered = {(r, n) for r in TOKENS for n in numbers(hipchat, r)}
            assert len(delivered) < len(accepted) * len(TOKENS), "killed too late"
        finally:
            kill9(proc)
        kills += 1
        assert integrity(db) == "ok", f"after kill {kills}"

    final = start(config, state, "--workers", str(WORKERS), env=env)
    try:
        expected = {(r, n) for r in TOKENS for n in accepted}
        wait_for(
            lambda: {(r, n) for r in TOKENS for n in numbers(hipchat, r)} >= expected,
            timeout=60,
            what="every accepted notification",
        )
        wait_for(lambda: final.status()["outbox_depth"] == 0, timeout=30, what="an empty outbox")
    finally:
        assert terminate(final) == 0, final.log

    for room in TOKENS:
        got = numbers(hipchat, room)
        assert set(got) == accepted, room
        firsts = first_deliveries(got)
        assert firsts == sorted(firsts), f"room {room} out of order: {firsts}"
    dups = duplicates(hipchat, TOKENS)
    assert dups <= WORKERS * kills, f"{dups} duplicates after {kills} kills of {WORKERS} workers"
    states = {row[3] for row in outbox_rows(db)}
    assert states == {"delivered"}, states
    assert len(outbox_rows(db)) == len(accepted) * len(TOKENS)
    assert integrity(db) == "ok"
    assert not any(t in final.log for t in TOKENS.values())
