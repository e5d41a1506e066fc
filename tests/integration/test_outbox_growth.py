"""What a request leaves in the outbox grows with the request, not with its fan-out.

A 0.91 MB POST once grew the outbox by 181 MB: every notification kept its own
copy of the event. An event is now kept once, whatever it caused, and goes
with the last notification that refers to it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import MappingProxyType

from syncd.config.model import integration_from_data
from syncd.events.ingest import Ingest
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import NewItem, Settle
from syncd.store.sqlite import Outbox
from tests.support.events import event
from tests.support.stores import claim


def fan_out(count: int) -> Registry:
    registry = Registry()
    notifiers = {}
    for n in range(count):
        integration = integration_from_data(
            {
                "uid": f"fan-{n}",
                "project": "shop",
                "name": f"fan {n}",
                "state": "stopped",
                "trigger": {"event": "trace"},
                "hipchat": {
                    "endpoint": "https://hipchat.example.com",
                    "rooms": [{"id": "1", "token": {"env": "HIPCHAT_T"}}],
                },
            }
        )
        notifiers[integration.uid] = Notifier(integration, MappingProxyType({"1": "token"}))
    registry.snapshot = Snapshot(MappingProxyType(notifiers), "test")
    return registry


def stored_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def growth(tmp_path: Path, integrations: int) -> tuple[int, int]:
    box = Outbox(tmp_path / f"{integrations}.db")
    events = [event("shop", f"f{n}", attributes={"a": "x" * 850}) for n in range(900)]
    before = stored_bytes(box.path)
    assert Ingest(box, fan_out(integrations)).submit(events).notifications == 900 * integrations
    return stored_bytes(box.path) - before, len(json.dumps(events))


def test_a_fanned_out_request_grows_the_outbox_about_as_much_as_one_that_is_not(
    tmp_path: Path,
) -> None:
    fanned, body = growth(tmp_path, 11)
    single, _ = growth(tmp_path, 1)
    # Was 16 times the request (a copy of each event per notification).
    assert fanned < 2 * single, (fanned, single)
    assert fanned < 3 * body, (fanned, body)


def test_an_event_is_kept_once_and_goes_with_its_last_notification(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    shared = {"project": "shop", "n": 1}
    with box.batch() as batch:
        batch.enqueue([NewItem(f"i{n}", "1", shared) for n in range(5)], 0.0)
    with sqlite3.connect(box.path) as db:
        assert db.execute("SELECT refs FROM events").fetchall() == [(5,)]
    assert [i.event for i in box.items()] == [shared] * 5
    for item in claim(box, limit=5, lease=30):
        box.settle(Settle(item.id, "delivered"))
    assert box.prune_finished(older_than=-1) == 5
    with sqlite3.connect(box.path) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
