"""The test server itself: it must be as strict as HipChat, or delivery tests prove nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncd.testing import Fault, HipChatServer, Limits, ServerRoom

TOKEN = "room-token-abcdef123456"
T0 = 1_700_000_000.0


@pytest.fixture
def server() -> Iterator[HipChatServer]:
    rooms = [ServerRoom("1234567", TOKEN), ServerRoom("99", "other-token-99", name="Ops Room")]
    with HipChatServer(rooms) as srv:
        yield srv


def post(
    server: HipChatServer,
    body: Any = None,
    *,
    room: str = "1234567",
    token: str | None = TOKEN,
    data: bytes | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    url = f"{server.url}/v2/room/{room}/notification{query}"
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
        return requests.post(url, data=data, headers=sent, timeout=5)
    return requests.post(url, json=body, headers=sent, timeout=5)


def error(response: requests.Response) -> dict[str, Any]:
    err = response.json()["error"]
    assert set(err) == {"code", "type", "message"}
    assert err["code"] == response.status_code
    return dict(err)


def test_a_valid_notification_is_stored(server: HipChatServer) -> None:
    body = {"message": "hi", "message_format": "text", "color": "green", "notify": True}
    response = post(server, {**body, "from": "x" * 64})
    assert (response.status_code, response.content) == (204, b"")
    (got,) = server.messages
    assert got.room == "1234567" and got.body["message"] == "hi"
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post(server, {"message": "defaults apply"}).status_code == 204


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "Missing required field 'message'"),
        ({"message": ""}, "between 1 and 10000"),
        ({"message": "x" * 10_001}, "between 1 and 10000"),
        ({"message": "hi", "color": "pink"}, "color must be one of"),
        ({"message": "hi", "message_format": "markdown"}, "message_format"),
        ({"message": "hi", "notify": "yes"}, "notify must be a boolean"),
        ({"message": "hi", "from": "x" * 65}, "from must be"),
        (["message"], "must be a JSON object"),
    ],
)
def test_invalid_bodies_are_400(server: HipChatServer, body: Any, words: str) -> None:
    response = post(server, body)
    assert response.status_code == 400
    err = error(response)
    assert err["type"] == "Bad Request" and words in err["message"]
    assert server.messages == []


def test_non_json_is_400(server: HipChatServer) -> None:
    assert post(server, data=b"message=hi").status_code == 400
    response = post(server, data=b'{"message": "hi"}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 400


def test_a_message_of_exactly_10000_characters_is_accepted(server: HipChatServer) -> None:
    assert post(server, {"message": "é" * 10_000}).status_code == 204


def test_authorization(server: HipChatServer) -> None:
    assert error(post(server, {"message": "hi"}, token=None))["type"] == "Unauthorized"
    assert post(server, {"message": "hi"}, token="other-token-99").status_code == 401
    for token in (None, TOKEN):
        response = post(server, {"message": "hi"}, token=token, query=f"?auth_token={TOKEN}")
        assert response.status_code == 401, "tokens in URLs are refused unless allowed"
        assert "auth_token in the URL" in error(response)["message"]
    with HipChatServer({"1": TOKEN}, allow_query_token=True) as lenient:
        url = f"{lenient.url}/v2/room/1/notification?auth_token={TOKEN}"
        assert requests.post(url, json={"message": "hi"}, timeout=5).status_code == 204


def test_auth_test_answers_202_and_posts_nothing(server: HipChatServer) -> None:
    response = post(server, {"message": "hi"}, query="?auth_test=true")
    assert response.status_code == 202
    assert response.json()["success"]["code"] == 202
    assert post(server, {"message": "hi"}, token="nope", query="?auth_test=true").status_code == 401
    assert server.messages == []


def test_rooms_by_id_or_name(server: HipChatServer) -> None:
    assert post(server, {"message": "a"}, room="ops%20room", token="other-token-99").ok
    assert post(server, {"message": "b"}, room="99", token="other-token-99").ok
    assert [m.room for m in server.messages_for("OPS ROOM")] == ["99", "99"]
    response = post(server, {"message": "c"}, room="555")
    assert (response.status_code, error(response)["type"]) == (404, "Not Found")
    assert requests.post(f"{server.url}/v2/user/1/message", timeout=5).status_code == 404
    with HipChatServer({"Dev Room": TOKEN}) as named:
        url = f"{named.url}/v2/room/dev%20room/notification"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url, json={"message": "hi"}, headers=auth, timeout=5).ok


def test_faults_are_consumed_in_order_and_per_room_first(server: HipChatServer) -> None:
    server.inject(Fault.server_error(), times=2)
    server.inject(Fault.status(429, headers={"Retry-After": "3"}), room="1234567")
    assert (server.faults_left(), server.faults_left("1234567")) == (2, 1)
    first = post(server, {"message": "hi"})
    assert (server.faults_left(), server.faults_left("1234567")) == (2, 0)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert [post(server, {"message": "hi"}).status_code for _ in range(3)] == [500, 500, 204]
    assert [a.fault for a in server.attempts] == ["status", "status", "status", None]
    with pytest.raises(KeyError):
        server.inject(Fault.reset(), room="nope")
    server.inject(Fault.server_error(), times=5)
    server.clear_faults()
    assert post(server, {"message": "hi"}).status_code == 204


def test_flood_control_fault_looks_like_hipchats(server: HipChatServer) -> None:
    server.inject(Fault.flood_control())
    response = post(server, {"message": "hi"})
    assert response.status_code == 403
    assert "exceeded the rate limit" in error(response)["message"]


def test_extra_headers_on_success(server: HipChatServer) -> None:
    server.inject(Fault.with_headers({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1"}))
    response = post(server, {"message": "hi"})
    assert response.status_code == 204
    assert response.headers["X-Ratelimit-Reset"] == "1"
    assert len(server.messages) == 1


def test_reset_drops_the_connection(server: HipChatServer) -> None:
    server.inject(Fault.reset())
    with pytest.raises(requests.ConnectionError):
        post(server, {"message": "hi"})
    assert server.attempts[0].status is None
    assert post(server, {"message": "hi"}).status_code == 204


def test_slow_answers_come_late_but_whole(server: HipChatServer) -> None:
    server.inject(Fault.slow(0.3))
    started = time.monotonic()
    assert post(server, {"message": "hi"}).status_code == 204
    assert time.monotonic() - started >= 0.3


def test_documented_limits_and_their_headers() -> None:
    clock = [T0]
    limits = Limits(rate=5, rate_window=300.0, flood=2, flood_window=60.0)
    with HipChatServer({"1": TOKEN, "2": TOKEN}, limits=limits, clock=lambda: clock[0]) as srv:
        first = post(srv, {"message": "a"}, room="1")
        assert first.headers["X-Ratelimit-Limit"] == "5"
        assert first.headers["X-Ratelimit-Remaining"] == "4"
        assert first.headers["X-Ratelimit-Reset"] == str(int(T0 + 300))
        assert first.headers["X-FloodControl-Remaining"] == "1"
        assert first.headers["X-FloodControl-Reset"] == str(int(T0 + 60))
        assert post(srv, {"message": "b"}, room="1").status_code == 204
        flooded = post(srv, {"message": "c"}, room="1")
        assert flooded.status_code == 429 and "rate limit" in error(flooded)["message"]
        assert post(srv, {"message": "d"}, room="2").status_code == 204
        clock[0] += 60
        assert post(srv, {"message": "e"}, room="1").status_code == 204
        spent = post(srv, {"message": "f"}, room="2")
        assert (spent.status_code, spent.headers["X-Ratelimit-Remaining"]) == (429, "0")
        assert [m.body["message"] for m in srv.messages] == ["a", "b", "d", "e"]
    with HipChatServer({"1": TOKEN}, limits=None) as unlimited:
        assert "X-Ratelimit-Limit" not in post(unlimited, {"message": "a"}, room="1").headers


def test_concurrent_posts_are_all_recorded() -> None:
    with HipChatServer({"1": TOKEN}, limits=None) as srv:

        def work() -> None:
            with requests.Session() as session:
                for n in range(10):
                    url = f"{srv.url}/v2/room/1/notification"
                    auth = {"Authorization": f"Bearer {TOKEN}"}
                    session.post(url, json={"message": str(n)}, headers=auth, timeout=5)

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        assert len(srv.wait_for_messages(50, timeout=10)) == 50
        for t in threads:
            t.join(timeout=10)
        assert len(srv.attempts) == 50


def test_waiting_for_messages_is_bounded(server: HipChatServer) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1 messages"):
        server.wait_for_messages(1, room="1234567", timeout=0.1)
    assert time.monotonic() - started < 1.0
    post(server, {"message": "hi"})
    assert len(server.wait_for_messages(1, room="1234567")) == 1
    server.reset_records()
    assert server.messages == [] and server.attempts == []


def test_close_does_not_wait_for_idle_keep_alive_connections() -> None:
    srv = HipChatServer({"1": TOKEN}).start()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{srv.url}/v2/room/1/notification"
    assert session.post(url, json={"message": "hi"}, headers=auth, timeout=5).ok
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 2.0
    session.close()
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_records_hold_the_json_body_as_sent(server: HipChatServer) -> None:
    card = {"style": "application", "id": "e1", "title": "KeyError in shop: fp"}
    body = {"message": "<b>x</b> & é", "card": card}
    post(server, data=json.dumps(body).encode())
    assert server.messages[0].body == body


@pytest.mark.parametrize(
    ("card", "problem"),
    [
        ({"id": "e1", "title": "t"}, "card.style must be one of: application, file, image, "),
        ({"style": "application", "title": "t"}, "Missing required field 'card.id'"),
        ({"style": "application", "id": "e1"}, "card.title must be 1 to 500 characters"),
        (
            {"style": "application", "id": "e1", "title": "t", "description": {"value": "d"}},
            "card.description must be a string or {value, format: html|text}",
        ),
        (
            {"style": "application", "id": "e1", "title": "t", "attributes": [{"label": "a"}]},
            "card.attributes[].value.label must be 1 to 50 characters",
        ),
    ],
)
def test_a_card_missing_what_the_api_requires_is_refused(
    server: HipChatServer, card: dict[str, object], problem: str
) -> None:
    answer = post(server, data=json.dumps({"message": "fallback", "card": card}).encode())
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(problem)
    assert server.messages == []


def test_it_finds_mentions_as_a_chat_client_would_and_stricter(server: HipChatServer) -> None:
    card = {
        "style": "application",
        "id": "@not-shown",
        "title": "@cardtitle",
        "description": {"value": "x &#64;entity", "format": "html"},
        "attributes": [{"label": "@label", "value": {"label": "a@b.example"}}],
    }
    bodies = [
        {"message": "@all hi @\u200bhere a@b.example https://x/@path", "message_format": "text"},
        {"message": "<b>@here</b> &#64;html", "message_format": "html", "card": card},
    ]
    for body in bodies:
        assert post(server, body).status_code == 204
    found = [m.mentions for m in server.messages]
    assert found == [("all", "path"), ("here", "html", "cardtitle", "entity", "label")]


def test_it_answers_bytes_that_are_not_http_when_asked(server: HipChatServer) -> None:
    server.inject(Fault.answer_bytes(b"220 mail.example.com ESMTP\r\n"))
    with pytest.raises(requests.ConnectionError):
        post(server, {"message": "hi"})
    assert [(a.status, a.fault) for a in server.attempts] == [(None, "raw")]
    assert post(server, {"message": "hi"}).status_code == 204
