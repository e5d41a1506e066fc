"""Many rooms on one token spend its 500 requests in 5 minutes without a 429: the
sends other workers have on their way are taken from the budget an answer reports.
Against the bundled HipChat server enforcing HipChat's limits, on a clock the
test moves (the windows count on it); answers are 5 ms late in real time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.delivery.dispatch import DispatchConfig, Dispatcher
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.hipchat.client import HipChatClient
from syncd.registry import Registry
from syncd.store.sqlite import Outbox
from syncd.testing import HipChatServer
from tests.support.clocks import Clock
from tests.support.configs import trace_config
from tests.support.daemons import TEST_REACH
from tests.support.events import numbered_events
from tests.support.waiting import wait_for

TOKEN = "one-token-for-20-rooms"
ROOMS = [str(room) for room in range(1, 21)]


@dataclass
class Delivery:
    server: HipChatServer
    outbox: Outbox
    ingest: Ingest
    clock: Clock

    def refusals(self) -> int:
        return sum(1 for a in self.server.attempts if a.status == 429)

    def paced(self) -> bool:
        """Nothing in flight, and the next notification due at a time still to come."""
        due = self.outbox.next_due()
        in_flight = self.outbox.items("inflight", limit=1)
        return not in_flight and due is not None and due > self.clock()


@pytest.fixture(params=[16, 64])
def delivery(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Delivery]:
    clock = Clock(time.time())
    for room in ROOMS:
        monkeypatch.setenv(f"HIPCHAT_TOKEN_{room}", TOKEN)
    server = HipChatServer(dict.fromkeys(ROOMS, TOKEN), limits="hipchat", clock=clock).start()
    server.misbehave(latency=0.005)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "a.yaml").write_text(trace_config(server.url, ROOMS))
    registry = Registry()
    config = load_config_set([tmp_path / "config"], Options(reach=TEST_REACH))
    assert registry.apply(config, "test").ok
    outbox = Outbox(tmp_path / "outbox.db", clock=clock)
    client = HipChatClient(clock=clock, backoff_base=0.01, backoff_cap=0.05)
    workers = DispatchConfig(workers=request.param, idle_poll=0.02)
    dispatcher = Dispatcher(outbox, registry, client, workers, clock=clock)
    ingest = Ingest(outbox, registry, clock=clock, on_enqueued=dispatcher.wake)
    dispatcher.start()
    yield Delivery(server, outbox, ingest, clock)
    dispatcher.stop(timeout=5)
    client.close()
    outbox.close()
    server.close()


def test_twenty_rooms_on_one_token_spend_its_budget_without_a_429(delivery: Delivery) -> None:
    valid, problems = validate_events(numbered_events(0, 30))
    assert problems == []
    assert delivery.ingest.submit(valid).notifications == 600
    wait_for(
        lambda: len(delivery.server.messages) >= 490 and delivery.paced(),
        timeout=30,
        what="the token's budget spent and the rest paced to its reset",
    )
    # Before: 2 to 9 refusals a run, one per send in flight as the budget ran out.
    assert delivery.refusals() == 0
    assert len(delivery.server.messages) <= 500
    delivery.clock.advance(301)  # the token's 5 minutes and every room's minute are over
    delivery.server.wait_for_messages(600, timeout=30)
    assert delivery.refusals() == 0
