"""Mutes through the commands that read a config: ``validate`` and its flags,
``rules test`` on one event, a rule suite expecting ``muted`` (which fails on the
same config without its mute) and ``plan --replay``'s ``muted`` column."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.configs import write_files
from tests.support.muted_example import utc

CONFIG = """\
version: 1
integrations:
  - uid: shop-errors
    project: shop
    name: every error
    trigger: {event: trace}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - {id: 1234567, token: {env: HIPCHAT_TOKEN}}
        - {id: war-room, token: {env: HIPCHAT_TOKEN}}
"""


def muted(until: str, reason: str = "freeze", more: str = "") -> str:
    mute = f'{{uid: shop-errors, until: "{until}", reason: "{reason}"{more}}}'
    return CONFIG + f"mutes:\n  - {mute}\n"


def soon(days: float = 7) -> str:
    return utc(time.time() + days * 86400)


def test_validate_refuses_a_past_mute_unless_allowed_and_bounds_the_future(
    tmp_path: Path,
) -> None:
    write_files(tmp_path / "old", ("a.yaml", muted("2020-01-01T00:00:00Z")))
    write_files(tmp_path / "far", ("a.yaml", muted(soon(40))))
    refused = run_cli("validate", "old", cwd=tmp_path)
    assert refused.returncode == 1
    assert "old/a.yaml:13:31: error: $.mutes[0].until:" in refused.stdout
    assert run_cli("validate", "old", "--allow-expired-mutes", cwd=tmp_path).returncode == 0
    assert run_cli("validate", "far", cwd=tmp_path).returncode == 1
    assert run_cli("validate", "far", "--max-mute", "41d", cwd=tmp_path).returncode == 0
    as_json = run_cli("validate", "far", "--max-mute", "12h", "--format", "json", cwd=tmp_path)
    (problem,) = json.loads(as_json.stdout)["diagnostics"]
    assert (problem["line"], problem["path"]) == (13, "$.mutes[0].until")
    assert "at most 12 hours (the operator's --max-mute)" in problem["message"]
    bad = run_cli("validate", "far", "--max-mute", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "--max-mute" in bad.stderr


def test_plan_takes_the_same_flags(tmp_path: Path) -> None:
    write_files(tmp_path / "old", ("a.yaml", muted("2020-01-01T00:00:00Z")))
    assert run_cli("plan", "--config", "old", cwd=tmp_path).returncode == 2
    allowed = run_cli("plan", "--config", "old", "--allow-expired-mutes", cwd=tmp_path)
    assert allowed.returncode == 1, allowed.stdout + allowed.stderr  # a change: a create


def write_event(path: Path, **attributes: str) -> str:
    event = {"project": "shop", "fingerprint": "f1", "timestamp": "2026-11-26T12:00:00Z"}
    path.write_text(json.dumps({**event, "attributes": attributes}))
    return str(path)


def test_rules_test_says_which_mute_holds_the_event_back(tmp_path: Path) -> None:
    until = soon()
    match = ', rooms: [war-room], match: [{attribute: env, regex: "^canary$"}]'
    write_files(tmp_path / "config", ("teams/a.yaml", muted(until, "freeze\\e[2J", match)))
    canary = write_event(tmp_path / "canary.json", env="canary")
    result = run_cli("rules", "test", "--config", "config", "--event", canary, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[3] == (
        "  trigger:  trace, from a fresh state: queued for 1 room(s), 1 muted by "
        f"teams/a.yaml mutes[0] until {until} (freeze\\x1b[2J)"
    )
    prod = write_event(tmp_path / "prod.json", env="prod")
    result = run_cli("rules", "test", "--config", "config", "--event", prod, cwd=tmp_path)
    assert "from a fresh state: queued for 2 room(s)\n" in result.stdout


def test_rules_test_exits_1_when_a_mute_holds_back_every_room(tmp_path: Path) -> None:
    write_files(tmp_path / "config", ("a.yaml", muted(soon())))
    event = write_event(tmp_path / "e.json")
    result = run_cli("rules", "test", "--config", "config", "--event", event, cwd=tmp_path)
    assert result.returncode == 1
    assert "from a fresh state: muted by a.yaml mutes[0] until" in result.stdout
    assert "HipChat would receive" not in result.stdout


SUITE = """\
version: 1
start: "{start}"
defaults: {{project: shop}}
cases:
  - name: a freeze holds every room back, then its end lets errors through
    timeline:
      - at: 0s
        event: {{fingerprint: a}}
        expect: {{shop-errors: muted}}
      - at: 2h
        event: {{fingerprint: b}}
        expect: {{shop-errors: {{send: {{rooms: [1234567, war-room]}}}}}}
"""


@pytest.mark.parametrize("with_mute", [True, False])
def test_a_suite_expects_muted_and_fails_without_the_mute(tmp_path: Path, with_mute: bool) -> None:
    now = time.time()
    config = muted(utc(now + 3600)) if with_mute else CONFIG
    suite = SUITE.format(start=utc(now))
    write_files(tmp_path, ("config/a.yaml", config), ("shop.suite.yaml", suite))
    result = run_cli(
        "rules", "test", "--config", "config", "--suite", "shop.suite.yaml", cwd=tmp_path
    )
    if with_mute:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("PASS a freeze holds every room back")
    else:
        assert result.returncode == 1
        assert "    - 0s  muted\n    + 0s  send rooms=" in result.stdout


def test_replay_counts_the_events_a_mute_held_back(tmp_path: Path) -> None:
    now = int(time.time())
    write_files(tmp_path, ("old/a.yaml", CONFIG), ("new/a.yaml", muted(utc(now + 300))))
    lines = [
        json.dumps({"project": "shop", "fingerprint": f"f{n}", "timestamp": utc(now + 120 * n)})
        for n in range(5)
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli(
        "plan", "--replay", "events.jsonl", "--config", "new", "--against-config", "old",
        "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    totals = json.loads(result.stdout)["totals"]
    assert totals["muted"] == {"before": 0, "after": 3}  # at 0, 2 and 4 minutes
    assert totals["messages"] == {"before": 10, "after": 4}
