"""A HipChat server's sends in flight follow what it takes: up while its answers
keep their latency, halved on a sign of overload, never past the most allowed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pytest

from syncd.delivery.dispatch import DEFAULT_MAX_IN_FLIGHT, DispatchConfig
from syncd.delivery.servers import (
    FLOOR_PERIOD,
    INITIAL_IN_FLIGHT,
    SendLimit,
    ServerAddresses,
    Servers,
    server_of,
)
from syncd.hipchat.client import MAX_CONNECTIONS_PER_HOST
from syncd.hipchat.wire import DeliveryResult

UP = server_of("https://hipchat.example.com")
OK = DeliveryResult("delivered", 204, "ok")
LATENCY = 0.15
FAILURES = [
    DeliveryResult("retry", None, "Timeout: read timed out", retry_after=1),
    DeliveryResult("retry", None, "ConnectionError: ECONNRESET", retry_after=1),
    DeliveryResult("retry", 500, "HTTP 500", retry_after=1),
    DeliveryResult("retry", 503, "HTTP 503", retry_after=1),
    DeliveryResult("retry", 429, "HTTP 429", retry_after=1, rate_limited=True),
]


def resolve(host: str, port: int) -> Sequence[str]:
    return ["192.0.2.10"]


def servers(most: int, initial: int = INITIAL_IN_FLIGHT) -> Servers:
    return Servers(most, ServerAddresses(resolve), initial=initial)


def round_trip(shares: Servers, at: float, latency: float = LATENCY, sends: int = -1) -> int:
    """Send as many as the limit allows (or ``sends``), all answered ``latency``
    later; returns how many went."""
    went = 0
    while went != sends and shares.take(UP, at):
        went += 1
    if went != sends and sends >= 0:
        raise AssertionError(f"only {went} of {sends} could go")
    for _ in range(went):
        shares.outcome(UP, OK, at + latency, sent_at=at, answered_at=at + latency)
        shares.give_back(UP)
    return went


def test_a_backlog_doubles_the_limit_every_round_trip_up_to_the_most() -> None:
    shares = servers(most=300, initial=10)
    went = [round_trip(shares, 100.0 + n * LATENCY) for n in range(7)]
    assert went == [10, 20, 40, 80, 160, 300, 300]


def test_a_few_rooms_do_not_raise_the_limit() -> None:
    """The limit follows the work: 5 sends at a time never fill half of 32."""
    shares = servers(most=300)
    for n in range(100):
        round_trip(shares, 100.0 + n * LATENCY, sends=5)
    assert shares.limit(UP) == INITIAL_IN_FLIGHT


@pytest.mark.parametrize("failure", FAILURES, ids=lambda r: r.reason.split(":")[0])
def test_a_sign_of_overload_halves_the_limit_once_per_round_trip(failure: DeliveryResult) -> None:
    shares = servers(most=300, initial=64)
    at = 100.0
    for _ in range(64):
        assert shares.take(UP, at)
    for _ in range(64):  # every send of that round trip fails: one cut, not 64
        shares.outcome(UP, failure, at + 1, sent_at=at, answered_at=at + LATENCY)
        shares.give_back(UP)
    assert shares.limit(UP) == 32
    at += 2  # a send begun after the cut, failing too, cuts again
    assert shares.take(UP, at)
    shares.outcome(UP, failure, at + 1, sent_at=at, answered_at=at + LATENCY)
    shares.give_back(UP)
    assert shares.limit(UP) == 16


def test_after_a_cut_the_limit_grows_by_one_a_round_trip() -> None:
    shares = servers(most=300, initial=64)
    at = 100.0
    assert shares.take(UP, at)
    shares.outcome(UP, FAILURES[2], at + 1, sent_at=at, answered_at=at + LATENCY)
    shares.give_back(UP)
    went = [round_trip(shares, at + 1 + n * LATENCY) for n in range(11)]
    # About one more each round trip (a little less: 1/limit per answer).
    assert (went[0], went[-1]) == (32, 41)
    assert all(b - a in (0, 1) for a, b in pairwise(went))


def test_answers_slower_than_twice_the_floor_stop_the_growth() -> None:
    shares = servers(most=300, initial=10)
    round_trip(shares, 100.0)  # the floor: 150 ms
    assert shares.limit(UP) == 20
    round_trip(shares, 101.0, latency=0.5)  # queued somewhere: no more in flight
    assert shares.limit(UP) == 20
    round_trip(shares, 102.0, latency=0.25)  # within twice the floor again
    assert shares.limit(UP) == 40


def test_the_floor_follows_a_server_that_became_slower_for_good() -> None:
    shares = servers(most=300, initial=10)
    round_trip(shares, 100.0, latency=0.05)
    slower = [round_trip(shares, 101.0 + n * FLOOR_PERIOD, latency=0.5) for n in range(4)]
    # Held while 50 ms is the floor of this period or the one before, then up again.
    assert slower == [20, 20, 20, 40]


def test_the_limit_never_falls_below_one() -> None:
    shares = servers(most=300, initial=2)
    for n in range(5):
        at = 100.0 + n
        assert shares.take(UP, at)
        shares.outcome(UP, FAILURES[0], at + 1, sent_at=at, answered_at=at + 0.5)
        shares.give_back(UP)
    assert shares.limit(UP) == 1
    assert shares.take(UP, 200.0)


def test_a_refusal_of_one_request_says_nothing_of_load() -> None:
    shares = servers(most=300, initial=8)
    for _ in range(8):
        assert shares.take(UP, 100.0)
    for _ in range(8):
        denied = DeliveryResult("permanent", 404, "HTTP 404: Room not found")
        shares.outcome(UP, denied, 100.2, sent_at=100.0, answered_at=100.2)
        shares.give_back(UP)
    assert shares.limit(UP) == 8


def test_a_full_server_whose_limit_grew_wakes_a_worker_for_each_new_slot() -> None:
    shares = servers(most=300, initial=2)
    assert shares.take(UP, 100.0) and shares.take(UP, 100.0)
    assert not shares.take(UP, 100.0)  # a worker turned away
    shares.outcome(UP, OK, 100.15, sent_at=100.0, answered_at=100.15)
    # 3 allowed now, 1 still in flight: the caller's next claim and one more worker.
    assert shares.give_back(UP) == 2
    shares.drained()  # a claim found nothing waiting
    assert shares.give_back(UP) == 0


def test_a_backlog_gets_each_slot_its_limit_grows_by_though_the_server_never_fills_again() -> None:
    shares = servers(most=300, initial=2)
    assert shares.take(UP, 100.0) and shares.take(UP, 100.0)  # full: a backlog waits
    shares.outcome(UP, OK, 100.15, sent_at=100.0, answered_at=100.15)
    assert shares.give_back(UP) == 2  # 3 allowed, 1 in flight
    # Only one of the two slots was taken before the next answer came (another worker's
    # send freed one meanwhile): the server is not full when its limit grows again.
    assert shares.take(UP, 100.2)
    shares.outcome(UP, OK, 100.3, sent_at=100.0, answered_at=100.3)
    # 4 allowed, 1 in flight: the backlog is still there, and gets the slots.
    assert shares.give_back(UP) == 3


def test_the_most_one_server_may_hold_is_the_least_of_the_bounds() -> None:
    assert DispatchConfig(workers=8).per_server == 4
    assert DispatchConfig(workers=8, max_in_flight=2).per_server == 2
    assert DispatchConfig(workers=1).per_server == 1
    # Never more than the client keeps connections to one server.
    assert DispatchConfig(workers=4096, max_in_flight=2048).per_server == MAX_CONNECTIONS_PER_HOST
    # By default one server may hold --max-in-flight, and more than half the workers
    # stay free for the others.
    default = DispatchConfig()
    assert default.max_in_flight == DEFAULT_MAX_IN_FLIGHT
    assert default.per_server == default.max_in_flight <= default.workers // 2


def test_a_limit_is_a_value() -> None:
    limit = SendLimit(10.0)
    grown = limit.answered(LATENCY, in_use=True, now=100.0, most=300)
    assert (limit.value, grown.value) == (10.0, 11.0)
    cut = grown.overloaded(sent_at=100.0, now=100.2)
    assert (cut.value, cut.threshold, cut.cut_at) == (5.5, 5.5, 100.2)
    assert cut.overloaded(sent_at=100.1, now=100.3) == SendLimit(
        5.5, 5.5, 100.2, cut.floor, cut.low, cut.period_ends, 100.3
    )


def test_new_items_wake_no_more_workers_than_could_start_a_send() -> None:
    shares = servers(most=300, initial=4)
    assert shares.room(100.0) == 1  # nothing sent yet: one worker looks, and wakes the next
    assert shares.take(UP, 100.0)
    assert shares.room(100.0) == 3
    for _ in range(3):
        assert shares.take(UP, 100.0)
    assert shares.room(100.0) == 1  # full: the worker that looks finds it so, once
    down = DeliveryResult("retry", 503, "HTTP 503", retry_after=30)
    shares.outcome(UP, down, 130.0, sent_at=100.0, answered_at=100.1)
    for _ in range(4):
        shares.give_back(UP)
    assert shares.room(101.0) == 1  # resting: no room until 130
    assert shares.room(130.0) == 2  # the cut limit, 4 halved
