"""Sends in flight to one HipChat server follow the work: a backlog raises them past
the first limit while the answers keep pace, failures cut them, and whatever the
limit learnt, a slow server still cannot hold every worker. Against the bundled
HipChat server on 127.0.0.1; the delivery's clock is moved by hand, so answers
take no time by it and only the test moves retry times."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.delivery.dispatch import DispatchConfig, Dispatcher
from syncd.delivery.servers import INITIAL_IN_FLIGHT
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.hipchat.client import HipChatClient
from syncd.registry import Registry
from syncd.store.sqlite import Outbox
from syncd.testing import Fault, HipChatServer
from tests.support.clocks import Clock
from tests.support.configs import room_tokens, trace_config
from tests.support.daemons import TEST_REACH
from tests.support.events import event, numbered_events
from tests.support.waiting import wait_for

ROOMS = room_tokens(*(str(4000 + n) for n in range(160)))


@dataclass
class Delivery:
    dispatcher: Dispatcher
    ingest: Ingest
    outbox: Outbox
    clock: Clock

    def submit(self, events: list[dict[str, object]]) -> int:
        valid, problems = validate_events(events)
        assert problems == []
        return self.ingest.submit(valid).notifications


Start = Callable[[DispatchConfig, list[tuple[str, str]]], Delivery]


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Start]:
    """Start a delivery with ``config``, serving ``(file name, YAML)`` files."""
    made: list[tuple[Dispatcher, HipChatClient, Outbox]] = []

    def begin(config: DispatchConfig, files: list[tuple[str, str]]) -> Delivery:
        clock = Clock(time.time())
        directory = tmp_path / f"config{len(made)}"
        directory.mkdir()
        for name, text in files:
            (directory / name).write_text(text)
        registry = Registry()
        assert registry.apply(load_config_set([directory], Options(reach=TEST_REACH)), "t").ok
        outbox = Outbox(tmp_path / f"outbox{len(made)}.db", clock=clock)
        client = HipChatClient(clock=clock, backoff_base=0.01, backoff_cap=0.05)
        dispatcher = Dispatcher(outbox, registry, client, config, clock=clock)
        made.append((dispatcher, client, outbox))
        ingest = Ingest(outbox, registry, clock=clock, on_enqueued=dispatcher.wake)
        dispatcher.start()
        return Delivery(dispatcher, ingest, outbox, clock)

    for room, token in ROOMS.items():
        monkeypatch.setenv(f"HIPCHAT_TOKEN_{room}", token)
    yield begin
    for dispatcher, client, outbox in made:
        dispatcher.stop(timeout=5)
        client.close()
        outbox.close()


@pytest.fixture
def server() -> Iterator[HipChatServer]:
    with HipChatServer(ROOMS, limits="hipchat") as started:
        # Long enough that a loaded machine's delay in taking an answer in (which
        # rightly stops the growth: the answers queue in this process) stays under
        # the latency the limit grows within, twice the least seen.
        started.misbehave(latency=0.4)
        yield started


def backlog(endpoint: str) -> list[tuple[str, str]]:
    """Every room notified of every ``shop`` event, in two integrations of 80 rooms."""
    rooms = list(ROOMS)
    return [
        (
            f"{half}.yaml",
            trace_config(endpoint, rooms[n * 80 : n * 80 + 80], uid=f"shop-{half}").replace(
                "every error", f"every error, {half} half"
            ),
        )
        for n, half in enumerate(("first", "second"))
    ]


def connections(server: HipChatServer) -> int:
    """Connections the server was sent on: each new one was opened because every
    one before was busy, so this is the most sends that were in flight at once."""
    return len({attempt.client_port for attempt in server.attempts})


def test_a_backlog_raises_the_sends_in_flight_past_the_first_limit(
    start: Start, server: HipChatServer
) -> None:
    delivery = start(DispatchConfig(idle_poll=0.02), backlog(server.url))
    assert delivery.submit(numbered_events(0, 3)) == 3 * len(ROOMS)
    server.wait_for_messages(3 * len(ROOMS), timeout=60)
    # Before: at most half of 64 workers, 32 sends in flight, however many rooms waited.
    assert connections(server) > 2 * INITIAL_IN_FLIGHT
    assert delivery.dispatcher.server_limit(server.url) > 2 * INITIAL_IN_FLIGHT
    assert sorted(m.room for m in server.messages) == sorted(3 * list(ROOMS))


def test_a_server_that_fails_gets_fewer_sends_in_flight_and_all_is_delivered_after(
    start: Start, server: HipChatServer
) -> None:
    delivery = start(DispatchConfig(idle_poll=0.02), backlog(server.url))
    delivery.submit(numbered_events(0, 2))
    server.wait_for_messages(2 * len(ROOMS), timeout=60)
    # Every answer taken in (a settle follows the limit's update): the limit holds still.
    wait_for(lambda: not delivery.outbox.items("inflight", limit=1), what="every answer taken in")
    grown = delivery.dispatcher.server_limit(server.url)
    assert grown > INITIAL_IN_FLIGHT
    server.inject(Fault.status(500, "Internal Server Error"), times=len(ROOMS))
    delivery.submit(numbered_events(2, 1))
    wait_for(lambda: len(server.attempts) >= 3 * len(ROOMS), timeout=60, what="the 500s")
    wait_for(lambda: not delivery.outbox.items("inflight", limit=1), what="every 500 taken in")
    # Every room failed in one round trip: one cut, not one per failure.
    assert delivery.dispatcher.server_limit(server.url) == grown // 2

    def delivered_as_time_passes() -> bool:
        delivery.clock.advance(1.0)  # the retries fall due
        return len(server.messages) >= 3 * len(ROOMS)

    wait_for(delivered_as_time_passes, timeout=60, what="every room's retry delivered")


def test_a_slow_server_holds_no_more_than_max_in_flight_whatever_the_workers(
    start: Start, server: HipChatServer
) -> None:
    slow_rooms = dict(list(ROOMS.items())[:6])
    with HipChatServer(slow_rooms, limits=None) as slow:
        slow.inject(Fault.trickle(0.5), times=100)
        other = trace_config(server.url, ["4100"], uid="other").replace("shop", "other")
        other = other.replace("every error", "the other server")
        files = [("slow.yaml", trace_config(slow.url, slow_rooms)), ("other.yaml", other)]
        delivery = start(DispatchConfig(workers=16, max_in_flight=3, idle_poll=0.02), files)
        delivery.submit([event("shop")])
        wait_for(lambda: len(slow.attempts) == 3, timeout=20, what="three sends held")
        delivery.submit([event("other")])
        server.wait_for_messages(1, timeout=20)
        assert len(slow.attempts) == 3  # 16 workers, 6 rooms waiting: still 3
