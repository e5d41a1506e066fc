"""What a web page in a browser on the host can make the daemon do: nothing.

With no ingest token (the loopback default), a page can send requests that
need no CORS preflight: a POST whose body is text/plain, a form, or a blob
with no type. It can also rebind a DNS name it owns to 127.0.0.1 and then
read the answers, since the browser takes them for its own site's. Each
route is tried with each attack; no handler may run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.service.api import Api
from syncd.service.daemon import Daemon
from syncd.service.http import Handler, HTTPServer, Request, Response, Routes
from tests.support.daemons import running_daemon

EVENT = {"project": "nosuch", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
POSTS = {"/v1/events": EVENT, "/-/reload": {}, "/v1/outbox/retry": {"ids": [1]}}
GETS = ["/status", "/v1/registry", "/metrics", "/v1/outbox"]


class Ran(list[tuple[str, str]]):
    """The routes whose handler ran, in order."""


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Ran]]:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    ran = Ran()
    routes = Api.routes

    def recording(route: tuple[str, str], handler: Handler) -> Handler:
        def record(request: Request) -> Response:
            ran.append(route)
            return handler(request)

        return record

    def recorded(self: Api) -> Routes:
        return {route: recording(route, handler) for route, handler in routes(self).items()}

    monkeypatch.setattr(Api, "routes", recorded)
    with running_daemon(tmp_path) as running:
        yield running, ran


def post(daemon: Daemon, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(daemon.server.url + path, data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_a_post_a_page_may_send_without_preflight_is_a_415(
    daemon: tuple[Daemon, Ran], path: str, content_type: str
) -> None:
    running, ran = daemon
    answer = post(running, path, json.dumps(POSTS[path]).encode(), **{"Content-Type": content_type})
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"]["message"] == "Content-Type must be application/json"
    assert ran == []


@pytest.mark.parametrize("path", POSTS)
def test_a_post_with_a_body_of_no_type_is_a_415(daemon: tuple[Daemon, Ran], path: str) -> None:
    running, ran = daemon
    answer = post(running, path, json.dumps(POSTS[path]).encode())
    assert "Content-Type" not in answer.request.headers
    assert answer.status_code == 415, answer.text
    assert ran == []


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:1"])
def test_a_json_post_from_another_origin_is_a_403(
    daemon: tuple[Daemon, Ran], path: str, origin: str
) -> None:
    running, ran = daemon
    body = json.dumps(POSTS[path]).encode()
    answer = post(running, path, body, **{"Content-Type": "application/json", "Origin": origin})
    assert answer.status_code == 403, answer.text
    assert ran == []


@pytest.mark.parametrize("path", [*POSTS, *GETS])
def test_a_rebound_name_reaches_no_route(daemon: tuple[Daemon, Ran], path: str) -> None:
    running, ran = daemon
    port = running.server.address[1]
    headers = {"Host": f"evil.example:{port}", "Content-Type": "application/json"}
    url = running.server.url + path
    if path in POSTS:
        answer = requests.post(url, json=POSTS[path], headers=headers, timeout=30)
    else:
        answer = requests.get(url, headers=headers, timeout=30)
    assert answer.status_code == 421, answer.text
    assert ran == []


@pytest.mark.parametrize("path", POSTS)
def test_the_same_post_done_as_the_cli_does_it_is_served(
    daemon: tuple[Daemon, Ran], path: str
) -> None:
    running, ran = daemon
    answer = requests.post(running.server.url + path, json=POSTS[path], timeout=30)
    assert answer.status_code < 500, answer.text
    assert ran == [("POST", path)]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_a_pod_address_and_any_other_host(
    daemon: tuple[Daemon, Ran], path: str
) -> None:
    running, _ = daemon
    for host in ("10.244.3.7:8514", "evil.example"):
        answer = requests.get(running.server.url + path, headers={"Host": host}, timeout=30)
        assert answer.status_code == 200, (host, answer.text)


def test_an_allowed_name_is_answered() -> None:
    server = HTTPServer(
        "127.0.0.1",
        0,
        {("GET", "/status"): lambda _: Response.json(200, {})},
        allowed_hosts=["syncd.internal"],
    )
    server.start()
    try:
        for host, status in (("syncd.internal", 200), ("other.internal", 421)):
            answer = requests.get(server.url + "/status", headers={"Host": host}, timeout=30)
            assert answer.status_code == status, host
    finally:
        server.stop()
