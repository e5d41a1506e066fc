"""Cross-check the test server against a HipChat v2 client nobody here wrote (hypchat 0.21).

If the server accepts what an independent client sends, and our client sends the
same shape, the server is not merely agreeing with our own misunderstandings.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from syncd.hipchat.client import HipChatClient
from syncd.hipchat.wire import Message, RoomTarget
from syncd.testing import Fault, HipChatServer

with warnings.catch_warnings():
    # hypchat predates Python 3.12's stricter escapes in its regular expressions.
    warnings.simplefilter("ignore", SyntaxWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    hypchat = pytest.importorskip("hypchat")

TOKEN = "peer-room-token-0123456789"


def room(server: HipChatServer, token: str = TOKEN) -> Any:
    """hypchat's Room for room 1234567, built as hypchat builds one from ``GET /v2/room``.

    hypchat recognises rooms only under https URLs, so the lookup is skipped here.
    """
    client = hypchat.HypChat(token, endpoint=server.url)
    found = hypchat.restobject.Room(
        {"id": 1234567, "links": {"self": f"{server.url}/v2/room/1234567"}}
    )
    found._requests = client._requests
    return found


def test_hypchat_posts_a_notification_our_server_accepts() -> None:
    with HipChatServer({"1234567": TOKEN}) as server:
        peer = room(server)
        peer.notification("deploy <b>done</b>", color="green", notify=True, format="html")
        peer.notification("ping @payments")

        first, second = server.messages
        assert first.room == "1234567"
        assert first.body == {
            "message": "deploy <b>done</b>",
            "color": "green",
            "notify": True,
            "message_format": "html",
        }
        assert first.headers["Authorization"] == f"Bearer {TOKEN}"
        assert second.body["message_format"] == "text"

        # Our client's request differs only in what it adds ("from").
        with HipChatClient() as client:
            target = RoomTarget(server.url, "1234567", TOKEN)
            message = Message("deploy <b>done</b>", "html", "green", True, None)
            assert client.send(target, message).ok
        ours = server.messages[-1]
        assert ours.body == first.body
        assert ours.path == first.path == "/v2/room/1234567/notification"


def test_hypchat_reads_our_errors_as_hipchat_errors() -> None:
    with HipChatServer({"1234567": TOKEN}) as server:
        with pytest.raises(hypchat.requests.HttpBadRequest) as raised:
            room(server).notification("x" * 10_001)
        assert raised.value.response.json()["error"]["type"] == "Bad Request"
        with pytest.raises(hypchat.requests.HttpUnauthorized):
            room(server, "not-the-token").notification("hi")
        server.inject(Fault.server_error(503))
        with pytest.raises(hypchat.requests.HttpServiceUnavailable):
            room(server).notification("hi")
        assert server.messages == []
