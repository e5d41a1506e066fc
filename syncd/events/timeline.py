"""Events on a virtual clock through the daemon's own ingest: what each
integration does, at what time, for a rule suite (``syncd rules test --suite``).

A suite must test the daemon, not a model of it: so the events go through
:class:`~syncd.events.ingest.Ingest` itself, with the routing, the throttle
windows and the digests of the daemon, and each message is rendered by the
renderer delivery uses. Two things differ, neither of them a decision:

- **The clock** is virtual. It stands still while an event is taken in and
  moves from one event to the next, stopping at each moment a throttle window
  falls due, where the window is flushed as housekeeping would flush it (the
  daemon does within a second of that moment). So a timeline of hours takes
  microseconds, and a digest is seen at the very second it goes out. After the
  last event the clock runs on until no window holds an event.
- **The store** is :class:`MemoryStore`, which keeps what ingest reads and
  writes (fingerprints seen, windows, the notifications queued) in memory for
  one timeline at a time: a case starts from a fresh state, and a thousand
  cases do not cost a thousand SQLite files.

The renderer is the caller's to pass (the command passes HipChat's, which
this part may not import); a message is rendered in the text format, where
its title and count line read as in either format, without markup.

What an integration did comes from ingest's own answer (the reasons the
202 answer lists, such as ``throttled`` or ``filtered by actions[1]``) and
from the notifications it queued. A mute that holds back every room of an
integration is the kind ``muted``; one that holds back some is a ``send`` to the
others.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from syncd.config.configset import ConfigSet
from syncd.config.model import Integration
from syncd.config.secrets import SecretRef
from syncd.events.ingest import JUDGED_SETS, Accepted, Ingest
from syncd.events.routing import DISABLED, MUTED, NOT_NEW, THROTTLED
from syncd.registry import Registry
from syncd.store.contract import NewItem, Store, StoredWindow, Window, WindowUpdate

SEND = "send"
DIGEST = "digest"
FILTERED = "filtered"
# What a suite may expect, in the order the schema lists them.
KINDS = (SEND, FILTERED, "throttled", DIGEST, "seen_before", "disabled", "skipped", "muted")

# Ingest's reasons, by how they start, and the kind each one is. A reason not
# here (a new one) is shown as ingest words it, and no expectation matches it.
_BY_REASON = (
    ("queued for ", SEND),
    (THROTTLED, "throttled"),
    ("filtered by ", FILTERED),
    (NOT_NEW, "seen_before"),
    (DISABLED, "disabled"),
    ("skipped", "skipped"),
    (MUTED, "muted"),
)
_RULE = re.compile(r"actions\[(\d+)\]")
# What a message's text holds after each "@" of the event's own text, so that
# it cannot mention anyone; a reader does not see it, nor does a title here.
_ZERO_WIDTH_SPACE = "\u200b"

# The text of the message an integration sends for an event that stands for
# ``count`` events, the first of them at ``since``: the whole of it, uncut.
Render = Callable[[Mapping[str, Any], Integration, int, float | None], str]


@dataclass(frozen=True)
class Outcome:
    """One thing an integration did (or, in a suite, should do). In an
    expectation a field left None is not checked; in what happened, ``rooms``,
    ``title``, ``mentions`` and ``more`` describe a message, ``rule`` a filter."""

    kind: str
    rooms: tuple[str, ...] | None = None
    title: str | None = None
    mentions: tuple[str, ...] | None = None
    more: str | None = None
    rule: int | None = None


@dataclass(frozen=True)
class Happened:
    """An outcome of one integration, ``at`` seconds after the timeline's start."""

    at: float
    uid: str
    outcome: Outcome


def kind_of(reason: str) -> Outcome:
    """The outcome ingest's reason names (without a message's details)."""
    for start, kind in _BY_REASON:
        if reason.startswith(start):
            found = _RULE.search(reason) if kind == FILTERED else None
            return Outcome(kind, rule=int(found[1]) if found else None)
    return Outcome(reason)


@dataclass(frozen=True)
class _Held:
    """A window as a store keeps it: its state, when it falls due, its last event."""

    uid: str
    window: Window
    due_at: float | None
    last_event: Mapping[str, Any] | None


class MemoryStore:
    """What ingest reads and writes (``Reads``, ``Batch``, ``view``, ``batch`` and
    ``due_windows`` of :class:`~syncd.store.contract.Store`), kept in memory for
    one thread and one timeline. A batch is all or nothing, as in the other
    stores; the notifications queued are kept per batch in ``queued`` until
    :meth:`take` hands them over."""

    def __init__(self) -> None:
        self._known: set[tuple[str, str]] = set()
        self._windows: dict[str, _Held] = {}
        self.queued: list[tuple[NewItem, ...]] = []
        # When windows fall due, as a heap; an entry whose window since changed is
        # skipped. With the undo list of a batch, a replay of a million events
        # costs no scan or copy of every window per event.
        self._due: list[tuple[float, str]] = []
        self._undo: list[Callable[[], None]] = []
        # Each window's place in the order the windows were made, which is the
        # order due_windows hands them over in, as a scan of them would.
        self._made: dict[str, int] = {}
        self._count = itertools.count()
        self._mark = 0  # where the open batch's queued items begin

    def clear(self) -> None:
        """A fresh state: no fingerprint seen, no window, nothing queued."""
        self._known, self._windows, self.queued, self._due = set(), {}, [], []
        self._made = {}

    def take(self) -> list[tuple[NewItem, ...]]:
        taken, self.queued = self.queued, []
        return taken

    def next_due(self) -> float | None:
        """When the first window that holds events falls due."""
        while self._due and not self._holds(*self._due[0]):
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def _holds(self, due_at: float, key: str) -> bool:
        held = self._windows.get(key)
        return held is not None and held.due_at == due_at

    def known(self, project: str, fingerprint: str) -> bool:
        return (project, fingerprint) in self._known

    def window(self, key: str) -> Window:
        held = self._windows.get(key)
        return held.window if held is not None else Window()

    def view(self) -> MemoryStore:
        """The store itself, read as it is (one thread: nothing writes meanwhile)."""
        return self

    def batch(self) -> _Batch:
        return _Batch(self)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _begin(self) -> int:
        self._undo = []
        self._mark = len(self.queued)
        return self._mark

    @property
    def new_heads(self) -> int:
        """Every item the open batch queued: nothing is delivered in a replay."""
        return sum(map(len, self.queued[self._mark :]))

    def _end(self, queued: int, failed: bool) -> None:
        """A batch's end: kept, or when it raised, undone with what it queued."""
        if failed:
            for undo in reversed(self._undo):
                undo()
            del self.queued[queued:]
        self._undo = []

    def remember(self, project: str, fingerprint: str, now: float) -> None:
        if (project, fingerprint) not in self._known:
            self._known.add((project, fingerprint))
            self._undo.append(lambda: self._known.discard((project, fingerprint)))

    def save_window(self, update: WindowUpdate) -> None:
        """As the other stores save one: a window saved without an event keeps the
        one it held."""
        before = self._windows.get(update.key)
        last_event = update.last_event
        if last_event is None and before is not None:
            last_event = before.last_event
        self._keep(update.key, _Held(update.uid, update.window, update.due_at, last_event))
        if update.due_at is not None and (before is None or before.due_at != update.due_at):
            heapq.heappush(self._due, (update.due_at, update.key))

    def drop_window(self, key: str) -> None:
        self._keep(key, None)

    def _keep(self, key: str, held: _Held | None) -> None:
        """The window ``key`` holds from now, the one before kept for an undo."""
        before = self._windows.get(key)
        self._undo.append(lambda: self._put(key, before))
        self._put(key, held)

    def _put(self, key: str, held: _Held | None) -> None:
        if held is None:
            self._windows.pop(key, None)
        else:
            if key not in self._windows:
                self._made[key] = next(self._count)
            self._windows[key] = held

    def enqueue(self, items: Sequence[NewItem], now: float) -> list[int]:
        start = sum(map(len, self.queued))
        self.queued.append(tuple(items))
        return list(range(start + 1, start + 1 + len(items)))

    def due_windows(self, now: float) -> list[StoredWindow]:
        keys: dict[str, None] = {}
        ready = [0]  # the heap's entries due by now: a subtree past now is not walked
        while ready:
            at = ready.pop()
            if at < len(self._due) and self._due[at][0] <= now:
                if self._holds(*self._due[at]):
                    keys[self._due[at][1]] = None
                ready += (2 * at + 1, 2 * at + 2)
        held = self._windows
        return [
            StoredWindow(k, held[k].uid, held[k].window, held[k].last_event)
            for k in sorted(keys, key=self._made.__getitem__)
        ]


class _Batch:
    """A batch of :class:`MemoryStore`, all or nothing; a class rather than a
    generator, as a replay opens one per event."""

    __slots__ = ("_queued", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._queued = 0

    def __enter__(self) -> MemoryStore:
        self._queued = self._store._begin()
        return self._store

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._store._end(self._queued, kind is not None)


class _Clock:
    """The virtual clock: it reads what the timeline last set."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _no_token(ref: SecretRef) -> str:
    """Nothing is sent, so no token is read."""
    return ""


class Timeline:
    """A valid config's integrations, ready to take one timeline of events after
    another, each from a fresh state."""

    def __init__(self, config: ConfigSet, render: Render) -> None:
        self._render = render
        registry = Registry(resolver=_no_token)
        applied = registry.apply(config, "suite")
        if not applied.ok:
            raise ValueError("the config could not be applied: " + str(applied.diagnostics[0]))
        self._integrations = registry.snapshot.integrations
        self._texts: dict[str, Integration] = {}
        self._clock = _Clock()
        self._store = MemoryStore()
        # Ingest reads and writes only through view, batch and due_windows.
        # Ids need only be unique in the private store: counted, not drawn at random.
        ids = map(str, itertools.count(1)).__next__
        self._ingest = Ingest(
            cast(Store, self._store),
            registry,
            clock=self._clock,
            new_id=ids,
            judged_sets=JUDGED_SETS,
        )
        self._kinds: dict[str, Outcome] = {}

    def run(
        self, steps: Sequence[tuple[float, Mapping[str, Any] | None]], start: float
    ) -> list[Happened]:
        """Each step's event (None: none) taken in ``at`` seconds after ``start``,
        with the windows that fall due on the way flushed at their time: what
        every integration did, in the order it happened."""
        return list(self.play(steps, start))

    def play(
        self, steps: Iterable[tuple[float, Mapping[str, Any] | None]], start: float
    ) -> Iterator[Happened]:
        """As :meth:`run`, one outcome at a time, from steps read as they come: a
        replay of a million recorded events holds neither them nor their outcomes."""
        self._store.clear()
        store = self._store
        for at, event in steps:
            due = store.next_due()
            if due is not None and due <= start + at:  # most events find none due
                yield from self._digests(start, start + at)
            if event is not None:
                self._clock.now = start + at
                accepted = self._ingest.submit([event], notes=False)
                yield from self._outcomes(at, accepted, self._store.take())
        yield from self._digests(start, None)

    def _digests(self, start: float, until: float | None) -> Iterator[Happened]:
        """Windows flushed at the moments they fall due, up to ``until`` (None: until
        none holds an event)."""
        last = None
        while (due := self._store.next_due()) is not None and (until is None or due <= until):
            if last is not None and due <= last:
                return  # a window that stays due would be flushed forever
            last = self._clock.now = due
            self._ingest.flush_due()
            for queued in self._store.take():
                for uid, items in _by_uid(queued).items():
                    yield Happened(due - start, uid, self._message(DIGEST, items))

    def _outcomes(
        self, at: float, accepted: Accepted, queued: Sequence[tuple[NewItem, ...]]
    ) -> Iterator[Happened]:
        items = _by_uid(item for batch in queued for item in batch)
        for uid, reason in _reasons(accepted).items():
            outcome = self._kinds.get(reason)
            if outcome is None:
                # A reason carries no time: a set has a few of them, each read once.
                outcome = self._kinds[reason] = kind_of(reason)
            if outcome.kind == SEND:
                outcome = self._message(SEND, items.get(uid, ()))
            yield Happened(at, uid, outcome)

    def _message(self, kind: str, items: Sequence[NewItem]) -> Outcome:
        """A message's rooms, title, mentions and count line, from the renderer:
        its first line without mentions, and the line its count adds (uncut, the
        count is the one difference)."""
        if not items:
            return Outcome(kind, rooms=())
        first = items[0]
        integration = self._text(first.uid)
        plain = self._render(first.event, integration, 1, None).split("\n")
        more = None
        if first.count > 1:
            counted = self._render(first.event, integration, first.count, first.since)
            lines = counted.split("\n")
            added = Counter(lines) - Counter(plain)
            more = "\n".join(line for line in lines if line in added) or None
        return Outcome(
            kind,
            rooms=tuple(item.room_id for item in items),
            title=plain[0].replace(_ZERO_WIDTH_SPACE, ""),
            mentions=first.mentions,
            more=more,
        )

    def _text(self, uid: str) -> Integration:
        """The integration as a text message renders it: its title and count line
        read the same in either format, without markup."""
        found = self._texts.get(uid)
        if found is None:
            integration = self._integrations[uid]
            hipchat = replace(integration.hipchat, message_format="text")
            found = self._texts[uid] = replace(integration, hipchat=hipchat)
        return found


def _by_uid(items: Iterable[NewItem]) -> dict[str, list[NewItem]]:
    found: dict[str, list[NewItem]] = {}
    for item in items:
        found.setdefault(item.uid, []).append(item)
    return found


def _reasons(accepted: Accepted) -> dict[str, str]:
    """Each integration's reason for the one event taken: as the answer gives it
    (disabled integrations among them), or, for a project whose answer counts
    reasons instead, as it counts them."""
    if accepted.unserved:
        return {}
    if not accepted.detailed:
        return {uid: next(iter(tally.events)) for uid, tally in accepted.integrations.items()}
    return {why.uid: why.reason for why in accepted.events[0].whys}
