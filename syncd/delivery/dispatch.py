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

The workers are tasks on one event loop in one thread, not a thread each: a
thread per send in flight cost more CPU than the sends (a third of it went
to switching between threads that waited on HipChat), so thousands in flight
were out of reach on two cores. What a worker decides (pacing, server slots,
health) stays plain code run between its awaits; what may block stays off
the loop: the store calls run on a few threads, each worker's settle and
next claim handed in with the others asked for meanwhile, one commit per
lot; and a server name's DNS look-up.

On a store several daemons share, the daemons may run different sets for a
while (a rollout). An integration this daemon's set lacks but another live
member's has is that member's to deliver: it is passed over like a resting
server's, never claimed and cancelled here (``elsewhere``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from syncd.delivery.health import DEGRADED_AFTER, RoomHealthBook
from syncd.delivery.housekeeping import not_deliverable
from syncd.delivery.servers import (
    Resolve,
    ServerAddresses,
    Servers,
    server_of,
    system_resolve,
)
from syncd.hipchat.client import MAX_CONNECTIONS_PER_HOST, HipChatClient
from syncd.hipchat.render import render_message
from syncd.hipchat.streams import LoopClient
from syncd.hipchat.wire import DeliveryResult, RoomTarget
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.contract import DEFAULT_LEASE, Item, Settle, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Threads that make the store calls, off the event loop: the lots of settles and
# claims (so many at once at most), and the idle workers' looks at the next due time.
STORE_THREADS = 6
LOTS_AT_ONCE = 4
# A lot of settles and claims smaller than this waits so long for more: a
# commit costs about a millisecond of CPU whatever it holds, so at 1,000 rooms
# lots of 2 or 3 made the store half of the daemon's CPU.
LOT_ENOUGH = 32
LOT_GATHER = 0.005


# Sends one HipChat server may have in flight at most, however well it answers:
# at 150 ms an answer, 512 in flight carry 3,413 notifications/s, HipChat's 30
# messages a minute for 10,000 rooms spent within the first 15 s of the minute.
# A room's minute opens for all its rooms at once, so the most in flight is what
# sets how long its burst takes: at 1,000 rooms, 512 sent a minute's burst 10%
# faster than 384 (three minutes' worth, about 1% sooner).
DEFAULT_MAX_IN_FLIGHT = 512
# One server may hold half the workers, so that a slow or hostile one leaves the
# other half to the rest: the 512 of max_in_flight by default. A worker is a
# task on the event loop, a few KiB while it waits: at 1,000 rooms with answers
# 150 ms late, 1,024 workers delivered 1,498/s at 0.59 ms of CPU each, where 256
# (128 in flight) stopped at 769/s.
DEFAULT_WORKERS = 1024

# With no head due, the worker keeping the timer looks again after this long, so
# that a lost wake costs a delay, not a stall; the other idle workers sleep until
# woken. On a store of its own, every item comes from this daemon's ingest,
# which wakes workers for it.
IDLE_WAIT = 30.0
# On a store other daemons share, items they queue wake no worker here, and an
# item queued behind a room's head wakes none at all (the worker settling the
# head claims it): an idle daemon looks this often, or a second daemon took no
# part in a backlog the first was working through for up to IDLE_WAIT.
SHARED_IDLE_WAIT = 1.0


@dataclass(frozen=True)
class DispatchConfig:
    workers: int = DEFAULT_WORKERS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    lease: float = DEFAULT_LEASE
    idle_poll: float = 1.0  # how often the timer keeper, or a worker the outbox refused, looks
    idle_wait: float = IDLE_WAIT  # the timer keeper's look with no head due

    @property
    def per_server(self) -> int:
        """Sends one HipChat server may have in flight at most, whatever its limit
        has learnt: ``max_in_flight``, no more than half the workers (rounded up),
        and no more than the client keeps connections to one server (a send past
        them would open a connection, and close it after, each time)."""
        most = min(self.max_in_flight, (self.workers + 1) // 2, MAX_CONNECTIONS_PER_HOST)
        return max(1, most)


def _put_back(item: Item) -> Settle:
    """The item back in its place as it was, its claim not counted as an attempt."""
    return Settle(item.id, "pending", item.reason, item.next_attempt_at, attempted=False)


# How an idle worker's wait ended: its time ran out, it was woken for an item
# (an exact count of them), or woken as heads fell due together, to wake more.
Wake = Literal["expired", "woken", "spread"]


@dataclass
class _Look:
    """A look at the next due time under way, for the workers going idle meanwhile."""

    begun: int  # the lots the store had answered as it began
    answer: asyncio.Future[float | None]
    woken: bool = False  # a wake found too few workers asleep while it ran


def _expire(waiter: asyncio.Future[Wake]) -> None:
    if not waiter.done():
        waiter.set_result("expired")


def _due_from(settled: Settle | None) -> float | None:
    """The soonest a room head may fall due because of ``settled``: its own retry,
    or the room's rest after it; None when it makes no head due later than now
    (a claim in the same call takes a head due now)."""
    if settled is None:
        return None
    if settled.state == "pending":
        return settled.retry_at if settled.retry_at is not None else 0.0
    return settled.room_rest_until


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
        resolve: Resolve = system_resolve,
    ) -> None:
        """``elsewhere``: the integrations other live daemons know (read now when
        asked with True), for a shared store; none for a store of its own.
        ``resolve``: a server name's addresses (the system's look-up)."""
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
        self._sender = LoopClient(client)
        self._store_calls = ThreadPoolExecutor(
            max_workers=STORE_THREADS, thread_name_prefix="syncd-store"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = threading.Event()
        self._stopping = threading.Event()
        # Idle workers, each waiting on its future; touched on the loop only.
        self._waiting: deque[asyncio.Future[Wake]] = deque()
        # Workers on their way to a free slot: woken and not yet running, or
        # asking the store for a head (on the loop only).
        self._heading = 0
        self._servers = Servers(self.config.per_server, ServerAddresses(resolve))
        self._timer: float | None = None  # the due time an idle worker sleeps until
        # Lots the store has answered (on the loop only), and the look at the next
        # due time under way (see ``_Look``).
        self._lots_answered = 0
        self._look: _Look | None = None
        self._stopped = registry.snapshot.stopped  # as the last set published said
        registry.add_watcher(self.on_published)
        self._failing = False
        # Settles and claims the workers asked for, and a flag for the task serving them.
        self._asks: list[tuple[Settle | None, bool, asyncio.Future[list[Item]]]] = []
        self._asked = asyncio.Event()
        self._targets: dict[tuple[str, str], RoomTarget] = {}
        self._targets_of: Snapshot | None = None
        self._passed_over_all: tuple[Snapshot | None, frozenset[str], bool] = (
            None,
            frozenset(),
            False,
        )

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_until_complete, args=(self._main(),), name="syncd-send", daemon=True
        )
        self._thread.start()
        self._started.wait()

    async def _main(self) -> None:
        """The workers, until a stop; then the kept connections are closed."""
        self._tasks = [
            asyncio.create_task(self._work(), name=f"syncd-send-{n}")
            for n in range(self.config.workers)
        ]
        serving = asyncio.create_task(self._serve_claims(), name="syncd-claims")
        self._started.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            serving.cancel()
            self._sender.close()

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

    def _all_passed_over(self, snapshot: Snapshot, skip: frozenset[str]) -> bool:
        """Whether every integration of the set is passed over (its one server full,
        say): then a claim, or a look for the next due head, would walk every
        room's head to find nothing, 10,000 of them at 10,000 rooms. A freed slot
        wakes the workers again."""
        if not skip or len(skip) < len(snapshot.notifiers):
            return False
        of, skipped, every = self._passed_over_all
        if of is not snapshot or skipped is not skip:
            every = skip.issuperset(snapshot.notifiers)
            self._passed_over_all = (snapshot, skip, every)
        return every

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
        and no more than could start a send now; when there were more, each worker
        that claims after its wait wakes two more, so the items to a server whose
        limit grows are taken in a few rounds. Any thread may call it."""
        spread = False
        if count is not None:
            room = self._servers.room(self.clock())
            # More new heads than sends may start: each worker that claims one wakes
            # more, as the server's limit grows.
            spread = count > room
            count = min(count, room)
        loop = self._loop
        if loop is None:
            return
        if self._thread is threading.current_thread():
            self._notify(count, spread)
            return
        with contextlib.suppress(RuntimeError):  # the loop has ended: nothing waits
            loop.call_soon_threadsafe(self._notify, count, spread)

    def _notify(self, count: int | None, spread: bool = False) -> None:
        waiting = self._waiting
        while waiting and (count is None or count > 0):
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result("spread" if spread else "woken")
                self._heading += 1
                if count is not None:
                    count -= 1
        if (count is None or count > 0) and self._look is not None:
            self._look.woken = True

    async def _sleep(self, seconds: float | None) -> Wake:
        """Wait until woken or ``seconds`` passed (None: until woken)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Wake] = loop.create_future()
        self._waiting.append(waiter)
        timer = loop.call_later(seconds, _expire, waiter) if seconds is not None else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter.cancelled() or waiter.result() == "expired":
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            else:
                self._heading -= 1

    async def _in_store(self, call: Callable[..., T], *args: Any) -> T:
        """Run a store call off the loop: it may wait on a disk or a database."""
        return await asyncio.get_running_loop().run_in_executor(self._store_calls, call, *args)

    def server_limit(self, endpoint: str) -> int:
        """Sends the HipChat server of ``endpoint`` may have in flight now."""
        return self._servers.limit(server_of(endpoint))

    @property
    def alive(self) -> bool:
        thread = self._thread
        return (
            thread is not None
            and thread.is_alive()
            and bool(self._tasks)
            and not any(task.done() for task in self._tasks)
        )

    def stop(self, timeout: float) -> bool:
        """Stop claiming; wait up to ``timeout`` for sends in flight. True if all ended."""
        self._stopping.set()
        self.wake()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
        ended = thread is None or not thread.is_alive()
        if ended:
            self._store_calls.shutdown(wait=False)
        return ended

    async def _work(self) -> None:
        settled: Settle | None = None
        freed: tuple[str, int] | None = None
        spread = turned_away = False
        while not self._stopping.is_set():
            # A worker its server turned away (full since the claim) puts the head
            # back without claiming another: it would only hand that back too, a
            # claim and a settle each, as long as the server stays full. It waits
            # to be woken, as a freed slot of a full server wakes one.
            items = await self._claim(settled, want=not turned_away)
            if items is None:
                continue
            answered = self._lots_answered
            due = None if turned_away else _due_from(settled)
            settled, turned_away = None, False
            if freed is not None:
                self._pass_on_freed_slot(freed, items)
                freed = None
            if not items:
                spread = await self._idle(due, answered)
                continue
            if spread:
                self._spread(items[0])
                spread = False
            settled, freed, turned_away = await self._deliver(items[0])
        if settled is not None:
            try:
                await self._in_store(self.store.settle, settled)
            except StoreError as exc:
                log.error("outbox item %d: its end was not recorded (%s)", settled.item_id, exc)

    def _spread(self, claimed: Item) -> None:
        """Heads fell due together (a minute's window reopening for a thousand rooms):
        two more look, and each that finds one two more, so the rooms are taken in
        a few rounds, not one worker more per claim. Only for the free slots no
        worker woken or asking for a head is on its way to: with items coming in
        as fast as they went out (10,000 rooms), two more at every such claim were
        200,000 wakes a run, half of them claiming nothing. The ``claimed`` head's
        server counts with its first limit if nothing was sent to it yet: counted
        as one slot, a backlog for a server not yet sent to (a daemon's start)
        was sent by two workers, one after another."""
        room = self._servers.room(self.clock(), self._server_of(claimed))
        self._notify(min(2, room - self._heading), True)

    def _server_of(self, claimed: Item) -> str | None:
        """The HipChat server a claimed head goes to, as the set in use says (None:
        its integration is gone)."""
        notifier = self.registry.snapshot.notifiers.get(claimed.uid)
        return server_of(notifier.integration.hipchat.endpoint) if notifier else None

    async def _deliver(self, item: Item) -> tuple[Settle | None, tuple[str, int] | None, bool]:
        """How the send of ``item`` ended (None: it failed unexpectedly, and the
        lease brings it back), the slots of a full server it freed, and whether
        its server turned it away (full since the claim)."""
        try:
            return await self._process(item)
        except Exception:
            log.exception("delivery of outbox item %d failed", item.id)
            return None, None, False

    def _pass_on_freed_slot(self, freed: tuple[str, int], claimed: list[Item]) -> None:
        """This worker freed a slot of a full server (and its limit may have grown
        meanwhile): the slots its own claim did not take go to as many idle
        workers (a wake per free slot, not one per send)."""
        server, free = freed
        if claimed and self._server_of(claimed[0]) == server:
            free -= 1
        # Workers woken already or asking for a head are on their way to the free
        # slots: only those none heads for wake one. Each answer of a server that
        # had been full woke a worker per free slot, the same slots again and
        # again: the whole pool, claiming heads only to hand them back.
        free -= self._heading
        if free > 0:
            self._notify(free)

    async def _claim(self, settled: Settle | None, want: bool = True) -> list[Item] | None:
        """Settle and claim (or only settle, unless ``want``); None when the outbox
        cannot be written (after a pause)."""
        waiter: asyncio.Future[list[Item]] = asyncio.get_running_loop().create_future()
        self._asks.append((settled, want, waiter))
        self._asked.set()
        try:
            items = await self._answered(waiter, want)
        except Exception as exc:
            # A full disk fails every try alike: say so once, then wait between tries.
            if not self._failing:
                log.error(
                    "the outbox cannot be written (%s); retrying every %.0f s",
                    exc,
                    self.config.idle_poll,
                )
            self._failing = True
            await self._sleep(self.config.idle_poll)
            return None
        if self._failing:
            log.info("the outbox is writable again")
            self._failing = False
        return items

    async def _answered(self, waiter: asyncio.Future[list[Item]], want: bool) -> list[Item]:
        """The answer to an ask, counted meanwhile if it wants a head."""
        self._heading += want
        try:
            return await waiter
        finally:
            self._heading -= want

    async def _serve_claims(self) -> None:
        """The workers' settles and claims, handed to the store in lots: a lot is
        what was asked for while the last ones were served (waiting a few
        milliseconds for more when it is small), so a busy outbox commits many
        at once. A few lots may be served at once: a shared store answers each
        call over the network, and its connections serve them side by side."""
        serving: set[asyncio.Task[None]] = set()
        while True:
            await self._asked.wait()
            if len(self._asks) < LOT_ENOUGH:
                await asyncio.sleep(LOT_GATHER)
            while len(serving) >= LOTS_AT_ONCE:
                await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
            self._asked.clear()
            asks, self._asks = self._asks, []
            if asks:
                lot = asyncio.create_task(self._serve_lot(asks))
                serving.add(lot)
                lot.add_done_callback(serving.discard)

    async def _serve_lot(
        self, asks: list[tuple[Settle | None, bool, asyncio.Future[list[Item]]]]
    ) -> None:
        claimed: Sequence[list[Item] | Exception]
        try:
            claimed = await self._settle_and_claim([(settled, want) for settled, want, _ in asks])
        except Exception as exc:
            claimed = [exc] * len(asks)
        self._lots_answered += 1
        for (_, _, waiter), items in zip(asks, claimed, strict=True):
            if waiter.done():
                continue
            if isinstance(items, Exception):
                waiter.set_exception(items)
            else:
                waiter.set_result(items)

    async def _settle_and_claim(
        self, asks: list[tuple[Settle | None, bool]]
    ) -> Sequence[list[Item] | Exception]:
        """A head for each call that wants one, unless every integration is passed
        over; a call that found none tells the servers that nothing waits for
        their free slots."""
        snapshot = self.registry.snapshot
        skip = self._passed_over(snapshot, self.clock())
        wanted = 0 if self._all_passed_over(snapshot, skip) else 1
        calls = [(settled, wanted if want else 0) for settled, want in asks]
        claimed = await self._in_store(
            self.store.settle_and_claim_all, calls, self.config.lease, skip
        )
        if wanted and any(
            items == [] for (_, want), items in zip(asks, claimed, strict=True) if want
        ):
            self._servers.drained()
        return claimed

    async def _idle(self, settled_due: float | None, answered: int) -> bool:
        """Sleep until the next head falls due, or be woken; True when heads fell
        due (or more workers were called), so that a claim wakes two more.

        One idle worker keeps the timer for the next due head; the others wait
        to be woken, so a head falling due wakes one worker, not the whole pool.
        While one keeps it, a worker whose settle (falling due at
        ``settled_due``) made no head due before the timer does not look for the
        next due head: at 1,000 rooms those looks were more than one per
        notification, each a call to the store. ``answered``: the lots the store
        had answered when this worker's was (see ``_looked_up_due``).
        """
        now = self.clock()
        timer = self._timer
        if timer is not None and (settled_due is None or settled_due >= timer):
            return await self._sleep(None) != "woken"
        due = await self._looked_up_due(now, answered)
        if self._stopping.is_set():
            return False
        if self._timer is not None and (due is None or self._timer <= due):
            return await self._sleep(None) != "woken"
        wake = await self._keep_timer(now, due)
        if wake != "expired":
            # Called to work before the head fell due: another idle worker keeps the timer.
            self._notify(1)
        return wake != "woken"

    async def _keep_timer(self, now: float, due: float | None) -> Wake:
        """Sleep as the one idle worker with a timer: until ``due``, looking again
        every ``idle_poll`` for what another daemon queued. With nothing due, the
        keeper looks again after ``idle_wait``, for all: a lost wake costs a delay,
        not a stall, and 1,024 idle workers are not 34 looks a second, as each
        waking on its own was."""
        if due is None:
            due, wait = now + self.config.idle_wait, self.config.idle_wait
        else:
            wait = min(self.config.idle_poll, max(0.005, due - now))
        self._timer = due
        try:
            return await self._sleep(wait)
        finally:
            if self._timer == due:
                self._timer = None

    async def _looked_up_due(self, now: float, answered: int) -> float | None:
        """The next due time, from a look under way if it began once this worker's
        lot (the ``answered``-th) was answered, or else from a look of its own.

        Workers that go idle together (a wait between two keepers of the timer,
        with rooms resting) each asked the store: at 10,000 rooms 0.8 looks per
        notification, a tenth of the event loop's time spent handing them to the
        store's threads. A look that began before this worker's settle was
        recorded may not have seen it, and a retry it set would then wait for
        the keeper's next look, or for the next wake with nothing else due."""
        look = self._look
        if look is not None and look.begun >= answered:
            return await asyncio.shield(look.answer)
        look = self._look = _Look(self._lots_answered, asyncio.get_running_loop().create_future())
        # What the others are told if the look fails (or a stop ends it): claim
        # again now, rather than be left with nothing to go on.
        due: float | None = now
        try:
            due = await self._next_due(now)
        finally:
            if self._look is look:
                self._look = None
            if look.woken:
                # A wake came while it ran and found too few asleep to take it (new
                # items, say): what the look read may be from before them.
                due = now
            look.answer.set_result(due)
        return due

    async def _next_due(self, now: float) -> float | None:
        """When the next head not passed over falls due, or a resting server's rest ends."""
        snapshot = self.registry.snapshot
        skip = self._passed_over(snapshot, now)
        due = None
        if not self._all_passed_over(snapshot, skip):
            with contextlib.suppress(StoreError):
                due = await self._in_store(self.store.next_due, skip)
        rest_ends = self._servers.rest_ends(now)
        if rest_ends is not None:
            due = rest_ends if due is None else min(due, rest_ends)
        if self._servers.full():
            # A full server's heads fall due as a slot frees, at a time the store
            # cannot tell: the freed slots wake workers for them, but a head those
            # find not yet due (paced) would wait for the timer, idle_wait long
            # with nothing else due.
            soon = now + self.config.idle_poll
            due = soon if due is None else min(due, soon)
        return due

    async def process(self, item: Item) -> Settle:
        """Send one claimed item; returns how it ended, for the outbox to record."""
        settle, _freed, _turned_away = await self._process(item)
        return settle

    async def _process(self, item: Item) -> tuple[Settle, tuple[str, int] | None, bool]:
        """How the send of ``item`` ended, the slots of a full server it freed, and
        whether its server turned it away (full since the claim)."""
        snapshot = self.registry.snapshot
        notifier = snapshot.notifiers.get(item.uid)
        refused = await self._not_mine(item, notifier)
        if refused is not None:
            return refused, None, False
        assert notifier is not None, "an item whose integration is gone is not deliverable"
        integration = notifier.integration
        now = self.clock()
        if integration.state == "stopped":
            # Claimed as its integration was stopped: back in its place, unattempted.
            return _put_back(item), None, False
        if item.room_id not in notifier.tokens:
            return Settle(item.id, "cancelled", "room removed from the integration"), None, False
        target = self._target(snapshot, notifier, item.room_id)
        delay = self.client.delay_before_send(target, now)
        if delay > 0:
            paced = Settle(item.id, "pending", "paced: room or token rate limit", now + delay)
            return paced, None, False
        server = server_of(target.endpoint)
        if not self._servers.addresses.fresh(server, now):
            # A name's addresses are looked up off the loop: DNS may take seconds.
            await self._in_store(self._servers.addresses.key, server, now)
        if not self._servers.take(server, now):
            # Since the claim, other workers filled this server's slots or it went down:
            # back in its place, or rooms put back would wait behind every other.
            return _put_back(item), None, True
        try:
            settle = await self._send(item, notifier, target, server, now)
        finally:
            free = self._servers.give_back(server)
        return settle, ((server, free) if free else None), False

    def _target(self, snapshot: Snapshot, notifier: Notifier, room_id: str) -> RoomTarget:
        """The room's target in ``snapshot`` (which holds ``notifier``), kept while that
        set is the one sent from: a target works out its URL and its token's digest
        once, not at every send."""
        if self._targets_of is not snapshot:
            self._targets, self._targets_of = {}, snapshot
        key = (notifier.integration.uid, room_id)
        target = self._targets.get(key)
        if target is None:
            hipchat = notifier.integration.hipchat
            target = RoomTarget(
                hipchat.endpoint, room_id, notifier.tokens[room_id], hipchat.ca_file
            )
            self._targets[key] = target
        return target

    async def _not_mine(self, item: Item, notifier: Notifier | None) -> Settle | None:
        """An item of an integration this set lacks: another live daemon's to send,
        back in its place unattempted (that daemon came in since the last look at
        the members, or they cannot be read now); else cancelled, as
        ``not_deliverable`` says."""
        if notifier is None:
            try:
                theirs = item.uid in await self._in_store(self._elsewhere, True)
            except StoreError:
                theirs = True
            if theirs:
                return _put_back(item)
        return not_deliverable(item, notifier.integration if notifier else None)

    async def _send(
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
        result = await self._sender.send(target, message, attempt=max(0, item.attempts - 1))
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
