"""The event-loop HipChat client behind the thread client's sync surface.

:class:`LoopSender` runs a :class:`~syncd.hipchat.streams.LoopClient` on an
event loop of its own (in a daemon thread) and offers the calls the tests make
on a :class:`~syncd.hipchat.client.HipChatClient`, so one test body checks
both: :func:`make_client` builds either kind from the same arguments.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from syncd.hipchat.client import HipChatClient
from syncd.hipchat.streams import LoopClient
from syncd.hipchat.wire import DeliveryResult, Message, RoomTarget

KINDS = ["threads", "loop"]

_T = TypeVar("_T")

# The longest a test waits on one call into the loop; a send has its own deadlines.
_CALL_TIMEOUT = 120.0


class LoopSender:
    """A :class:`LoopClient` on its own loop, called like a :class:`HipChatClient`.

    Attributes it does not define (``pacing``, ``timeout``,
    ``delay_before_send``...) are the wrapped client's.
    """

    def __init__(self, client: HipChatClient) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="loop-sender", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def create() -> LoopClient:
            return LoopClient(client)

        self.loop_client = self._call(create())

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=_CALL_TIMEOUT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __enter__(self) -> LoopSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, target: RoomTarget, message: Message, *, attempt: int = 0) -> DeliveryResult:
        if self._closed:
            raise RuntimeError("LoopSender is closed")
        return self._call(self.loop_client.send(target, message, attempt=attempt))

    def auth_test(self, target: RoomTarget) -> DeliveryResult:
        if self._closed:
            raise RuntimeError("LoopSender is closed")
        return self._call(self.loop_client.auth_test(target))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shut() -> None:
            self.loop_client.close()
            await asyncio.sleep(0)  # let the transports finish closing

        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()
            self.client.close()


Client = HipChatClient | LoopSender


def make_client(kind: str, **kwargs: Any) -> Client:
    """A :class:`HipChatClient` made with ``kwargs`` (``"threads"``), or one wrapped
    in a :class:`LoopSender` (``"loop"``)."""
    if kind == "threads":
        return HipChatClient(**kwargs)
    if kind == "loop":
        return LoopSender(HipChatClient(**kwargs))
    raise ValueError(f"unknown client kind {kind!r}")
