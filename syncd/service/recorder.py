"""``syncd run --record-events DIR``: the events the daemon accepted, kept as
JSONL for ``syncd plan --replay``, so a change's noise can be measured on what
the daemon really took in.

One file per UTC day (``events-YYYY-MM-DD.jsonl``), one event per line as
``POST /v1/events`` takes it, attributes included: the files hold what the
events hold, so they are the daemon's own (0600, in a 0700 directory). Files
older than ``days`` days are removed by the recorder when it opens a new day's.

Recording comes after the 202 and is best effort: a full disk or any write
error is logged (at most once a minute) and counted, and never fails ingest.
A write that fails half way is cut back, so a line is whole or absent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("syncd")

DEFAULT_DAYS = 7
ERROR_LOG_INTERVAL = 60.0
_NAME = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.jsonl$")


def file_name(day: str) -> str:
    return f"events-{day}.jsonl"


class Recorder:
    """Appends accepted requests' events to the day's file; one writer at a time."""

    def __init__(
        self,
        directory: Path,
        *,
        days: int = DEFAULT_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory, self.days, self._clock = directory, days, clock
        self._lock = threading.Lock()
        self._day = ""
        self._fd: int | None = None
        self._logged_at: float | None = None
        self.recorded = 0
        self.errors = 0

    def record(self, body: bytes) -> None:
        """The request's events (its body, one event or a list, already accepted)."""
        try:
            payload = json.loads(body)
            events = payload if isinstance(payload, list) else [payload]
            lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        except (ValueError, RecursionError) as exc:
            self._failed(f"could not read the request: {exc}")
            return
        with self._lock:
            try:
                self._append(lines.encode())
            except OSError as exc:
                self._failed(exc.strerror or str(exc))
                return
            self.recorded += len(events)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _append(self, data: bytes) -> None:
        now = self._clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        if self._fd is None or day != self._day:
            self._open(day)
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"wrote {written} of {len(data)} bytes")
        except OSError:
            _cut(self._fd, size)
            raise

    def _open(self, day: str) -> None:
        """The day's file, after the old ones are pruned: the one place that
        creates the directory, so one removed while the daemon runs comes back."""
        self._close()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._prune(day)
        path = self.directory / file_name(day)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self._fd = os.open(path, flags, 0o600)
        os.fchmod(self._fd, 0o600)
        self._day = day

    def _prune(self, day: str) -> None:
        """Files of days before the last ``days`` (today counted) are removed."""
        oldest = (datetime.strptime(day, "%Y-%m-%d") - timedelta(days=self.days - 1)).strftime(
            "%Y-%m-%d"
        )
        for entry in self.directory.iterdir():
            found = _NAME.match(entry.name)
            if found and found[1] < oldest:
                entry.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _failed(self, why: str) -> None:
        self.errors += 1
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= ERROR_LOG_INTERVAL:
            self._logged_at = now
            log.error(
                "could not record accepted events in %s: %s (%d failure(s) so far; ingest goes on)",
                self.directory,
                why,
                self.errors,
            )


def _cut(fd: int, size: int) -> None:
    """A half-written line is removed, so the next one starts on its own line."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
