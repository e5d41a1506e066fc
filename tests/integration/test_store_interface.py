"""Ingest needs nothing from a store beyond ``syncd.store.contract.Store``: a second
implementation, here a dictionary, takes the SQLite outbox's place unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from syncd.config.configset import load_config_set
from syncd.events.ingest import Ingest
from syncd.registry import Registry
from syncd.store.contract import Item, NewItem, StoredWindow, Window, WindowUpdate


class MemoryBatch:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def known(self, project: str, fingerprint: str) -> bool:
        return (project, fingerprint) in self.store.seen

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        self.store.seen.add((project, fingerprint))

    def window(self, key: str) -> Window:
        stored = self.store.windows.get(key)
        return stored.window if stored else Window()

    def save_window(self, update: WindowUpdate) -> None:
        old = self.store.windows.get(update.key)
        last_event = update.last_event or (old.last_event if old else None)
        self.store.windows[update.key] = StoredWindow(
            update.key, update.uid, update.window, last_event
        )
        self.store.due[update.key] = update.due_at

    def drop_window(self, key: str) -> None:
        self.store.windows.pop(key, None)
        self.store.due.pop(key, None)

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        ids = []
        for new in items:
            item_id = len(self.store.queue) + 1
            self.store.queue.append(
                Item(
                    item_id,
                    new.uid,
                    new.room_id,
                    new.event,
                    new.count,
                    new.mentions,
                    now,
                    now,
                    0,
                    "pending",
                )
            )
            ids.append(item_id)
        return ids


class MemoryStore:
    """Just enough of the interface for ingest and flushing; no threads, no durability."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.windows: dict[str, StoredWindow] = {}
        self.due: dict[str, float | None] = {}
        self.queue: list[Item] = []

    @contextmanager
    def batch(self) -> Iterator[MemoryBatch]:
        yield MemoryBatch(self)

    @contextmanager
    def view(self) -> Iterator[MemoryBatch]:
        yield MemoryBatch(self)

    def due_windows(self, now: float) -> list[StoredWindow]:
        return [self.windows[k] for k, at in self.due.items() if at is not None and at <= now]


CONFIG = """\
version: 1
integrations:
  - uid: throttled
    project: shop
    name: throttled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - {id: 1, token: {env: HIPCHAT_T}}
        - {id: 2, token: {env: HIPCHAT_T}}
    actions:
      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}
    trigger: {event: trace, frequency: 1m}
"""


def test_ingest_and_flush_run_on_a_store_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(CONFIG)
    registry = Registry(resolver=lambda ref: "token")
    outcome = registry.apply(load_config_set([tmp_path]), "test")
    assert outcome.ok, outcome.diagnostics
    now = [1000.0]
    store = MemoryStore()
    ingest = Ingest(store, registry, clock=lambda: now[0])  # type: ignore[arg-type]
    event = {"project": "shop", "fingerprint": "fp", "timestamp": "2026-11-26T12:00:00Z"}

    paid = {**event, "attributes": {"team": "pay"}}

    assert ingest.submit([event]).notifications == 2
    assert ingest.submit([paid, event]).notifications == 0
    assert ingest.flush_due() == 0
    now[0] += 60
    assert ingest.flush_due() == 2
    assert [(i.room_id, i.count, i.mentions) for i in store.queue] == [
        ("1", 1, ()),
        ("2", 1, ()),
        ("1", 2, ("@pay",)),
        ("2", 2, ("@pay",)),
    ]
