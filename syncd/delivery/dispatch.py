"""Delivery workers: claim from the outbox, send, and record what happened.

Each worker claims one room's head item at a time, so a room that is slow or
rate-limited holds at most one worker and never the rooms behind it. One
HipChat server gets as many sends in flight as its answers show it takes (a
limit that grows while its latency holds and is cut on a failure, see
``servers``), at most ``max_in_flight`` and never more than half the workers
(rounded up); a server that is down rests as a whole: meanwhile its
integrations are passed over, so a slow, hostile or absent server cannot stop
delivery to the others nor cost a request per room. What to do with a failure
is the HipChat client's classification: retry at the time it says, or
dead-letter a permanent failure and mark the room unhealthy.

On a store several daemons share, the daemons may run different sets for a
while (a rollout). An integration this daemon's set lacks but another live
member's has is that member's to deliver: it is passed over like a resting
server's, never claimed and cancelled here (``elsewhere``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.delivery.health import DEGRADED_AFTER, RoomHealthBook
from syncd.delivery.housekeeping import not_deliverable
from syncd.delivery.servers import Servers, server_of
from syncd.hipchat.client import MAX_CONNECTIONS_PER_HOST, HipChatClient
from syncd.hipchat.render import render_message
from syncd.hipchat.wire import DeliveryResult, RoomTarget
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import DEFAULT_LEASE, Item, Settle, Store, StoreError

log = logging.getLogger(__name__)


# Sends one HipChat server may have in flight at most, however well it answers:
# at 150 ms an answer, 384 in flight carry 2,560 notifications/s, HipChat's 30
# messages a minute for 10,000 rooms spent within the first 20 s of the minute.
DEFAULT_MAX_IN_FLIGHT = 384
# One server may hold half the workers, so that a slow or hostile one leaves the
# other half to the rest: 128 in flight by default. A thread waiting on HipChat
# costs no CPU, but the daemon's CPU per notification, not its sends in flight,
# bounds it today (about 1.1 ms at 1,000 rooms, some 700 notifications/s, which
# 105 sends in flight carry at 150 ms): 768 workers, 384 in flight, measured no
# faster, 10 to 15% more CPU per notification and 25 MiB more peak memory.
DEFAULT_WORKERS = 256


@dataclass(frozen=True)
class DispatchConfig:
    workers: int = DEFAULT_WORKERS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    lease: float = DEFAULT_LEASE
    idle_poll: float = 1.0  # how often the timer keeper, or a worker the outbox refused, looks
    # A worker with nothing to wait for sleeps until woken; this long at most, so
    # that a lost wake costs a delay, not a stall.
    idle_wait: float = 30.0

    @property
    def per_server(self) -> int:
        """Sends one HipChat server may have in flight at most, whatever its limit
        has learnt: ``max_in_flight``, no more than half the workers (rounded up),
        and no more than the client keeps connections to one server (a send past
        them would open a connection, and close it after, each time)."""
        most = min(self.max_in_flight, (self.workers + 1) // 2, MAX_CONNECTIONS_PER_HOST)
        return max(1, most)


def _retry_level(failures: int) -> int:
    """Warning when a room turns degraded, then at 8, 16, 32... failures in a row:
    an outage is visible without a line per attempt."""
    if failures == DEGRADED_AFTER or (failures >= 8 and failures & (failures - 1) == 0):
        return logging.WARNING
    return logging.INFO


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
        health: RoomHealthBook | None = None,
        elsewhere: Callable[[bool], frozenset[str]] = lambda _fresh: frozenset(),
    ) -> None:
        """``elsewhere``: the integrations other live daemons know (read now when
        asked with True), for a shared store; none for a store of its own."""
        self.store = store
        self.registry = registry
        self.client = client
        self.config = config or DispatchConfig()
        self.clock = clock
        self.on_result = on_result
        self.health = health or RoomHealthBook()
        self._elsewhere = elsewhere
        self._others: tuple[frozenset[str] | None, Snapshot | None, frozenset[str]] = (
            None,
            None,
            frozenset(),
        )
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._servers = Servers(self.config.per_server)
        self._timer: float | None = None  # the due time an idle worker sleeps until
        self._stopped = registry.snapshot.stopped  # as the last set published said
        registry.add_watcher(self.on_published)
        self._local = threading.local()
        self._failing = False

    def start(self) -> None:
        for n in range(self.config.workers):
            thread = threading.Thread(target=self._work, name=f"syncd-send-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def on_published(self, snapshot: Snapshot) -> None:
        """A registry watcher: an integration enabled again is delivered at once,
        its waiting rooms no longer passed over."""
        released = self._stopped - snapshot.stopped
        self._stopped = snapshot.stopped
        if released:
            self.wake()

    def _passed_over(self, snapshot: Snapshot, now: float) -> frozenset[str]:
        """Integrations whose server is full or resting, or whose delivery is stopped:
        their items wait unclaimed, so a pause costs no attempt and no hold; and
        those only another daemon knows."""
        skipped = self._servers.skip(snapshot, now)
        others = self._only_elsewhere(snapshot)
        if not others and not snapshot.stopped:
            return skipped
        return skipped | snapshot.stopped | others

    def _only_elsewhere(self, snapshot: Snapshot) -> frozenset[str]:
        """The integrations other daemons know and this set lacks; worked out again
        only when either changed, not at every claim."""
        elsewhere = self._elsewhere(False)
        if not elsewhere:
            return elsewhere
        known, of, others = self._others
        if known is not elsewhere or of is not snapshot:
            others = elsewhere.difference(snapshot.notifiers)
            self._others = (elsewhere, snapshot, others)
        return others

    def wake(self, count: int | None = None) -> None:
        """Wake ``count`` idle workers (all when None): one per new item, not a herd,
        and no more than could start a send now; a worker that claims after its
        wait wakes the next, so the items to a server with room are taken in turn."""
        if count is not None:
            count = min(count, self._servers.room(self.clock()))
        with self._wake:
            if count is None:
                self._wake.notify_all()
            else:
                self._wake.notify(count)

    def server_limit(self, endpoint: str) -> int:
        """Sends the HipChat server of ``endpoint`` may have in flight now."""
        return self._servers.limit(server_of(endpoint))

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
        idle = False
        while not self._stopping.is_set():
            items = self._claim(settled)
            if items is None:
                continue
            settled = None
            self._pass_on_freed_slot(items)
            if not items:
                self._idle()
                idle = True
                continue
            if idle:
                # Heads often fall due together: one more worker looks, not all of them.
                self.wake(1)
                idle = False
            try:
                settled = self.process(items[0])
            except Exception:
                log.exception("delivery of outbox item %d failed", items[0].id)
        if settled is not None:
            self.store.settle(settled)

    def _pass_on_freed_slot(self, claimed: list[Item]) -> None:
        """This worker freed a slot of a full server (and its limit may have grown
        meanwhile): the slots its own claim did not take go to as many idle
        workers (a wake per free slot, not one per send)."""
        freed: tuple[str, int] | None = getattr(self._local, "freed", None)
        if freed is None:
            return
        self._local.freed = None
        server, free = freed
        notifier = self.registry.snapshot.notifiers.get(claimed[0].uid) if claimed else None
        if notifier is not None and server_of(notifier.integration.hipchat.endpoint) == server:
            free -= 1
        if free > 0:
            self.wake(free)

    def _claim(self, settled: Settle | None) -> list[Item] | None:
        """Settle and claim; None when the outbox cannot be written (after a pause)."""
        try:
            skip = self._passed_over(self.registry.snapshot, self.clock())
            items = self.store.settle_and_claim(settled, 1, self.config.lease, skip)
        except Exception as exc:
            # A full disk fails every try alike: say so once, then wait between tries.
            if not self._failing:
                log.error(
                    "the outbox cannot be written (%s); retrying every %.0f s",
                    exc,
                    self.config.idle_poll,
                )
            self._failing = True
            self._pause(self.config.idle_poll)
            return None
        if self._failing:
            log.info("the outbox is writable again")
            self._failing = False
        return items

    def _idle(self) -> None:
        """Sleep until the next head falls due, or be woken.

        One idle worker keeps the timer for the next due head; the others wait
        to be woken, so a head falling due wakes one worker, not the whole pool.
        """
        now = self.clock()
        try:
            due = self.store.next_due(self._passed_over(self.registry.snapshot, now))
        except StoreError:
            due = None
        rest_ends = self._servers.rest_ends(now)
        if rest_ends is not None:
            due = rest_ends if due is None else min(due, rest_ends)
        with self._wake:
            if self._stopping.is_set():
                return
            if due is None or (self._timer is not None and self._timer <= due):
                self._wake.wait(self.config.idle_wait)
                return
            self._timer = due
            try:
                woken = self._wake.wait(min(self.config.idle_poll, max(0.005, due - now)))
            finally:
                if self._timer == due:
                    self._timer = None
            if woken:
                # Called to work before the head fell due: another idle worker keeps the timer.
                self._wake.notify(1)

    def _pause(self, seconds: float) -> None:
        with self._wake:
            if not self._stopping.is_set():
                self._wake.wait(seconds)

    def process(self, item: Item) -> Settle:
        """Send one claimed item; returns how it ended, for the outbox to record."""
        notifier = self.registry.snapshot.notifiers.get(item.uid)
        refused = self._not_mine(item, notifier)
        if refused is not None:
            return refused
        assert notifier is not None, "an item whose integration is gone is not deliverable"
        integration = notifier.integration
        now = self.clock()
        if integration.state == "stopped":
            # Claimed as its integration was stopped: back in its place, unattempted.
            return Settle(item.id, "pending", item.reason, item.next_attempt_at, attempted=False)
        if item.room_id not in notifier.tokens:
            return Settle(item.id, "cancelled", "room removed from the integration")
        token = notifier.tokens[item.room_id]
        target = RoomTarget(
            integration.hipchat.endpoint, item.room_id, token, integration.hipchat.ca_file
        )
        delay = self.client.delay_before_send(target, now)
        if delay > 0:
            return Settle(item.id, "pending", "paced: room or token rate limit", now + delay)
        server = server_of(target.endpoint)
        if not self._servers.take(server, now):
            # Since the claim, other workers filled this server's slots or it went down:
            # back in its place, or rooms put back would wait behind every other.
            return Settle(item.id, "pending", item.reason, item.next_attempt_at, attempted=False)
        try:
            settle = self._send(item, notifier, target, server, now)
        finally:
            free = self._servers.give_back(server)
            if free:
                self._local.freed = (server, free)
        return settle

    def _not_mine(self, item: Item, notifier: Notifier | None) -> Settle | None:
        """An item of an integration this set lacks: another live daemon's to send,
        back in its place unattempted (that daemon came in since the last look at
        the members, or they cannot be read now); else cancelled, as
        ``not_deliverable`` says."""
        if notifier is None:
            try:
                theirs = item.uid in self._elsewhere(True)
            except StoreError:
                theirs = True
            if theirs:
                return Settle(
                    item.id, "pending", item.reason, item.next_attempt_at, attempted=False
                )
        return not_deliverable(item, notifier.integration if notifier else None)

    def _send(
        self, item: Item, notifier: Notifier, target: RoomTarget, server: str, taken_at: float
    ) -> Settle:
        """Send ``item``, whose server slot was taken at ``taken_at``."""
        integration = notifier.integration
        # Looked at again and counted in one step: another worker may have taken the
        # budget's last request since this one looked.
        delay = self.client.pacing.reserve(target, self.clock())
        if delay > 0:
            paced = "paced: room or token rate limit"
            return Settle(item.id, "pending", paced, self.clock() + delay, attempted=False)
        message = render_message(
            item.event, integration, item.mentions, count=item.count, since=item.since
        )
        result = self.client.send(target, message, attempt=max(0, item.attempts - 1))
        done = self.clock()
        self.on_result(item, result, done)
        if result.ok:
            self.health.delivered(item.uid, item.room_id, done)
            self._servers.outcome(server, result, done, sent_at=taken_at, answered_at=done)
            # The answer spent the room's minute (or the token's budget): the room's
            # next item waits in the queue, for whichever daemon claims it.
            rest = self.client.delay_before_send(target, done)
            return Settle(item.id, "delivered", room_rest_until=done + rest if rest > 0 else None)
        if result.outcome == "retry":
            wait = result.retry_after if result.retry_after is not None else 1.0
            failures = self.health.failed(
                item.uid, item.room_id, done, result.reason, permanent=False
            )
            self._servers.outcome(server, result, done + wait, sent_at=taken_at, answered_at=done)
            log.log(
                _retry_level(failures),
                "%s room %s: %s; retrying in %.1f s (%d failed attempt(s) in a row)",
                integration.uid,
                item.room_id,
                result.reason,
                wait,
                failures,
            )
            return Settle(item.id, "pending", result.reason, done + wait)
        self.health.failed(item.uid, item.room_id, done, result.reason, permanent=True)
        log.error(
            "%s room %s: %s (dead-lettered; `syncd outbox retry %d` sends it again)",
            integration.uid,
            item.room_id,
            result.reason,
            item.id,
        )
        return Settle(item.id, "dead", result.reason)
