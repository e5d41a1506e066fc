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
        expected = {(u, r): (i, d) for u, r, i, d in db.execute(HEADS_SCAN)}
        actual = {
            (u, r): (i, d)
            for u, r, i, d in db.execute("SELECT uid, room_id, item_id, due FROM heads")
        }
    return expected == actual
