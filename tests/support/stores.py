"""Store calls that only tests make, written once over the store's contract.

The daemon never claims without settling, nor settles one item by hand; tests
do both to set up a state, so these live here and not on the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from pathlib import Path

from syncd.store.contract import Item, Settle, Store
from syncd.store.sqlite import HEADS_SCAN
from syncd.store.tables import TALLIES_SCAN


def claim(store: Store, limit: int, lease: float, skip: Collection[str] = ()) -> list[Item]:
    return store.settle_and_claim(None, limit, lease, skip)


def ack(store: Store, item_id: int) -> None:
    store.settle(Settle(item_id, "delivered"))


def dead(store: Store, item_id: int, reason: str) -> None:
    store.settle(Settle(item_id, "dead", reason))


def retry(store: Store, item_id: int, at: float, reason: str) -> None:
    store.settle(Settle(item_id, "pending", reason, retry_at=at))


def heads_consistent(path: Path) -> bool:
    """Whether an SQLite outbox's heads table says what a full scan of its items says."""
    with sqlite3.connect(path) as db:
        expected = {(u, r): (i, d, s) for u, r, i, d, s in db.execute(HEADS_SCAN)}
        actual = {
            (u, r): (i, d, s)
            for u, r, i, d, s in db.execute("SELECT uid, room_id, item_id, due, set_at FROM heads")
        }
    return expected == actual


def tallies_consistent(path: Path) -> bool:
    """Whether an SQLite outbox's kept counts say what a full scan of its items says."""
    with sqlite3.connect(path) as db:
        expected = {(u, r, k): n for u, r, k, n in db.execute(TALLIES_SCAN)}
        actual = {
            (u, r, k): n for u, r, k, n in db.execute("SELECT uid, room_id, kind, n FROM tallies")
        }
    return expected == actual


def events_consistent(path: Path) -> bool:
    """Whether each kept event is referred to by as many items as it counts, and no
    item refers to an event that is gone."""
    with sqlite3.connect(path) as db:
        referred = dict(
            db.execute(
                "SELECT event_id, count(*) FROM outbox WHERE event_id IS NOT NULL GROUP BY event_id"
            ).fetchall()
        )
        kept = dict(db.execute("SELECT event_id, refs FROM events").fetchall())
    return referred == kept
