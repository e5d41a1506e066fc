"""``syncd test``: does each room's token work, before the daemon relies on it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from syncd.config.model import Integration
from syncd.config.secrets import SecretError, redact
from syncd.hipchat.client import HipChatClient
from syncd.hipchat.wire import DeliveryResult, Message, RoomTarget


@dataclass(frozen=True)
class RoomCheck:
    uid: str
    room_id: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        verdict = "OK  " if self.ok else "FAIL"
        return f"{verdict} {self.uid} room {self.room_id}: {self.detail}"


def probe_message(integration: Integration) -> Message:
    hc = integration.hipchat
    text = f"syncd test notification for {integration.name} ({integration.uid})"
    return Message(text, "text", hc.color, False, hc.sender)


def _refusal(result: DeliveryResult, token: str) -> str:
    """A token rejected is not a server that never answered, nor one that failed."""
    detail = redact(result.reason, [token])
    if result.status is None:
        return f"server unreachable: {detail}"
    if result.status in (401, 403):
        return f"token rejected: {detail}"
    return f"server answered an error: {detail}"


def check_rooms(
    integrations: Iterable[Integration], client: HipChatClient, *, send: bool = False
) -> Iterator[RoomCheck]:
    for integration in integrations:
        for room in integration.rooms:
            try:
                token = room.token.resolve()
            except SecretError as exc:
                yield RoomCheck(integration.uid, room.id, False, f"token {room.token}: {exc}")
                continue
            target = RoomTarget(
                integration.hipchat.endpoint, room.id, token, integration.hipchat.ca_file
            )
            result = client.auth_test(target)
            if not result.ok:
                yield RoomCheck(integration.uid, room.id, False, _refusal(result, token))
                continue
            if not send:
                yield RoomCheck(integration.uid, room.id, True, "token accepted")
                continue
            sent = client.send(target, probe_message(integration))
            detail = "test notification sent" if sent.ok else f"send failed: {sent.reason}"
            yield RoomCheck(integration.uid, room.id, sent.ok, redact(detail, [token]))
