"""Events in: validated, decided by ``routing``, and written to the store in
one batch, so an event acknowledged to its sender is never lost, and one that
was not acknowledged left no trace.

What one request may cost is bounded before anything is written:

- **Refused for what parsing it costs.** Each event's part of the count is
  bounded from its project's integrations, counted once per published set:
  exactly, for an integration without actions or frequency (a notification
  per room when its trigger takes the event), and at most its rooms for the
  others. A request whose events certainly store more than
  ``max_notifications`` is refused before any event is routed; one that only
  might is routed, and refused only if routing goes over.
- **Decided, then written.** Routing is pure, so a whole request is routed
  first, on reads of the store plus what its own earlier events decided; only
  then is its notification count known, and a request over
  ``max_notifications`` is refused with nothing stored. The routing runs
  outside the store's write lock, on a read view; inside the batch only the
  values it read are read again (a fingerprint's "known", each window) and,
  if another request changed one meanwhile, the request is routed again
  there. So one request holds the writer for its writes, not for its
  events times its integrations.
- **A bounded queue per project.** At most ``per_project`` requests touching
  one project are taken in at once; one more is refused (:class:`Busy`, a 429
  with ``Retry-After``) rather than queued, so a project's flood holds neither
  the writer nor the HTTP threads that other projects' events need.
- **Nothing for nobody.** An event whose project no active integration serves
  stores nothing, not even its fingerprint; a disabled integration is not
  looked at (its actions are not run).
- **One integration's failure is its own** (see ``routing``): it is skipped
  for the event, with a reason, and logged at most once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from syncd.config.model import Integration
from syncd.events.muting import Mutes
from syncd.events.routing import (
    DISABLED,
    Judged,
    Routing,
    Why,
    failure_text,
    judge_one,
    route_event,
    route_flush,
    window_keys,
)
from syncd.registry import Registry, Snapshot
from syncd.store.contract import Batch, NewItem, Reads, Store, Window, WindowUpdate

log = logging.getLogger("syncd")

MAX_NOTIFICATIONS = 10_000
PER_PROJECT = 2
# A request's answer lists each event's reasons, one line per event and
# integration of its project, only while they number this many or fewer;
# beyond, the answer counts reasons per integration instead.
DETAIL_LINES = 100
# A failing integration is logged at most this often (seconds), with a count.
FAILURE_LOG_INTERVAL = 60.0
# Judgements a replay keeps per project and published set, by the event's
# attributes (``Ingest(judged_sets=...)``; a daemon keeps none, and judges each
# event as it comes): a project's events carry a few sets of them, and an
# action's regex then runs once per set rather than once per event. Past this
# many sets, or for attributes longer than this (names and values), events are
# judged afresh: what a sender can make a project keep stays small.
JUDGED_SETS = 64
JUDGED_CHARS = 512


class TooMany(Exception):
    """A request would store more than the limit: nothing of it was stored.
    ``count`` is exact, or when not ``exact`` what those events store at least
    (refused before routing, where actions or windows could only add more)."""

    def __init__(self, limit: int, count: int, events: int, *, exact: bool = True) -> None:
        self.limit, self.count, self.events, self.exact = limit, count, events, exact
        least = "" if exact else "at least "
        super().__init__(
            f"over the limit of {limit:,} notifications per request: the first "
            f"{events:,} event(s) alone would store {least}{count:,} (notifications "
            "queued, and throttle windows left holding events); nothing was stored. "
            "Send fewer events per request (the operator sets the limit with "
            "--max-notifications-per-request)"
        )


class Busy(Exception):
    """A project already has its share of requests being taken in."""

    def __init__(self, project: str, limit: int) -> None:
        self.project, self.limit = project, limit
        super().__init__(
            f"project {project!r} already has {limit} request(s) being taken in; retry shortly"
        )


@dataclass(frozen=True)
class EventResult:
    """One event's notifications, and per integration of its project, why."""

    id: str
    queued: int
    why: tuple[str, ...]
    whys: tuple[Why, ...] = ()  # instead of ``why``, for a caller that asked no notes


@dataclass(frozen=True)
class Tally:
    """One integration's part in a request: notifications it queued, and how many
    events each reason covered."""

    notifications: int
    events: Mapping[str, int]


@dataclass(frozen=True)
class Accepted:
    """What a stored request caused. ``events`` holds each event's reasons only
    when ``detailed`` (see ``DETAIL_LINES``); ``integrations`` always."""

    ids: tuple[str, ...]
    notifications: int
    events: tuple[EventResult, ...] = ()
    integrations: Mapping[str, Tally] = field(default_factory=dict)
    unserved: int = 0
    detailed: bool = True


@dataclass(frozen=True)
class _Fanout:
    """What one event of a project adds to a request's count (notifications
    queued, windows left holding events), from its integrations alone. ``sure``:
    the rooms of those without actions or frequency, whose part is fixed;
    ``more``: at most what the others add, their rooms or a window holding the
    event. Split by trigger: a group trigger takes only a new group's events."""

    trace_sure: int = 0
    group_sure: int = 0
    trace_more: int = 0
    group_more: int = 0

    @classmethod
    def of(cls, active: Sequence[Integration]) -> _Fanout:
        def part(trace: bool, fixed: bool) -> int:
            return sum(
                len(i.rooms) if fixed else max(1, len(i.rooms))
                for i in active
                if (i.trigger.event == "trace") == trace
                and (not i.actions and not i.trigger.frequency) == fixed
            )

        return cls(part(True, True), part(False, True), part(True, False), part(False, False))

    @property
    def groups(self) -> bool:
        """Whether an event's part depends on whether it is a new group."""
        return bool(self.group_sure or self.group_more)

    def least(self, new_group: bool | None) -> int:
        """Certainly added by an event (``new_group`` None: not known yet)."""
        return self.trace_sure + (self.group_sure if new_group else 0)

    def most(self, new_group: bool | None) -> int:
        """At most added by an event."""
        groups = 0 if new_group is False else self.group_sure + self.group_more
        return self.trace_sure + self.trace_more + groups


@dataclass(frozen=True)
class _Project:
    """A project's integrations. ``judged`` holds, for each active one without
    actions, its judgement, the same for every event: judging is then free.
    Judging is pure (actions and attributes alone decide), so ``verdicts`` keeps
    the judgements of the attributes seen, for the set's life."""

    everyone: tuple[Integration, ...]  # in the set's order, disabled ones too
    active: tuple[Integration, ...]  # enabled or stopped: those that are routed
    judged: tuple[Judged | None, ...] = ()
    fanout: _Fanout = _Fanout()
    keep: int = 0  # at most this many sets of attributes in ``verdicts``
    verdicts: dict[tuple[tuple[str, Any], ...], tuple[Judged, ...]] = field(
        default_factory=dict, compare=False
    )

    def judge(self, event: Mapping[str, Any]) -> tuple[Judged, ...]:
        if None not in self.judged:
            return cast(tuple[Judged, ...], self.judged)
        attributes = event.get("attributes") or {}
        key = _attributes_key(attributes) if self.keep else None
        if key is None:
            return self._judge(attributes)
        found = self.verdicts.get(key)
        if found is None:
            found = self._judge(attributes)
            if len(self.verdicts) < self.keep:
                self.verdicts[key] = found
        return found

    def _judge(self, attributes: Mapping[str, Any]) -> tuple[Judged, ...]:
        return tuple(
            ready if ready is not None else judge_one(integration, attributes)
            for integration, ready in zip(self.active, self.judged, strict=True)
        )


def _attributes_key(attributes: Mapping[str, Any]) -> tuple[tuple[str, Any], ...] | None:
    """The attributes as a key of ``_Project.verdicts`` (in their order, which the
    actions' search follows), or None for ones too long to keep."""
    try:
        size = sum(map(len, attributes)) + sum(map(len, attributes.values()))
        key = tuple(attributes.items())
        hash(key)
    except TypeError:  # a value that is no string: judged, not kept
        return None
    return key if size <= JUDGED_CHARS else None


_NOBODY = _Project((), ())


def by_project(snapshot: Snapshot, judged_sets: int = 0) -> dict[str, _Project]:
    """Each project's integrations, built once per published set; each keeps up to
    ``judged_sets`` judgements (see ``JUDGED_SETS``)."""
    everyone: dict[str, list[Integration]] = {}
    for notifier in snapshot.notifiers.values():
        everyone.setdefault(notifier.integration.project, []).append(notifier.integration)
    table = {}
    for project, found in everyone.items():
        active = tuple(i for i in found if i.state != "disabled")
        judged = tuple(None if i.actions else Judged(i) for i in active)
        fanout = _Fanout.of(active)
        table[project] = _Project(tuple(found), active, judged, fanout, judged_sets)
    return table


class _Summary:
    """Reasons counted per integration, for an answer of bounded size, and the
    integrations that failed, for the log: folded in event by event, so a
    request's memory is its integrations', not its events times those."""

    def __init__(self) -> None:
        self.notifications: dict[str, int] = {}
        self.reasons: dict[str, dict[str, int]] = {}
        self.unserved = 0
        self.failed: dict[str, tuple[int, str]] = {}

    def add(self, routing: Routing) -> None:
        self.unserved += not routing.whys
        for why in routing.whys:
            counts = self.reasons.setdefault(why.uid, {})
            counts[why.reason] = counts.get(why.reason, 0) + 1
            self.notifications.setdefault(why.uid, 0)
            if why.failed is not None:
                self.failed[why.uid] = (self.failed.get(why.uid, (0, ""))[0] + 1, why.failed)
        for item in routing.items:
            self.notifications[item.uid] += 1

    def tallies(self) -> dict[str, Tally]:
        return {uid: Tally(self.notifications[uid], counts) for uid, counts in self.reasons.items()}


class _Plan:
    """A request routed in order, against what the store holds plus what its own
    earlier events decided; the values read are kept, to be checked again."""

    def __init__(self, reads: Reads, now: float, limit: int, detailed: bool, mutes: Mutes) -> None:
        self.reads = reads
        self.now = now
        self.mutes = mutes
        self.muted: dict[str, int] = {}  # notifications a mute held back, per integration
        self.limit = limit
        self.detailed = detailed
        self.summary = _Summary()
        self.kept: list[Routing] = []  # each event's routing, when the answer details them
        self.known: dict[tuple[str, str], bool] = {}
        self.read_windows: dict[str, Window] = {}
        self.seen: dict[tuple[str, str], None] = {}
        self.windows: dict[str, WindowUpdate] = {}
        self.items: list[NewItem] = []
        self.claimable = 0  # of the items written, those claimable at once
        self.holding = 0
        self.new_groups: dict[int, bool] = {}  # by the event's index in the request

    def refuse_early(self, request: _Request) -> None:
        """Raise :class:`TooMany` before any event is routed when the request's
        events certainly store more than the limit, naming the first that takes
        it over; exactly when every one of those adds a fixed part. Whether an
        event is a new group is read only for a project with a group trigger,
        and routing then uses what was read."""
        most = 0
        for event, project in zip(request.events, request.projects, strict=True):
            flag = event.get("new_group")
            most += project.fanout.most(None if flag is None else bool(flag))
        if most <= self.limit:
            return
        least, exact = 0, True
        for index, (event, project) in enumerate(
            zip(request.events, request.projects, strict=True)
        ):
            fanout = project.fanout
            new_group = self.new_group(index, event) if fanout.groups else None
            part = fanout.least(new_group)
            least, exact = least + part, exact and part == fanout.most(new_group)
            if least > self.limit:
                raise TooMany(self.limit, least, index + 1, exact=exact)

    def new_group(self, index: int, event: Mapping[str, Any]) -> bool:
        """Whether the event opens a new error group: as its sender says, else as
        the store and the request's earlier events say. Read once per event."""
        found = self.new_groups.get(index)
        if found is None:
            seen_first = self._first(event["project"], event["fingerprint"])
            flagged = event.get("new_group")
            found = self.new_groups[index] = seen_first if flagged is None else bool(flagged)
        return found

    def route(self, index: int, event: Mapping[str, Any], judged: Sequence[Judged]) -> Routing:
        fingerprint = event["fingerprint"]
        new_group = self.new_group(index, event)
        windows = {key: self._window(key) for key in window_keys(judged, fingerprint, new_group)}
        routing = route_event(
            event, judged, new_group=new_group, windows=windows, now=self.now, mutes=self.mutes
        )
        for update in routing.windows:
            self._keep(update)
        self.items.extend(routing.items)
        if routing.muted:
            _count_muted(self.muted, routing)
        return routing

    def account(self, routing: Routing) -> None:
        self.summary.add(routing)
        if self.detailed:
            self.kept.append(routing)

    def check(self, events: int) -> None:
        count = len(self.items) + self.holding
        if count > self.limit:
            raise TooMany(self.limit, count, events)

    def _first(self, project: str, fingerprint: str) -> bool:
        key = (project, fingerprint)
        if key in self.seen:
            return False
        self.seen[key] = None
        known = self.known.get(key)
        if known is None:
            known = self.known[key] = self.reads.known(project, fingerprint)
        return not known

    def _window(self, key: str) -> Window:
        if key in self.windows:
            return self.windows[key].window
        if key not in self.read_windows:
            self.read_windows[key] = self.reads.window(key)
        return self.read_windows[key]

    def _keep(self, update: WindowUpdate) -> None:
        """The window's last state in this request; one that kept the stored event
        keeps the one an earlier event of the request stored."""
        previous = self.windows.get(update.key)
        if previous is not None:
            self.holding -= previous.window.pending > 0
            if update.last_event is None:
                update = replace(update, last_event=previous.last_event)
        self.holding += update.window.pending > 0
        self.windows[update.key] = update

    def holds(self, reads: Reads) -> bool:
        """Whether the store still says what this plan read."""
        return all(reads.known(*key) == known for key, known in self.known.items()) and all(
            reads.window(key) == window for key, window in self.read_windows.items()
        )

    def write(self, batch: Batch, now: float) -> None:
        for project, fingerprint in self.seen:
            batch.remember(project, fingerprint, now)
        for update in self.windows.values():
            batch.save_window(update)
        if self.items:
            batch.enqueue(self.items, now)
            self.claimable = batch.new_heads


@dataclass(frozen=True)
class _Request:
    """A request's events and ids, each event's project, and how its answer is
    shaped. Events are judged as routing reaches them, once each: a request
    refused by routing at its eleventh event has judged eleven, one refused
    before routing none."""

    events: tuple[Mapping[str, Any], ...]
    ids: tuple[str, ...]
    projects: tuple[_Project, ...]
    detailed: bool
    judged: dict[int, tuple[Judged, ...]] = field(default_factory=dict)

    def judgement(self, index: int) -> tuple[Judged, ...]:
        found = self.judged.get(index)
        if found is None:
            found = self.judged[index] = self.projects[index].judge(self.events[index])
        return found


class _Gate:
    """How many requests per project are being taken in; one over the share is refused.
    :meth:`enter` and :meth:`leave` rather than a context manager: a request of
    one event pays for no generator."""

    def __init__(self, share: int) -> None:
        self.share = share
        self._lock = threading.Lock()
        self._inside: dict[str, int] = {}

    def enter(self, projects: Sequence[str]) -> None:
        """Count the request in for each of its projects, or raise :class:`Busy`."""
        inside = self._inside
        with self._lock:
            for project in projects:
                if inside.get(project, 0) >= self.share:
                    raise Busy(project, self.share)
            for project in projects:
                inside[project] = inside.get(project, 0) + 1

    def leave(self, projects: Sequence[str]) -> None:
        inside = self._inside
        with self._lock:
            for project in projects:
                left = inside[project] - 1
                if left:
                    inside[project] = left
                else:
                    del inside[project]


class Ingest:
    """Validated events in, stored notifications out: read, decide, write, in one batch."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
        on_enqueued: Callable[[int], None] = lambda _count: None,
        max_notifications: int = MAX_NOTIFICATIONS,
        per_project: int = PER_PROJECT,
        on_muted: Callable[[Mapping[str, int]], None] = lambda _counts: None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        judged_sets: int = 0,
    ) -> None:
        """``on_enqueued``: told how many of the stored notifications head their room
        (claimable at once), to wake as many workers; one queued behind another
        of its room wakes no one. ``on_muted``: told, per integration, how many
        notifications (one per room) a mute held back, after they would have been
        stored. ``new_id``: each event's id; random in a daemon, where ids from
        several processes and restarts meet in one outbox, while a replay on a
        private store may count.
        ``judged_sets``: judgements kept per project (see ``JUDGED_SETS``); a
        replay's events repeat a few sets of attributes a million times."""
        self.store = store
        self.registry = registry
        self.clock = clock
        self.on_enqueued = on_enqueued
        self.on_muted = on_muted
        self.max_notifications = max_notifications
        self._new_id = new_id
        self._judged_sets = judged_sets
        self._gate = _Gate(per_project)
        self._projects: tuple[Snapshot, dict[str, _Project], Mutes] | None = None
        self._logged: dict[str, float] = {}
        self._log_lock = threading.Lock()

    def submit(self, events: Sequence[Mapping[str, Any]], *, notes: bool = True) -> Accepted:
        """Store what the events cause; returns only after the commit.

        ``notes`` False: a detailed answer gives each event's reasons as
        :class:`Why` (``EventResult.whys``) instead of the sender's lines
        (``why``), which a caller that only sorts them need not have written.

        Raises :class:`Busy` when a project of theirs has its share of requests
        in, :class:`TooMany` over the notification limit (both before anything is
        written), and the store's errors.
        """
        if len(events) == 1:
            projects = [str(events[0]["project"])]
        else:
            projects = sorted({str(event["project"]) for event in events})
        self._gate.enter(projects)
        try:
            request = self._prepare(events)
            plan = self._route(request)
        finally:
            self._gate.leave(projects)
        self._log_failures(plan.summary.failed)
        if plan.claimable:
            self.on_enqueued(plan.claimable)
        if plan.muted:
            self.on_muted(plan.muted)
        return _accepted(request, plan, notes)

    def _prepare(self, events: Sequence[Mapping[str, Any]]) -> _Request:
        table = self._table()
        projects = tuple([table.get(event["project"], _NOBODY) for event in events])
        lines = 0
        for project in projects:
            lines += len(project.everyone) or 1
        new_id = self._new_id
        ids = tuple([new_id() for _ in events])
        return _Request(
            tuple([{**event, "id": event_id} for event, event_id in zip(events, ids, strict=True)]),
            ids,
            projects,
            lines <= DETAIL_LINES,
        )

    def _route(self, request: _Request) -> _Plan:
        """Routed on a read view, checked and written in one batch; routed again in
        the batch if another request changed what the plan read."""
        now = self.clock()
        with self.store.view() as view:
            plan = self._plan(view, request, now)
        with self.store.batch() as batch:
            if not plan.holds(batch):
                plan = self._plan(batch, request, now)
            plan.write(batch, now)
        return plan

    def _plan(self, reads: Reads, request: _Request, now: float) -> _Plan:
        plan = _Plan(reads, now, self.max_notifications, request.detailed, self._mutes())
        plan.refuse_early(request)
        for index, event in enumerate(request.events):
            if request.projects[index].active:
                plan.account(plan.route(index, event, request.judgement(index)))
                plan.check(index + 1)
            else:
                plan.account(Routing(unserved=str(event["project"])))
        return plan

    def _table(self) -> Mapping[str, _Project]:
        return self._cached()[1]

    def _mutes(self) -> Mutes:
        return self._cached()[2]

    def _cached(self) -> tuple[Snapshot, dict[str, _Project], Mutes]:
        """The projects' integrations and the mutes, indexed once per published set."""
        snapshot = self.registry.snapshot
        cached = self._projects
        if cached is None or cached[0] is not snapshot:
            table = by_project(snapshot, self._judged_sets)
            cached = self._projects = (snapshot, table, Mutes.of(snapshot.mutes))
        return cached

    def _log_failures(self, failed: Mapping[str, tuple[int, str]]) -> None:
        """Each failing integration once a minute at most, with its count and error."""
        if not failed:
            return
        now = time.monotonic()
        for uid, (count, error) in failed.items():
            with self._log_lock:
                last = self._logged.get(uid)
                if last is not None and now - last < FAILURE_LOG_INTERVAL:
                    continue
                self._logged[uid] = now
            log.error(
                "%s: routing failed for %d event(s) of a request, which skipped this "
                "integration and stored the rest: %s",
                uid,
                count,
                error,
            )

    def flush_due(self) -> int:
        """Send what aggregated in windows whose frequency has passed."""
        now = self.clock()
        notifiers = self.registry.snapshot.notifiers
        mutes = self._mutes()
        queued = claimable = 0
        muted: dict[str, int] = {}
        for due in self.store.due_windows(now):
            notifier = notifiers.get(due.uid)
            try:
                routing = route_flush(due, notifier.integration if notifier else None, now, mutes)
            except Exception as exc:  # one integration's failure is its own
                log.error(
                    "%s: the digest of %d event(s) could not be routed and is dropped: %s",
                    due.uid,
                    due.window.pending,
                    failure_text(exc),
                )
                routing = Routing(drop=(due.key,))
            with self.store.batch() as batch:
                # An event taken since the listing (another thread, another daemon)
                # changed the window: its own batch saw the window as it now is, so
                # the listed copy is stale and the next pass judges it again.
                if batch.window(due.key) != due.window:
                    continue
                queued += _write(batch, routing, now)
                claimable += batch.new_heads
            _count_muted(muted, routing)
        if claimable:
            self.on_enqueued(claimable)
        if muted:
            self.on_muted(muted)
        return queued


def _accepted(request: _Request, plan: _Plan, notes: bool) -> Accepted:
    summary = plan.summary
    results = tuple(
        [
            EventResult(event_id, len(routing.items), _notes(project, routing))
            if notes
            else EventResult(event_id, len(routing.items), (), _whys(project, routing))
            for event_id, project, routing in zip(
                request.ids, request.projects, plan.kept, strict=request.detailed
            )
        ]
    )
    return Accepted(
        request.ids,
        len(plan.items),
        results,
        summary.tallies(),
        summary.unserved,
        request.detailed,
    )


def _notes(project: _Project, routing: Routing) -> tuple[str, ...]:
    """An event's reasons in the set's order, its project's disabled integrations
    among them, as a sender reading one event expects them."""
    if len(project.everyone) == len(project.active):
        return routing.notes
    whys = {why.uid: why for why in routing.whys}
    return tuple(str(whys.get(i.uid) or Why(i.uid, DISABLED)) for i in project.everyone)


def _whys(project: _Project, routing: Routing) -> tuple[Why, ...]:
    """As :func:`_notes`, unwritten: each integration's :class:`Why`, in the set's order."""
    if len(project.everyone) == len(project.active):
        return routing.whys
    whys = {why.uid: why for why in routing.whys}
    return tuple(whys.get(i.uid) or Why(i.uid, DISABLED) for i in project.everyone)


def _count_muted(counts: dict[str, int], routing: Routing) -> None:
    for item in routing.muted:
        counts[item.uid] = counts.get(item.uid, 0) + 1


def _write(batch: Batch, routing: Routing, now: float) -> int:
    for key in routing.drop:
        batch.drop_window(key)
    for update in routing.windows:
        batch.save_window(update)
    if routing.items:
        batch.enqueue(routing.items, now)
    return len(routing.items)
