"""``syncd rules test``: what an example event would do, for review in git and CI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.paths import ROOT

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
    result = run_cli("rules", "test", "--config", EXAMPLES, "--event", event, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "checkout-ops (Checkout to ops, enabled):",
        f"  actions:  decided by actions[0] (submit) at {EXAMPLES}/integrations.yaml:31:9",
        "  mentions: @payments",
        "  trigger:  group, from a fresh state: queued for 2 room(s)",
    ]
    assert lines[4:8] == [
        "  each action, top down:",
        '    actions[0] submit on any attribute, regex ".*": matched "payments" in '
        'team="payments" (characters 1-8)',
        '    actions[1] filter on environment, regex "^staging$": no match in '
        'environment="production"',
        '    actions[2] mention @payments on team, regex "^payments$": matched "payments" in '
        'team="payments" (characters 1-8)',
    ]
    start = lines.index("  HipChat would receive (POST /v2/room/{id}/notification):")
    body = json.loads("\n".join(lines[start + 1 : -1]))
    # The fingerprint is new from a fresh state, so the message says so.
    assert body["message"].startswith("@payments\nNew error in checkout: KeyError")
    assert (body["color"], body["notify"], body["message_format"]) == ("red", True, "text")


def test_a_staging_error_is_filtered_and_exits_1(tmp_path: Path) -> None:
    event = write_event(tmp_path, team="payments", environment="staging")
    result = run_cli("rules", "test", "--config", EXAMPLES, "--event", event, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:4] == [
        f"  actions:  decided by actions[1] (filter) at {EXAMPLES}/integrations.yaml:32:9",
        "  mentions: none",
        "  trigger:  group, from a fresh state: filtered by actions[1]",
    ]


UNANCHORED = """\
version: 1
integrations:
  - uid: nyc
    project: checkout
    name: NYC only
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 1, token: {env: HIPCHAT_T}}]
    actions:
      - {action: filter, attribute: "*", regex: ".*"}
      - {action: submit, attribute: datacenter, regex: "nyc"}
      - {action: submit, attribute: owner, regex: "x"}
"""


def test_the_matched_part_shows_what_an_unanchored_regex_found(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "nyc.yaml").write_text(UNANCHORED)
    event = write_event(tmp_path, datacenter="east-nyc2", team="a")
    result = run_cli(
        "rules", "test", "--config", str(tmp_path / "config"), "--event", event, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[5:8] == [
        '    actions[0] filter on any attribute, regex ".*": matched "east-nyc2" in '
        'datacenter="east-nyc2" (characters 1-9)',
        '    actions[1] submit on datacenter, regex "nyc": matched "nyc" in '
        'datacenter="east-nyc2" (characters 6-8)',
        '    actions[2] submit on owner, regex "x": no match: the event has no attribute owner',
    ]


def test_a_seen_fingerprint_and_bad_input(tmp_path: Path) -> None:
    event = write_event(tmp_path)
    seen = run_cli(
        "rules",
        "test",
        "--config",
        EXAMPLES,
        "--event",
        event,
        "--seen-before",
        cwd=tmp_path,
    )
    assert seen.returncode == 1
    assert "not a new error group (trigger: group)" in seen.stdout
    (tmp_path / "bad.json").write_text('{"project": "checkout"}')
    bad = run_cli(
        "rules",
        "test",
        "--config",
        EXAMPLES,
        "--event",
        str(tmp_path / "bad.json"),
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "is not a valid event: $: 'fingerprint' is a required property" in bad.stderr


def test_a_config_with_a_plain_http_endpoint_is_tested_since_nothing_is_sent(
    tmp_path: Path,
) -> None:
    """The tour's endpoint is plain http on loopback: an error for the daemon without
    --allow-http-endpoint, but rules test sends nothing and takes no such flag."""
    event = tmp_path / "tour-event.json"
    event.write_text(
        json.dumps(
            {
                "project": "tour",
                "fingerprint": "f1",
                "timestamp": "2026-11-26T12:00:00Z",
                "classifiers": ["KeyError"],
            }
        )
    )
    result = run_cli(
        "rules", "test", "--config", str(ROOT / "examples" / "tour"), "--event", str(event),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr
