"""The rule suites' store in memory decides nothing: the daemon's ingest, given
the same events at the same times, answers and queues the same with it as with
the SQLite outbox the daemon runs on."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from syncd.config.configset import load_config_set
from syncd.events.ingest import Ingest
from syncd.events.timeline import MemoryStore
from syncd.registry import Registry
from syncd.store.contract import Store
from syncd.store.sqlite import Outbox
from tests.support.clocks import Clock
from tests.support.configs import write_files

CONFIG = """\
version: 1
integrations:
  - uid: groups
    project: shop
    name: new groups
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 1, token: {env: HIPCHAT_T}}, {id: 2, token: {env: HIPCHAT_T}}]
    actions:
      - {action: filter, attribute: environment, regex: "^staging$"}
      - {action: mention, attribute: team, regex: "^(payments|search)$", target: "@oncall"}
      - {action: mention, attribute: team, regex: "^payments$", target: "@payments"}
    trigger: {event: group, frequency: 40s, threshold: 4}
  - uid: traces
    project: shop
    name: every trace
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 3, token: {env: HIPCHAT_T}}]
    trigger: {event: trace, frequency: 25s}
  - uid: paused
    project: shop
    name: paused
    state: stopped
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 4, token: {env: HIPCHAT_T}}]
    trigger: {event: trace}
  - uid: switched-off
    project: shop
    name: switched off
    state: disabled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 5, token: {env: HIPCHAT_T}}]
"""

Seen = list[tuple[object, ...]]


def _events(seed: int, count: int) -> list[tuple[float, dict[str, Any]]]:
    """Events at whole and half seconds, several at one time, some at the very
    second a window falls due, of a few fingerprints and attributes."""
    pick = random.Random(seed)
    at, events = 1_800_000_000.0, []
    for _ in range(count):
        at += pick.choice((0.0, 0.5, 1.0, 5.0, 25.0, 40.0, 61.0))
        attributes = {
            "environment": pick.choice(("production", "staging")),
            "team": pick.choice(("payments", "search", "core")),
        }
        event = {
            "project": pick.choice(("shop", "shop", "shop", "nobody")),
            "fingerprint": f"f{pick.randrange(80)}",
            "timestamp": "2026-11-26T09:00:00Z",
            "attributes": attributes,
        }
        events.append((at, event))
    return events


def _drive(
    store: Store,
    registry: Registry,
    events: list[tuple[float, dict[str, Any]]],
    queued: Callable[[], Seen],
) -> Seen:
    """What ingest answered and queued, step by step, with windows flushed as the
    clock passes them (the windows due at one time in any order: the stores list
    them in their own)."""
    clock = Clock(0.0)
    ingest = Ingest(store, registry, clock=clock)
    seen: Seen = []
    for at, event in events:
        clock.advance(at - clock())
        ingest.flush_due()
        seen.append(("flushed", *sorted(queued())))
        accepted = ingest.submit([event])
        notes = tuple(result.why for result in accepted.events)
        seen.append(("answered", notes, accepted.unserved, *queued()))
    clock.advance(3600)
    ingest.flush_due()
    seen.append(("flushed", *sorted(queued())))
    return seen


def _item(
    uid: str, room: str, event: Any, count: int, mentions: Any, since: Any
) -> tuple[object, ...]:
    return (uid, room, event["fingerprint"], event["new_group"], count, tuple(mentions), since)


def test_memory_and_sqlite_give_ingest_the_same_answers(tmp_path: Path) -> None:
    write_files(tmp_path, ("config/shop.yaml", CONFIG))
    registry = Registry(resolver=lambda ref: "")
    assert registry.apply(load_config_set([tmp_path / "config"]), "test").ok
    events = _events(seed=28, count=400)

    memory = MemoryStore()

    def from_memory() -> Seen:
        return [
            _item(i.uid, i.room_id, i.event, i.count, i.mentions, i.since)
            for b in memory.take()
            for i in b
        ]

    outbox = Outbox(tmp_path / "outbox.db", synchronous="NORMAL")
    taken: set[int] = set()

    def from_outbox() -> Seen:
        new = [item for item in outbox.items() if item.id not in taken]
        taken.update(item.id for item in new)
        return [_item(i.uid, i.room_id, i.event, i.count, i.mentions, i.since) for i in new]

    try:
        expected = _drive(outbox, registry, events, from_outbox)
    finally:
        outbox.close()
    actual = _drive(cast(Store, memory), registry, events, from_memory)
    assert actual == expected
    # The sequence exercised what a suite relies on.
    flat = repr(expected)
    for reason in (
        "throttled until",
        "filtered by actions[0]",
        "not a new error group",
        "held while stopped",
        "disabled",
        "@payments",
    ):
        assert reason in flat, reason
    assert any(row[0] == "flushed" and len(row) > 1 for row in expected)
    assert any(isinstance(x, tuple) and len(x) == 7 and x[4] == 4 for row in expected for x in row)
