"""Delivery workers: claim from the outbox, send, and record what happened.

Each worker claims one room's head item at a time, so a room that is slow or
rate-limited holds at most one worker and never the rooms behind it. What to
do with a failure is the HipChat client's classification: retry at the time it
says, or dead-letter a permanent failure and mark the room unhealthy.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.hipchat import HipChatClient
from syncd.hipchat_api import DeliveryResult, RoomTarget
from syncd.housekeeping import orphaned
from syncd.message import render_message
from syncd.registry import Registry
from syncd.store import Item, Settle, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchConfig:
    workers: int = 4
    lease: float = 120.0
    idle_poll: float = 1.0
    hold_disabled: float = 30.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        client: HipChatClient,
        config: DispatchConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[Item, DeliveryResult, float], None] = lambda *_: None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.client = client
        self.config = config or DispatchConfig()
        self.clock = clock
        self.on_result = on_result
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.config.workers):
            thread = threading.Thread(target=self._work, name=f"syncd-send-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float) -> bool:
        """Stop claiming; wait up to ``timeout`` for sends in flight. True if all ended."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _work(self) -> None:
        settled: Settle | None = None
        failing = False
        while not self._stopping.is_set():
            try:
                items = self.store.settle_and_claim(settled, 1, self.config.lease)
                settled = None
            except Exception as exc:
                # A full disk fails every try alike: say so once, then wait between tries.
                if not failing:
                    log.error(
                        "the outbox cannot be written (%s); retrying every %.0f s",
                        exc,
                        self.config.idle_poll,
                    )
                failing = True
                self._pause(self.config.idle_poll)
                continue
            if failing:
                log.info("the outbox is writable again")
                failing = False
            if not items:
                self._idle()
                continue
            try:
                settled = self.process(items[0])
            except Exception:
                log.exception("delivery of outbox item %d failed", items[0].id)
        if settled is not None:
            self.store.settle(settled)

    def _idle(self) -> None:
        try:
            due = self.store.next_due()
        except sqlite3.Error:
            due = None
        wait = self.config.idle_poll
        if due is not None:
            wait = min(wait, max(0.005, due - self.clock()))
        self._pause(wait)

    def _pause(self, seconds: float) -> None:
        with self._wake:
            if not self._stopping.is_set():
                self._wake.wait(seconds)

    def process(self, item: Item) -> Settle:
        """Send one claimed item; returns how it ended, for the outbox to record."""
        notifier = self.registry.snapshot.notifiers.get(item.uid)
        if notifier is None:
            return orphaned(item)
        integration = notifier.integration
        if integration.state == "stopped":
            return Settle(item.id, "cancelled", "integration stopped")
        now = self.clock()
        if integration.state == "disabled":
            return Settle(
                item.id, "pending", "integration disabled", now + self.config.hold_disabled
            )
        if item.room_id not in notifier.tokens:
            return Settle(item.id, "cancelled", "room removed from the integration")
        token = notifier.tokens[item.room_id]
        target = RoomTarget(integration.hipchat.endpoint, item.room_id, token)
        delay = self.client.delay_before_send(target, now)
        if delay > 0:
            return Settle(item.id, "pending", "paced: room or token rate limit", now + delay)
        mentions = (item.mention,) if item.mention else ()
        message = render_message(item.event, integration, mentions, count=item.count)
        result = self.client.send(target, message, attempt=max(0, item.attempts - 1))
        done = self.clock()
        self.on_result(item, result, done)
        if result.ok:
            notifier.state.delivered(item.room_id, done)
            return Settle(item.id, "delivered")
        if result.outcome == "retry":
            wait = result.retry_after if result.retry_after is not None else 1.0
            notifier.state.failed(item.room_id, done, result.reason, permanent=False)
            return Settle(item.id, "pending", result.reason, done + wait)
        notifier.state.failed(item.room_id, done, result.reason, permanent=True)
        log.error("%s: %s: %s (dead-lettered)", integration.uid, target, result.reason)
        return Settle(item.id, "dead", result.reason)
