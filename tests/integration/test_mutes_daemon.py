"""A running daemon with a mute, on an injected clock: an event before ``until`` is
held back for the muted room (said in the 202, counted in /metrics, listed in
/status), and after ``until`` the same event is queued and delivered, with no
reload between."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import HipChatServer
from tests.support.cli import run_cli
from tests.support.configs import trace_config, write_files
from tests.support.daemons import TEST_REACH
from tests.support.muted_example import utc

ROOMS = {"1001": "token-1001", "1002": "token-1002"}


def muted_count(metrics: str, uid: str) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "syncd_notifications_muted_total" and sample.labels == {
                "integration": uid
            }:
                return sample.value
    return None


@dataclass
class Clock:
    """The daemon's clock, stepped by the test; three hours behind the wall, so
    that what is queued is due at once for the outbox, which keeps the wall's."""

    now: float

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Rig:
    daemon: Daemon
    server: HipChatServer
    clock: Clock
    until: float

    def post(self, fingerprint: str) -> dict[str, object]:
        event = {"project": "shop", "fingerprint": fingerprint, "timestamp": utc(self.clock.now)}
        answer = requests.post(self.daemon.server.url + "/v1/events", json=event, timeout=30)
        assert answer.status_code == 202, answer.text
        body: dict[str, object] = answer.json()
        return body

    def get(self, path: str) -> requests.Response:
        return requests.get(self.daemon.server.url + path, timeout=10)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    for room, token in ROOMS.items():
        monkeypatch.setenv(f"HIPCHAT_TOKEN_{room}", token)
    clock = Clock(float(int(time.time()) - 3 * 3600))
    until = clock.now + 3600
    with HipChatServer(ROOMS, limits=None) as server:
        mutes = (
            "mutes:\n"
            f'  - {{uid: shop-trace, rooms: [1001], until: "{utc(until)}", '
            'reason: "deploy freeze \\e[31m"}\n'
        )
        config_dir = write_files(
            tmp_path / "config", ("teams/pay.yaml", trace_config(server.url, ROOMS) + mutes)
        )
        reach = replace(TEST_REACH, clock=clock, expired_mutes="warning")
        config = DaemonConfig(
            config_dir, tmp_path / "state", port=0, reach=reach, clock=clock, workers=2
        )
        daemon = Daemon(config)
        try:
            assert daemon.start().ok
            yield Rig(daemon, server, clock, until)
        finally:
            daemon.shutdown()


def test_a_mute_holds_back_its_room_until_its_time_without_a_reload(rig: Rig) -> None:
    attempts = rig.daemon.registry.attempts
    first = rig.post("before")
    assert first["notifications"] == 1
    assert first["events"] == [
        {
            "id": first["ids"][0],  # type: ignore[index]
            "notifications": 1,
            "why": [
                "shop-trace: queued for 1 room(s), 1 muted by teams/pay.yaml mutes[0] until "
                f"{utc(rig.until)} (deploy freeze \\x1b[31m)"
            ],
        }
    ]
    rig.server.wait_for_messages(1, room="1002")
    metrics = rig.get("/metrics").text
    assert muted_count(metrics, "shop-trace") == 1
    (listed,) = rig.get("/status").json()["mutes"]
    assert listed["remaining_seconds"] == 3600
    assert (listed["mute"], listed["uid"], listed["rooms"]) == (
        "teams/pay.yaml mutes[0]",
        "shop-trace",
        ["1001"],
    )
    assert (listed["until"], listed["reason"]) == (utc(rig.until), "deploy freeze \\x1b[31m")
    url = rig.daemon.server.url
    shown = run_cli("status", "--url", url, cwd=Path.cwd()).stdout
    assert shown.endswith(
        "\nactive mutes:\n  teams/pay.yaml mutes[0]: uid shop-trace, rooms 1001, until "
        f"{utc(rig.until)} (1h0m left): deploy freeze \\x1b[31m\n"
    )
    emitted = run_cli(
        "emit", "--url", url, "--project", "shop", "--fingerprint", "e", cwd=Path.cwd()
    )
    assert emitted.returncode == 0
    assert emitted.stdout.splitlines()[1:] == [
        "  shop-trace: queued for 1 room(s), 1 muted by teams/pay.yaml mutes[0] until "
        f"{utc(rig.until)} (deploy freeze \\x1b[31m)"
    ]

    rig.clock.now = rig.until  # the mute ends at its time: no reload, nothing else
    second = rig.post("after")
    assert second["notifications"] == 2
    assert second["events"][0]["why"] == ["shop-trace: queued for 2 room(s)"]  # type: ignore[index]
    (delivered,) = rig.server.wait_for_messages(1, room="1001")
    assert "after" in str(delivered.body["message"])
    assert rig.get("/status").json()["mutes"] == []
    assert rig.daemon.registry.attempts == attempts
    metrics = rig.get("/metrics").text
    assert muted_count(metrics, "shop-trace") == 2
    assert [m.room for m in rig.server.messages].count("1001") == 1
