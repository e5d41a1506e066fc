"""What one POST /v1/events may cost a running ``syncd run``, from outside.

Each finding was a small request that cost the daemon far more than its size:
a fan-out to a million notifications, a 60 MB answer, fingerprints kept for a
project nobody serves, a 10 MB list of problems, a megabyte attribute searched
by every action. Each is bounded here, with the bound named in the answer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.events import event
from tests.support.processes import Proc, run_syncd, spawn, terminate, wait_listening

INTEGRATIONS = 11  # x 1,000 events: 11,000 notifications, over the default 10,000


def fan_out_config(count: int) -> str:
    """``count`` stopped integrations (nothing is sent, all is queued) on project shop."""
    listed = "".join(
        f"  - uid: fan-{n}\n    project: shop\n    name: fan {n}\n    state: stopped\n"
        "    trigger: {event: trace}\n"
        "    hipchat:\n      endpoint: https://hipchat.example.com\n"
        "      rooms: [{id: 1, token: {env: HIPCHAT_FAN}}]\n"
        for n in range(count)
    )
    return "version: 1\nintegrations:\n" + listed


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Proc]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "fan.yaml").write_text(fan_out_config(INTEGRATIONS))
    proc = wait_listening(spawn(config, tmp_path / "state", env={"HIPCHAT_FAN": "fan-token"}))
    try:
        yield proc
    finally:
        assert terminate(proc) == 0, proc.log[-3000:]


def post(proc: Proc, payload: object) -> requests.Response:
    return requests.post(
        proc.url + "/v1/events",
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )


def events(count: int, project: str = "shop", **fields: Any) -> list[dict[str, Any]]:
    return [event(project, f"fp-{n}", **fields) for n in range(count)]


def test_a_post_that_would_fan_out_past_the_limit_is_a_413_and_stores_nothing(
    daemon: Proc,
) -> None:
    refused = post(daemon, events(1000))
    assert refused.status_code == 413, refused.text[:500]
    error = refused.json()["error"]
    assert error["limit"] == 10_000
    assert "over the limit of 10,000 notifications per request" in error["message"]
    assert "the first 910 event(s) alone would store 10,010" in error["message"]
    assert "nothing was stored" in error["message"]
    assert daemon.status()["outbox_depth"] == 0
    accepted = post(daemon, events(900))
    assert accepted.status_code == 202, accepted.text[:500]
    assert accepted.json()["notifications"] == 900 * INTEGRATIONS
    assert daemon.status()["outbox_depth"] == 900 * INTEGRATIONS


def test_the_answer_to_a_large_fan_out_counts_reasons_per_integration(daemon: Proc) -> None:
    answer = post(daemon, events(900))
    assert answer.status_code == 202
    # Was one line per event and integration: 9,900 lines, 600 KB.
    assert len(answer.content) < 80_000, len(answer.content)
    body = answer.json()
    assert "events" not in body
    assert len(body["ids"]) == body["accepted"] == 900
    assert body["integrations"]["fan-0"] == {
        "notifications": 900,
        "events": {"queued for 1 room(s), held while stopped": 900},
    }
    assert len(body["integrations"]) == INTEGRATIONS


def test_a_one_event_answer_keeps_its_reasons_per_event(daemon: Proc) -> None:
    body = post(daemon, event("shop", "one")).json()
    (only,) = body["events"]
    assert only["notifications"] == INTEGRATIONS
    assert only["why"][0] == "fan-0: queued for 1 room(s), held while stopped"
    assert body["integrations"]["fan-3"]["notifications"] == 1


def test_events_of_a_project_no_integration_serves_store_nothing(
    daemon: Proc, tmp_path: Path
) -> None:
    answer = post(daemon, events(1000, project="nobody", attributes={"a": "x" * 500}))
    assert answer.status_code == 202
    assert (answer.json()["notifications"], answer.json()["no_integration"]) == (0, 1000)
    assert terminate(daemon) == 0
    with sqlite3.connect(tmp_path / "state" / "outbox.db") as db:
        assert db.execute("SELECT count(*) FROM fingerprints").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def test_a_request_with_thousands_of_problems_lists_100_and_counts_the_events_with_problems(
    daemon: Proc,
) -> None:
    bad = [*events(999, classifiers=[1] * 99), event("shop", "fine")]
    answer = post(daemon, bad)
    assert answer.status_code == 400
    # Was every one of 99,000 problems: 10 MB.
    assert len(answer.content) < 30_000, len(answer.content)
    error = answer.json()["error"]
    assert len(error["problems"]) == 100
    assert error["events_with_problems"] == 999
    assert error["message"] == (
        "invalid event: 999 of 1,000 event(s) have problems; the first 100 problems "
        "are listed, the others not counted"
    )
    assert error["problems"][0] == {
        "path": "$[0].classifiers[0]",
        "message": "1 is not of type 'string'",
    }


def test_a_long_value_is_not_repeated_in_its_problem(daemon: Proc) -> None:
    answer = post(daemon, event("shop", "f", classifiers="x" * 60_000))
    assert answer.status_code == 400
    assert len(answer.content) < 2_000, len(answer.content)
    (problem,) = answer.json()["error"]["problems"]
    assert problem["message"].endswith("…") and len(problem["message"]) == 300


def test_an_attribute_value_over_its_bound_is_a_400_at_its_path(daemon: Proc) -> None:
    answer = post(daemon, event("shop", "f", attributes={"team": "x" * 4097}))
    assert answer.status_code == 400
    assert answer.json()["error"]["problems"] == [
        {"path": "$.attributes.team", "message": "longer than 4096 characters"}
    ]
    name = post(daemon, event("shop", "f", attributes={"n" * 201: "v"}))
    assert name.status_code == 400
    assert name.json()["error"]["problems"] == [
        {"path": "$.attributes", "message": "an attribute name longer than 200 characters"}
    ]
    assert post(daemon, event("shop", "f", attributes={"team": "x" * 4096})).status_code == 202


def test_an_event_over_its_bound_is_a_413_naming_it(daemon: Proc) -> None:
    big = event("shop", "f", callstack=["frame " + "x" * 994] * 70)
    answer = post(daemon, [event("shop", "small"), big])
    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert message.startswith("the event at $[1] is 70,")
    assert message.endswith("bytes as compact JSON, over the limit of 65,536 bytes per event")
    assert daemon.status()["outbox_depth"] == 0


def test_emit_prints_the_counts_when_a_project_has_too_many_integrations_to_list(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "fan.yaml").write_text(fan_out_config(120))
    proc = wait_listening(spawn(config, tmp_path / "state", env={"HIPCHAT_FAN": "fan-token"}))
    try:
        emitted = run_syncd(
            "emit", "--url", proc.url, "--project", "shop", "--fingerprint", "x", cwd=tmp_path
        )
        assert emitted.returncode == 0, emitted.stderr
        lines = emitted.stdout.splitlines()
        assert lines[0].endswith(": 120 notification(s) queued")
        assert lines[1] == "  fan-0: queued for 1 room(s), held while stopped"
        assert lines[-1] == "  and 20 more integration(s)"
        assert len(lines) == 102
    finally:
        assert terminate(proc) == 0
