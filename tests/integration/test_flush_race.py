"""A window flushed while an event lands in it.

Housekeeping lists the due windows, then writes each one's digest in a batch of
its own; an event taken in between (by another thread, or another daemon on a
shared store) changes the window after it was listed. The digest written from
the stale copy would then overwrite what that event did: its count lost, or a
second digest for one window. Every event must be counted once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.registry import Registry
from syncd.store.contract import StoredWindow
from syncd.store.sqlite import Outbox
from tests.support.daemons import TEST_REACH

pytestmark = pytest.mark.integration

CONFIG = """\
version: 1
integrations:
  - uid: a
    project: shop
    name: a
    hipchat:
      endpoint: http://127.0.0.1:9
      rooms:
        - {id: 1001, token: {env: HIPCHAT_TOKEN_A}}
    trigger: {event: trace, frequency: 5m}
"""


class RacingOutbox(Outbox):
    """An outbox that lets an event in between listing due windows and flushing them."""

    late: Callable[[], None] | None = None

    def due_windows(self, now: float) -> list[StoredWindow]:
        due = super().due_windows(now)
        late, self.late = self.late, None
        if late is not None:
            late()
        return due


def _event() -> dict[str, Any]:
    return {
        "project": "shop",
        "fingerprint": "fp",
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": ["KeyError"],
    }


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RacingOutbox, Ingest]]:
    monkeypatch.setenv("HIPCHAT_TOKEN_A", "room-a-token-0001")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "a.yaml").write_text(CONFIG)
    config = load_config_set([tmp_path / "config"], Options(reach=TEST_REACH))
    registry = Registry()
    assert registry.apply(config, "test").ok
    outbox = RacingOutbox(tmp_path / "outbox.db", clock=lambda: time.time())
    yield outbox, Ingest(outbox, registry, clock=lambda: time.time())
    outbox.close()


def _send(ingest: Ingest) -> int:
    valid, problems = validate_events([_event()])
    assert problems == []
    return ingest.submit(valid).notifications


def test_an_event_landing_between_listing_and_flushing_is_counted_once(
    rig: tuple[RacingOutbox, Ingest],
) -> None:
    outbox, ingest = rig
    with freeze_time("2026-11-26 12:00:00") as clock:
        assert _send(ingest) == 1  # the first goes out at once
        clock.tick(30)
        assert _send(ingest) == 0  # held in the window
        clock.tick(300)
        late: list[int] = []
        outbox.late = lambda: late.append(_send(ingest))
        flushed = ingest.flush_due()
        clock.tick(301)
        flushed += ingest.flush_due()
    items = outbox.items("pending", uid="a", limit=100)
    # Three events: each one either sent on its own or counted in the one digest.
    counted = sum(item.count for item in items)
    assert counted == 3, (flushed, late, [(i.id, i.count) for i in items])
