"""The HTTP front under callers that send too much, too many, or nonsense."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.service.http import LISTEN_BACKLOG, HTTPServer, Response
from tests.support.daemons import running_daemon
from tests.support.waiting import wait_for


def raw_request(address: tuple[str, int], head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    http = HTTPServer(
        "127.0.0.1",
        0,
        {("POST", "/echo"): lambda r: Response.json(200, {"got": len(r.body)})},
        max_connections=2,
    )
    http.start()
    try:
        yield http
    finally:
        http.stop()


@pytest.mark.parametrize(
    "lengths", [b"Content-Length: 2\r\nContent-Length: 3\r\n", b"Content-Length: \xb2\r\n"]
)
def test_a_duplicate_or_odd_content_length_is_a_400(server: HTTPServer, lengths: bytes) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + lengths + b"\r\n"
    answer = raw_request(server.address, head, b"{}")
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_connections_beyond_the_cap_get_a_503_and_the_others_keep_working(
    server: HTTPServer,
) -> None:
    idle = [socket.create_connection(server.address, timeout=10) for _ in range(2)]
    try:
        answer = requests.post(server.url + "/echo", data=b"{}", timeout=10)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
    finally:
        for sock in idle:
            sock.close()

    def served() -> bool:
        return requests.post(server.url + "/echo", data=b"{}", timeout=10).status_code == 200

    wait_for(served, what="a connection slot to free up")


def test_the_listen_backlog_absorbs_bursts() -> None:
    assert LISTEN_BACKLOG >= 128


@pytest.fixture
def daemon_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path) as daemon:
        yield daemon.server.url


def test_more_than_1000_events_in_one_post_is_a_413_naming_the_limit(daemon_url: str) -> None:
    event = {"project": "nosuch", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    too_many = requests.post(daemon_url + "/v1/events", json=[event] * 1001, timeout=30)
    assert too_many.status_code == 413
    assert json.loads(too_many.text)["error"]["message"] == (
        "at most 1000 events per request, got 1001"
    )
    assert (
        requests.post(daemon_url + "/v1/events", json=[event] * 1000, timeout=60).status_code == 202
    )
