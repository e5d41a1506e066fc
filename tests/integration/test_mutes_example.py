"""examples/integrations.yaml with its ``mutes:`` block uncommented (a week from
now): valid to ``syncd validate``, served by a daemon whose ``/status`` lists the
mutes and whose ``POST /v1/events`` says what they held back, unchanged to
``syncd plan --against`` that daemon, and explained by ``syncd rules test``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import HipChatServer
from tests.support.cli import run_cli
from tests.support.example import EXAMPLE, Example, example
from tests.support.muted_example import WEEK, muted_example, uncommented_mutes, utc

CANARY = {
    "project": "checkout",
    "fingerprint": "c1",
    "timestamp": "2026-11-26T12:00:00Z",
    "attributes": {"environment": "canary"},
}


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Example]]:
    rooms = example(tmp_path / "probe").rooms
    with HipChatServer(rooms, limits=None) as server:
        ex = muted_example(tmp_path, server.url)
        for name, value in ex.env.items():
            monkeypatch.setenv(name, value)
        daemon = Daemon(DaemonConfig(ex.config_dir, tmp_path / "state", port=0, reach=ex.reach))
        try:
            assert daemon.start().ok
            yield daemon, ex
        finally:
            daemon.shutdown()


def test_the_example_with_its_mutes_is_valid(tmp_path: Path) -> None:
    ex = muted_example(tmp_path)
    result = run_cli("validate", str(ex.config_dir), *ex.flags, cwd=tmp_path, env=ex.env)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
    text = (ex.config_dir / "integrations.yaml").read_text()
    assert "\nmutes:\n  - uid: checkout-ops\n" in text


def test_the_daemon_lists_the_example_mutes_and_says_what_they_held_back(
    rig: tuple[Daemon, Example],
) -> None:
    daemon, _ = rig
    mutes = requests.get(daemon.server.url + "/status", timeout=10).json()["mutes"]
    assert [(m["mute"], m["uid"], m["project"], m["rooms"]) for m in mutes] == [
        ("integrations.yaml mutes[0]", "checkout-ops", None, ["Checkout War Room"]),
        ("integrations.yaml mutes[1]", None, "billing", None),
    ]
    assert all(6 * 86400 < m["remaining_seconds"] <= 7 * 86400 for m in mutes)
    answer = requests.post(daemon.server.url + "/v1/events", json=CANARY, timeout=10).json()
    (why,) = answer["events"][0]["why"]
    assert why.startswith(
        "checkout-ops: queued for 1 room(s), 1 muted by integrations.yaml mutes[0] until "
    )
    assert why.endswith("(canary rollout of checkout v2; the ops room still sees every error)")
    billing = {**CANARY, "project": "billing", "attributes": {}}
    answer = requests.post(daemon.server.url + "/v1/events", json=billing, timeout=10).json()
    assert answer["notifications"] == 0
    assert answer["events"][0]["why"][0].startswith(
        "billing-alerts: muted by integrations.yaml mutes[1] until "
    )


def test_plan_against_the_daemon_finds_nothing_to_change(
    rig: tuple[Daemon, Example], tmp_path: Path
) -> None:
    daemon, ex = rig
    plan = ("plan", "--config", str(ex.config_dir), "--against", daemon.server.url, *ex.flags)
    same = run_cli(*plan, cwd=tmp_path, env=ex.env)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith(f"No changes against {daemon.server.url}.")


def test_rules_test_on_the_example_names_the_mute(tmp_path: Path) -> None:
    """As written, but for its mutes: ``rules test`` reads no token."""
    until = utc(time.time() + WEEK)
    config = tmp_path / "config"
    config.mkdir()
    text = uncommented_mutes(EXAMPLE.read_text(encoding="utf-8"), until)
    (config / "integrations.yaml").write_text(text, encoding="utf-8")
    event = tmp_path / "canary.json"
    event.write_text(json.dumps(CANARY))
    result = run_cli("rules", "test", "--config", "config", "--event", str(event), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "  trigger:  group, from a fresh state: queued for 1 room(s), 1 muted by "
        f"integrations.yaml mutes[0] until {until} (canary rollout"
    ) in result.stdout
