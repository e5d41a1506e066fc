"""HipChat misbehaving in mixes: resets, 500/503, 429 with Retry-After 0 or 1 or a
rate-limit reset time, flood-control 403s, slow answers, rate-limit headers on
successes. Whatever the mix, nothing is lost or dead-lettered: every accepted
notification reaches its room exactly once (nothing crashed, so nothing is sent
twice), each room gets its notifications in order, and every room ends healthy.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.testing import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.delivery import numbers, outbox_rows
from tests.support.events import numbered_events
from tests.support.processes import start, terminate
from tests.support.waiting import wait_for

TOKENS = room_tokens("6001", "6002", "6003")
EVENTS = 60
SEED = 77


def reset() -> Fault:
    return Fault.reset()


def error_500() -> Fault:
    return Fault.server_error(500)


def error_503() -> Fault:
    return Fault.server_error(503)


def limited_now() -> Fault:
    return Fault.rate_limited(retry_after="0")


def limited_1s() -> Fault:
    return Fault.rate_limited(retry_after="1")


def limited_until_reset() -> Fault:
    reset_at = str(int(time.time()) + 1)
    return Fault.rate_limited(headers={"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": reset_at})


def flood() -> Fault:
    return Fault.flood_control()


def flood_with_headers() -> Fault:
    reset_at = str(int(time.time()) + 1)
    return Fault.flood_control(
        headers={"X-FloodControl-Remaining": "0", "X-FloodControl-Reset": reset_at}
    )


def slow() -> Fault:
    return Fault.slow(0.1)


def budget_spent() -> Fault:
    """A success that says the token's budget is spent for the next second."""
    return Fault.with_headers({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1"})


def fine() -> Fault:
    return Fault.slow(0)


CHEAP: list[Callable[[], Fault]] = [reset, error_500, error_503, limited_now, flood, slow, fine]
COSTLY: list[Callable[[], Fault]] = [
    limited_1s,
    limited_until_reset,
    flood_with_headers,
    budget_spent,
]


def mixed(server: HipChatServer, rng: random.Random) -> int:
    """A random interleaving of every kind, for all rooms and for single rooms."""
    faults = [rng.choice(CHEAP)() for _ in range(90)]
    for make in COSTLY:
        faults.insert(rng.randrange(len(faults)), make())
    for fault in faults:
        server.inject(fault, room=rng.choice([None, None, *TOKENS]))
    return len(faults)


def storms(server: HipChatServer, rng: random.Random) -> int:
    """Bursts of one kind after another, for every room."""
    plan = [
        (error_503, 20),
        (reset, 15),
        (flood, 10),
        (limited_now, 8),
        (error_500, 15),
        (reset, 10),
    ]
    for make, times in plan:
        server.inject(make(), times=times)
    return sum(times for _, times in plan)


def one_room_at_a_time(server: HipChatServer, rng: random.Random) -> int:
    """Each room has its own trouble; the others must not wait for it."""
    rooms = sorted(TOKENS)
    server.inject(limited_1s(), room=rooms[0], times=2)
    server.inject(reset(), room=rooms[0], times=5)
    server.inject(error_503(), room=rooms[1], times=25)
    server.inject(flood(), room=rooms[2], times=6)
    server.inject(slow(), room=rooms[2], times=10)
    return 48


@pytest.mark.parametrize("scenario", [mixed, storms, one_room_at_a_time], ids=lambda f: f.__name__)
def test_fault_mix_loses_nothing(
    tmp_path: Path, scenario: Callable[[HipChatServer, random.Random], int]
) -> None:
    rng = random.Random(SEED)
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    with HipChatServer(TOKENS, limits=None) as hipchat:
        (config / "shop.yaml").write_text(trace_config(hipchat.url, TOKENS))
        injected = scenario(hipchat, rng)
        proc = start(config, state, "--workers", "4", env=token_env(TOKENS))
        try:
            for first in range(0, EVENTS, 20):
                answer = proc.post_events(numbered_events(first, 20))
                assert answer.status_code == 202, answer.text
            expected = {(r, n) for r in TOKENS for n in range(EVENTS)}
            wait_for(
                lambda: {(r, n) for r in TOKENS for n in numbers(hipchat, r)} >= expected,
                timeout=60,
                what="every notification despite the faults",
            )
            wait_for(lambda: proc.status()["outbox_depth"] == 0, timeout=20, what="empty outbox")
            status = proc.status()
        finally:
            assert terminate(proc) == 0, proc.log[-3000:]
        exercised = sum(1 for a in hipchat.attempts if a.fault is not None)
        assert exercised == injected, f"{exercised} of {injected} faults were exercised"
        for room in TOKENS:
            got = numbers(hipchat, room)
            assert got == list(range(EVENTS)), (room, [n for n, c in Counter(got).items() if c > 1])
        rooms = status["integrations"]["shop-trace"]["rooms"]
        assert all(health["healthy"] for health in rooms.values()), rooms
        rows = outbox_rows(state / "outbox.db")
        assert {row[3] for row in rows} == {"delivered"}, [r for r in rows if r[3] != "delivered"]
    assert not any(token in proc.log for token in TOKENS.values())
