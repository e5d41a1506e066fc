"""``syncd rules test``: what an example event would do, for review in git and CI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.processes import run_syncd

EXAMPLES = str(ROOT / "examples")


def write_event(tmp_path: Path, **attributes: str) -> str:
    path = tmp_path / "event.json"
    event = {
        "project": "checkout",
        "fingerprint": "f1",
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": ["KeyError"],
        "attributes": attributes,
    }
    path.write_text(json.dumps(event))
    return str(path)


def test_a_payments_error_notifies_with_its_mention_and_the_message(tmp_path: Path) -> None:
    event = write_event(tmp_path, team="payments", environment="production")
    result = run_syncd("rules", "test", "--config", EXAMPLES, "--event", event, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "checkout-ops (Checkout to ops, enabled):",
        f"  actions:  decided by actions[0] (submit) at {EXAMPLES}/integrations.yaml:31:9",
        "  mentions: @payments",
        "  trigger:  group, from a fresh state: queued for 2 room(s)",
    ]
    body = json.loads("\n".join(lines[5:-1]))
    assert body["message"].startswith("@payments\nError in checkout: KeyError")
    assert (body["color"], body["notify"], body["message_format"]) == ("red", True, "text")


def test_a_staging_error_is_filtered_and_exits_1(tmp_path: Path) -> None:
    event = write_event(tmp_path, team="payments", environment="staging")
    result = run_syncd("rules", "test", "--config", EXAMPLES, "--event", event, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:4] == [
        f"  actions:  decided by actions[1] (filter) at {EXAMPLES}/integrations.yaml:32:9",
        "  mentions: none",
        "  trigger:  group, from a fresh state: filtered by actions[1]",
    ]


def test_a_seen_fingerprint_and_bad_input(tmp_path: Path) -> None:
    event = write_event(tmp_path)
    seen = run_syncd(
        "rules", "test", "--config", EXAMPLES, "--event", event, "--seen-before", cwd=tmp_path
    )
    assert seen.returncode == 1
    assert "not a new error group (trigger: group)" in seen.stdout
    (tmp_path / "bad.json").write_text('{"project": "checkout"}')
    bad = run_syncd(
        "rules", "test", "--config", EXAMPLES, "--event", str(tmp_path / "bad.json"), cwd=tmp_path
    )
    assert bad.returncode == 2
    assert "is not a valid event: $: 'fingerprint' is a required property" in bad.stderr
