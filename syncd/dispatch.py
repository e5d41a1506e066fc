"""Delivery workers: claim from the outbox, send, and record what happened.

Each worker claims one room's head item at a time, so a room that is slow or
rate-limited holds at most one worker and never the rooms behind it. What to
do with a failure is the HipChat client's classification: retry at the time it
says, or dead-letter a permanent failure and mark the room unhealthy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.hipchat import DeliveryResult, HipChatClient, RoomTarget
from syncd.message import render
from syncd.outbox import Item, Outbox
from syncd.registry import Registry

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
        outbox: Outbox,
        registry: Registry,
        client: HipChatClient,
        config: DispatchConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[Item, DeliveryResult, float], None] = lambda *_: None,
    ) -> None:
        self.outbox = outbox
        self.registry = registry
        self.client = client
        self.config = config or DispatchConfig()
        self.clock = clock
        self.on_result = on_result
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0

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

    @property
    def in_flight(self) -> int:
        with self._wake:
            return self._busy

    def stop(self, timeout: float) -> bool:
        """Stop claiming; wait up to ``timeout`` for sends in flight. True if all ended."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                items = self.outbox.claim(1, self.config.lease)
            except Exception:
                log.exception("claiming from the outbox failed")
                items = []
            if not items:
                self._idle()
                continue
            with self._wake:
                self._busy += 1
            try:
                self.process(items[0])
            except Exception:
                log.exception("delivery of outbox item %d failed", items[0].id)
            finally:
                with self._wake:
                    self._busy -= 1

    def _idle(self) -> None:
        due = self.outbox.next_due()
        wait = self.config.idle_poll
        if due is not None:
            wait = min(wait, max(0.005, due - self.clock()))
        with self._wake:
            if not self._stopping.is_set():
                self._wake.wait(wait)

    def process(self, item: Item) -> None:
        notifier = self.registry.snapshot.notifiers.get(item.uid)
        if notifier is None:
            self.outbox.cancel(item.id, "integration removed")
            return
        integration = notifier.integration
        if integration.state == "stopped":
            self.outbox.cancel(item.id, "integration stopped")
            return
        now = self.clock()
        if integration.state == "disabled":
            self.outbox.retry(item.id, now + self.config.hold_disabled, "integration disabled")
            return
        if item.room_id not in notifier.tokens:
            self.outbox.cancel(item.id, "room removed from the integration")
            return
        target = RoomTarget(
            integration.hipchat.endpoint, item.room_id, notifier.tokens[item.room_id]
        )
        delay = self.client.delay_before_send(target, now)
        if delay > 0:
            self.outbox.retry(item.id, now + delay, "paced: room or token rate limit")
            return
        mentions = (item.mention,) if item.mention else ()
        message = render(item.event, integration, mentions, count=item.count)
        result = self.client.send(target, message, attempt=max(0, item.attempts - 1))
        done = self.clock()
        if result.ok:
            self.outbox.ack(item.id)
            notifier.state.delivered(item.room_id, done)
        elif result.outcome == "retry":
            wait = result.retry_after if result.retry_after is not None else 1.0
            self.outbox.retry(item.id, done + wait, result.reason)
            notifier.state.failed(item.room_id, done, result.reason, permanent=False)
        else:
            self.outbox.dead(item.id, result.reason)
            notifier.state.failed(item.room_id, done, result.reason, permanent=True)
            log.error("%s: %s: %s (dead-lettered)", integration.uid, target, result.reason)
        self.on_result(item, result, done)
