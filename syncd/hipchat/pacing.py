"""What the last answers said about the budget left, per token and per room.

A dispatcher that asks :meth:`Pacing.delay_before_send` waits instead of
spending a request on a certain 429. The headers are read through the one
table of them, ``hipchat_api.LIMIT_HEADERS``. Thread-safe; times are unix
seconds given by the caller, so no clock is read here.

An answer's remaining count is what the server had counted when it answered:
the sends other workers noted after the answered one and still have on their
way are not in it, and each will spend one more, so they are taken from it;
and within one window what is left only shrinks, so an answer that comes back
after a newer one gives nothing back. Without that, rooms sharing a token
spent its last requests twice, a 429 for each send in flight as the budget ran
out. The estimate errs low, never high: a send the server counted out of turn
leaves a request or two of the window unspent. Which send an answer belongs to
is known by its sender: one request at a time per thread (a command) or per
task (the daemon's workers on their event loop), so a sender's answer is for
the send it noted last.

:meth:`Pacing.reserve` looks and counts in one step: two workers that each
looked before either sent could otherwise both take a budget's last request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from syncd.hipchat.wire import LIMIT_HEADERS, RoomTarget, header_number, reset_time

DEFAULT_MAX_DELAY = 300.0


def current_sender() -> Hashable:
    """The task running on this thread's event loop, or else the thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop runs here
        return threading.get_ident()
    return task if task is not None else threading.get_ident()


@dataclass
class _Window:
    remaining: float
    reset_at: float  # as the server said: the window's name
    ends: float  # when it ends at the latest: the reset, or the period after an answer


@dataclass(frozen=True, slots=True)
class _Out:
    """A sender's send on its way: its budgets, how many sends each budget had
    noted with it, and whether it is only reserved so far."""

    keys: tuple[str, str]
    marks: tuple[int, int]
    reserved: bool = False


class Pacing:
    """``sender`` names the caller, one request at a time each: its task or thread."""

    def __init__(
        self,
        max_delay: float = DEFAULT_MAX_DELAY,
        *,
        sender: Callable[[], Hashable] = current_sender,
    ) -> None:
        self._max_delay = max_delay
        self._sender = sender
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._blocked: dict[str, float] = {}
        # Per budget with a send on its way: sends on their way, and sends noted
        # since the first of them (forgotten with the last, so kept per busy budget).
        self._sends: dict[str, tuple[int, int]] = {}
        self._out: dict[Hashable, _Out] = {}

    def observe(self, target: RoomTarget, headers: Mapping[str, str], now: float) -> None:
        """Take in the ``X-Ratelimit-*`` and ``X-FloodControl-*`` headers of the
        caller's answer, less the sends noted after the one answered."""
        with self._lock:
            sender = self._sender()
            out = self._out.get(sender)
            later = {} if out is None else self._later(out)
            self._arrived(sender)
            for limit in LIMIT_HEADERS:
                remaining = header_number(headers, limit.remaining)
                reset = header_number(headers, limit.reset)
                if remaining is not None and reset is not None:
                    key = target.key(limit.scope)
                    reset_at = reset_time(reset, now)
                    ends = reset_at if limit.period is None else min(reset_at, now + limit.period)
                    self._learn(key, remaining - later.get(key, 0), reset_at, ends)

    def _later(self, out: _Out) -> dict[str, int]:
        """Per budget, the sends noted after ``out`` that may not be in its answer:
        noted later, and no more than are still on their way besides it (one noted
        long before, counted late, would otherwise take the whole budget)."""
        later = {}
        for key, mark in zip(out.keys, out.marks, strict=True):
            on_way, noted = self._sends[key]
            later[key] = min(noted - mark, on_way - 1)
        return later

    def _learn(self, key: str, remaining: float, reset_at: float, ends: float) -> None:
        """Within one window what is left only shrinks: an answer that comes back
        after a newer one gives back nothing the newer one took. Its end is the
        earliest any answer in it showed: the room's minute is a minute after the
        first answer, not the whole second HipChat's reset rounds it up to."""
        known = self._windows.get(key)
        if known is None or reset_at > known.reset_at:
            self._windows[key] = _Window(remaining, reset_at, ends)
        elif reset_at == known.reset_at:
            known.remaining = min(known.remaining, remaining)
            known.ends = min(known.ends, ends)

    def note_send(self, target: RoomTarget, now: float) -> None:
        """Count a request about to go out, so that concurrent senders share the
        budget; nothing more if the caller reserved it."""
        keys = (target.token_key, target.room_key)
        with self._lock:
            sender = self._sender()
            out = self._out.get(sender)
            if out is not None and out.reserved and out.keys == keys:
                self._out[sender] = _Out(out.keys, out.marks)
                return
            self._count(sender, keys, now)

    def reserve(self, target: RoomTarget, now: float) -> float:
        """Seconds to wait before sending to ``target``, as :meth:`delay_before_send`;
        0 also counts the caller's send as on its way, in the same step."""
        keys = (target.token_key, target.room_key)
        with self._lock:
            delay = self._delay(target, now)
            if delay <= 0:
                sender = self._sender()
                out = self._count(sender, keys, now)
                self._out[sender] = _Out(out.keys, out.marks, reserved=True)
        return delay

    def _count(self, sender: Hashable, keys: tuple[str, str], now: float) -> _Out:
        self._arrived(sender)
        marks = []
        for key in keys:
            on_way, noted = self._sends.get(key, (0, 0))
            self._sends[key] = (on_way + 1, noted + 1)
            marks.append(noted + 1)
            window = self._windows.get(key)
            if window is not None and window.ends > now:
                window.remaining -= 1
        out = self._out[sender] = _Out(keys, (marks[0], marks[1]))
        return out

    def _arrived(self, sender: Hashable) -> None:
        """The sender's send on its way, if any, is over (answered or not)."""
        out = self._out.pop(sender, None)
        for key in out.keys if out is not None else ():
            on_way, noted = self._sends[key]
            if on_way > 1:
                self._sends[key] = (on_way - 1, noted)
            else:
                del self._sends[key]

    def block(self, target: RoomTarget, until: float) -> None:
        """Hold every send to this room until ``until`` (after a rate-limit answer)."""
        with self._lock:
            key = target.room_key
            self._blocked[key] = max(until, self._blocked.get(key, until))

    def delay_before_send(self, target: RoomTarget, now: float) -> float:
        """Seconds to wait before the next request to ``target``; 0 means send now."""
        with self._lock:
            return self._delay(target, now)

    def _delay(self, target: RoomTarget, now: float) -> float:
        delays = [self._window_delay(key, now) for key in (target.token_key, target.room_key)]
        delays.append(self._blocked_delay(target.room_key, now))
        return min(max(delays), self._max_delay)

    def _window_delay(self, key: str, now: float) -> float:
        window = self._windows.get(key)
        if window is None:
            return 0.0
        if window.ends <= now:
            del self._windows[key]
            return 0.0
        return window.ends - now if window.remaining <= 0 else 0.0

    def _blocked_delay(self, key: str, now: float) -> float:
        until = self._blocked.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._blocked[key]
            return 0.0
        return until - now
