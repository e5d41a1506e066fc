"""Every route of the HTTP API on examples/integrations.yaml, where every field is set.

Tests on minimal files once let ``GET /v1/registry`` answer 500 for any
integration with ``actions``; these run the same routes on the example.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.config import semantics
from syncd.config.configset import load_config_set
from syncd.config.model import integration_to_data
from syncd.config.plan import active_from_data
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import HipChatServer
from tests.support.example import Example, example


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Example]]:
    rooms = example(tmp_path / "probe").rooms
    with HipChatServer(rooms, limits=None) as server:
        ex = example(tmp_path, server.url)
        for name, value in ex.env.items():
            monkeypatch.setenv(name, value)
        config = DaemonConfig(ex.config_dir, tmp_path / "state", port=0, reach=ex.reach)
        daemon = Daemon(config)
        try:
            assert daemon.start().ok
            yield daemon, ex
        finally:
            daemon.shutdown()


def test_the_registry_answers_the_example_as_loaded(rig: tuple[Daemon, Example]) -> None:
    daemon, ex = rig
    answer = requests.get(daemon.server.url + "/v1/registry", timeout=10)
    assert answer.status_code == 200, answer.text
    loaded = load_config_set([ex.config_dir], semantics.Options(reach=ex.reach))
    expected = [integration_to_data(i) for i in loaded.integrations]
    assert answer.json()["integrations"] == expected
    assert any(item["actions"] for item in expected)
    active = active_from_data(answer.json()["integrations"])
    assert active == {i.uid: i.public() for i in loaded.integrations}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/status", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/outbox", None),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("POST", "/-/reload", None),
        ("POST", "/v1/outbox/retry", {"all_dead": True}),
        (
            "POST",
            "/v1/events",
            {
                "project": "checkout",
                "fingerprint": "f1",
                "timestamp": "2026-11-26T12:00:00Z",
                "attributes": {"team": "payments", "datacenter": "nyc"},
            },
        ),
    ],
)
def test_every_route_answers_on_the_example(
    rig: tuple[Daemon, Example], method: str, path: str, body: object
) -> None:
    daemon, _ = rig
    answer = requests.request(
        method,
        daemon.server.url + path,
        json=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code < 300, answer.text


def test_events_on_the_example_a_lone_surrogate_refused_and_the_202_compact(
    rig: tuple[Daemon, Example],
) -> None:
    """The ingest path's surrogate scan and its compact answer, where every field is set."""
    daemon, _ = rig
    url = daemon.server.url + "/v1/events"
    headers = {"Content-Type": "application/json"}
    body = (
        b'{"project": "checkout", "fingerprint": "f2", "timestamp": "2026-11-26T12:00:00Z",'
        b' "hostname": "MARK", "attributes": {"team": "payments", "datacenter": "nyc"}}'
    )
    for written in (b"\\udc00", b"\xed\xa0\x80"):
        refused = requests.post(
            url, data=body.replace(b"MARK", written), headers=headers, timeout=30
        )
        assert refused.status_code == 400, refused.text
        assert "not usable JSON" in refused.json()["error"]["message"]
    taken = requests.post(url, data=body.replace(b"MARK", b"web-1"), headers=headers, timeout=30)
    assert taken.status_code == 202, taken.text
    assert taken.json()["accepted"] == 1 and taken.json()["notifications"] >= 1
    assert taken.text == json.dumps(taken.json(), separators=(",", ":")) + "\n"
