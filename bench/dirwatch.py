"""When a daemon lists its config dir, seen from outside it (Linux).

A resync (and any full reload) walks the config dir, and a walk opens it; an
edit applied by name and a delivery never do. inotify on the dir's parent
reports each open of the dir by its name, so a bench can count resyncs and
start an edit at the moment one begins without asking the daemon anything.
Events are read as they come, on a thread: inotify folds an event into the
one before it while that one is unread, which would count two resyncs as one.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time
from pathlib import Path

IN_OPEN = 0x20
IN_ISDIR = 0x40000000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then the name


class DirOpens:
    """Counts the opens of ``directory`` from now on."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        parent = os.fsencode(directory.resolve().parent)
        if libc.inotify_add_watch(self._fd, parent, IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory.parent}")
        self._name = os.fsencode(directory.name)
        self._count = 0
        self._changed = threading.Condition()
        self._closing = False
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    def wait(self, timeout: float) -> bool:
        """Until the next open (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            start = self._count
            return self._changed.wait_for(
                lambda: self._count > start, max(0.0, deadline - time.monotonic())
            )

    def drain(self) -> int:
        """The opens so far."""
        return self.count

    def _read_all(self) -> None:
        while not self._closing:
            if not select.select([self._fd], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, OSError):
                continue
            opened = 0
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                opened += bool(mask & IN_ISDIR and name == self._name)
            if opened:
                with self._changed:
                    self._count += opened
                    self._changed.notify_all()

    def close(self) -> None:
        self._closing = True
        self._reader.join(1)
        os.close(self._fd)
