"""With an ingest token set, every route but the two probes requires it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal

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
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, ingest_token=TOKEN))
    assert daemon.start().ok
    try:
        yield daemon.server.url
    finally:
        daemon.shutdown()


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
    assert requests.request(method, url + path, headers=auth, timeout=30).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_need_no_token(url: str, path: str) -> None:
    assert requests.get(url + path, timeout=10).status_code == 200
