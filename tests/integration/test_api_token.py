"""With an ingest token set, every route but the two probes requires it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.daemons import running_daemon

TOKEN = "control-routes-token-0123"
GUARDED = [
    ("POST", "/-/reload"),
    ("GET", "/status"),
    ("GET", "/v1/registry"),
    ("GET", "/metrics"),
    ("POST", "/v1/events"),
]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    with running_daemon(tmp_path, ingest_token=TOKEN) as daemon:
        yield daemon.server.url


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_a_control_route_refuses_a_caller_without_the_token(
    url: str, method: str, path: str
) -> None:
    assert requests.request(method, url + path, json=[], timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (
        requests.request(method, url + path, headers=wrong, json=[], timeout=10).status_code == 401
    )


@pytest.mark.parametrize(("method", "path"), GUARDED[:4])
def test_a_control_route_answers_the_token(url: str, method: str, path: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = requests.request(method, url + path, headers=auth, json={}, timeout=30)
    assert answer.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_need_no_token(url: str, path: str) -> None:
    assert requests.get(url + path, timeout=10).status_code == 200
