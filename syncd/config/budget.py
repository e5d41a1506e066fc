"""The time a load of a config set may take.

A daemon reloads on its watcher's one thread, and a reload that never ends
holds back every later fix; so a load may be given a deadline, checked between
files and at each directory of the walk. Past it the load stops and its set is
rejected, and the daemon keeps the set it serves. A file is checked in time
linear in its size and files are at most 1 MiB, so a load overruns its
deadline by one file's check at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.config.diagnostics import Diagnostic

Clock = Callable[[], float]


class OverBudget(Exception):
    """A load ran past its deadline."""


@dataclass(frozen=True)
class Deadline:
    """A monotonic time on ``clock``, and how long the load had when it started."""

    at: float
    budget: float
    clock: Clock = time.monotonic

    @classmethod
    def within(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, seconds, clock)

    def check(self) -> None:
        if self.clock() >= self.at:
            raise OverBudget


def check(deadline: Deadline | None) -> None:
    """Raise :class:`OverBudget` once ``deadline`` (if any) has passed."""
    if deadline is not None:
        deadline.check()


def over_budget(paths: tuple[Path, ...], deadline: Deadline) -> Diagnostic:
    """The one diagnostic of a set whose load was stopped."""
    where = str(paths[0]) if paths else "."
    return Diagnostic(
        where,
        1,
        1,
        "",
        f"the config set took more than {max(deadline.budget, 0):.3g} s to load "
        "(--reconcile-timeout) and was rejected; a file may hold more than can be "
        "checked in that time",
    )
