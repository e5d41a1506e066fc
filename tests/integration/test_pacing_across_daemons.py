"""HipChat's 30 messages a minute per room hold across daemons that share one
queue: a daemon whose own client never saw the answer that spent the room's
minute still waits for its reset, because the wait is kept in the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.delivery.dispatch import DispatchConfig, Dispatcher
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.hipchat.client import HipChatClient
from syncd.hipchat.wire import RoomTarget
from syncd.registry import Registry
from syncd.store.postgresql import PostgresOutbox
from syncd.testing import HipChatServer
from tests.support.clocks import Clock
from tests.support.configs import trace_config
from tests.support.daemons import TEST_REACH
from tests.support.events import numbered_events
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.stores import claim
from tests.support.waiting import wait_for

TOKEN = "shared-token-0001"


class Member:
    """One daemon's delivery: its own store connection, client (with what its
    answers taught it) and workers, on the shared queue."""

    def __init__(self, url: str, registry: Registry, clock: Clock) -> None:
        self.store = PostgresOutbox(url, clock=clock, monotonic=clock, connections=3)
        self.client = HipChatClient(clock=clock, backoff_base=0.01, backoff_cap=0.05)
        self.dispatcher = Dispatcher(
            self.store,
            registry,
            self.client,
            DispatchConfig(workers=4, idle_poll=0.02),
            clock=clock,
        )

    def stop(self) -> None:
        self.dispatcher.stop(timeout=5)
        self.client.close()
        self.store.close()


@pytest.fixture
def cluster(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,  # noqa: F811
) -> Iterator[tuple[HipChatServer, Registry, Clock, str]]:
    clock = Clock(time.time())
    monkeypatch.setenv("HIPCHAT_TOKEN_1", TOKEN)
    with HipChatServer({"1": TOKEN}, limits="hipchat", clock=clock) as server:
        (tmp_path / "a.yaml").write_text(trace_config(server.url, ["1"]))
        registry = Registry()
        assert registry.apply(load_config_set([tmp_path], Options(reach=TEST_REACH)), "t").ok
        yield server, registry, clock, postgres_url


def refusals(server: HipChatServer) -> int:
    return sum(1 for a in server.attempts if a.status == 429)


def test_a_daemon_that_did_not_send_the_rooms_30th_message_waits_for_its_minute(
    cluster: tuple[HipChatServer, Registry, Clock, str],
) -> None:
    server, registry, clock, url = cluster
    first = Member(url, registry, clock)
    try:
        valid, problems = validate_events(numbered_events(0, 60))
        assert problems == []
        assert Ingest(first.store, registry, clock=clock).submit(valid).notifications == 60
        # The first daemon sends the room's first 30, one by one as its workers would;
        # its client learns from the 30th answer that the minute is spent.
        for _ in range(30):
            (item,) = claim(first.store, limit=1, lease=60)
            first.store.settle(asyncio.run(first.dispatcher.process(item)))
        assert first.client.delay_before_send(RoomTarget(server.url, "1", TOKEN)) > 0
    finally:
        first.stop()
    second = Member(url, registry, clock)
    try:
        second.dispatcher.start()

        def resting() -> bool:
            due = second.store.next_due()
            return due is not None and due > clock() and not second.store.items("inflight")

        # The second daemon looks (its idle worker keeps the room's due time) and
        # sends nothing: its client knows nothing of the minute, the queue does.
        wait_for(resting, what="the second daemon to find the room resting")
        assert second.dispatcher.alive and refusals(server) == 0
        assert len(server.messages) == 30
        clock.advance(61)
        server.wait_for_messages(60, timeout=10)
        assert refusals(server) == 0
        assert len(server.attempts) == 60
    finally:
        second.stop()
