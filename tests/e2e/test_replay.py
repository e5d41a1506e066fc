"""``syncd plan --replay``: recorded events through two sets on a virtual clock,
checked against what a real ``syncd run`` sends for the same events, and
``syncd run --record-events`` writing the file a replay reads."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.testing.hipchat_server import HipChatServer
from tests.support.configs import write_files
from tests.support.events import TIMESTAMP
from tests.support.processes import run_syncd, start
from tests.support.waiting import wait_for

TOKENS = {"2001": "replay-token-room-2001", "2002": "replay-token-room-2002"}
ENV = {f"HIPCHAT_TOKEN_{room}": token for room, token in TOKENS.items()}
WINDOW = 2  # seconds: the throttle window the daemon must see end within the test


def config(endpoint: str, frequency: str) -> str:
    """Three integrations of project shop: one throttled per fingerprint, one that
    filters staging and mentions @pay, one for new groups in both rooms."""
    return f"""\
version: 1
integrations:
  - uid: shop-throttled
    project: shop
    name: throttled
    trigger: {{event: trace{frequency}}}
    hipchat:
      endpoint: {endpoint}
      rooms:
        - {{id: 2001, token: {{env: HIPCHAT_TOKEN_2001}}}}
  - uid: shop-filtered
    project: shop
    name: filtered
    trigger: {{event: trace}}
    actions:
      - {{action: filter, attribute: env, regex: "^staging$"}}
      - {{action: mention, attribute: team, regex: "^pay$", target: "@pay"}}
    hipchat:
      endpoint: {endpoint}
      rooms:
        - {{id: 2002, token: {{env: HIPCHAT_TOKEN_2002}}}}
  - uid: shop-groups
    project: shop
    name: groups
    hipchat:
      endpoint: {endpoint}
      rooms:
        - {{id: 2001, token: {{env: HIPCHAT_TOKEN_2001}}}}
        - {{id: 2002, token: {{env: HIPCHAT_TOKEN_2002}}}}
"""


def events(count: int = 30) -> list[dict[str, Any]]:
    return [
        {
            "project": "shop",
            "fingerprint": f"fp-{n % 3}",
            "timestamp": TIMESTAMP,
            "attributes": {"env": "staging" if n % 4 == 0 else "prod", "team": "pay"},
        }
        for n in range(count)
    ]


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in items))
    return path


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


@pytest.fixture
def sets(tmp_path: Path, hipchat: HipChatServer) -> tuple[Path, Path]:
    """The old set (every event of a fingerprint sent) and the new (throttled)."""
    old = write_files(tmp_path / "old", ("shop.yaml", config(hipchat.url, "")))
    new = write_files(
        tmp_path / "new", ("shop.yaml", config(hipchat.url, f", frequency: {WINDOW}"))
    )
    return old, new


def replay(tmp_path: Path, *args: str) -> Any:
    done = run_syncd("plan", "--format", "json", "--replay", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def per_room(data: Any, side: str) -> dict[str, int]:
    rooms: dict[str, int] = {}
    for integration in data["integrations"].values():
        for room, counts in integration["rooms"].items():
            rooms[room] = rooms.get(room, 0) + counts["messages"][side]
    return rooms


def test_replay_counts_equal_what_the_daemon_sends(
    tmp_path: Path, sets: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    _old, new = sets
    recorded = write_jsonl(tmp_path / "events.jsonl", events())
    expected = per_room(replay(tmp_path, str(recorded), "--config", str(new)), "after")
    # 3 fingerprints, each sent once and then a digest, plus 3 new groups; 22 of
    # 30 events not from staging, plus the 3 new groups.
    assert expected == {"2001": 9, "2002": 25}

    proc = start(new, tmp_path / "state", env=ENV)
    try:
        posted = time.monotonic()
        answer = proc.post_events([json.loads(line) for line in recorded.read_text().splitlines()])
        assert answer.status_code == 202, answer.text

        def sent() -> dict[str, int]:
            return {room: len(hipchat.messages_for(room)) for room in TOKENS}

        wait_for(lambda: sent() == expected, timeout=30, what=f"{expected}, sent {sent()}")
        # Past the end of every window and with nothing queued, nothing more comes.
        wait_for(
            lambda: time.monotonic() > posted + WINDOW + 2 and proc.status()["outbox_depth"] == 0,
            timeout=30,
        )
        assert sent() == expected
    finally:
        proc.stop()
    assert not any(token in proc.log for token in TOKENS.values())


def test_a_longer_frequency_shows_fewer_messages(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    old, new = sets
    recorded = write_jsonl(tmp_path / "events.jsonl", events())
    data = replay(tmp_path, str(recorded), "--config", str(new), "--against-config", str(old))
    throttled = data["integrations"]["shop-throttled"]
    assert throttled["rooms"]["2001"]["messages"] == {"before": 30, "after": 3 + 3}
    assert throttled["rooms"]["2001"]["digests"] == {"before": 0, "after": 3}
    assert throttled["throttled"] == {"before": 0, "after": 27}
    assert data["totals"]["messages"]["after"] < data["totals"]["messages"]["before"]
    top = [(c["integration"], c["room"], c["field"], c["change"]) for c in data["top_changes"]]
    assert top[:3] == [
        ("shop-throttled", None, "throttled", 27),
        ("shop-throttled", "2001", "messages", -24),
        ("shop-throttled", "2001", "digests", 3),
    ]
    filtered = data["integrations"]["shop-filtered"]
    assert filtered["filtered"] == {"before": 8, "after": 8}
    assert filtered["rooms"]["2002"]["mentions"] == {"before": 22, "after": 22}


def test_a_bad_line_is_an_error_naming_file_and_line(
    tmp_path: Path, sets: tuple[Path, Path]
) -> None:
    _old, new = sets
    good = json.dumps(events(1)[0])
    for bad, why in (
        ("{not json", "not a JSON event"),
        ('{"project": "shop"}', "invalid event"),
        ("[" + good + "]", "expected one event (a JSON object) per line"),
    ):
        recorded = tmp_path / "events.jsonl"
        recorded.write_text(f"{good}\n\n{good}\n{bad}\n{good}\n")
        done = run_syncd("plan", "--replay", str(recorded), "--config", str(new), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert f"{recorded}:4: {why}" in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


def test_markdown_for_a_pull_request(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    old, new = sets
    recorded = write_jsonl(tmp_path / "events.jsonl", events())
    done = run_syncd(
        *("plan", "--replay", str(recorded), "--config", str(new)),
        *("--against-config", str(old), "--format", "markdown"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("### Replay of 30 event(s)")
    assert "| `shop-throttled` | 2001 | messages | 30 -> 6 (-24) |" in lines
    assert "| messages | 58 -> 34 (-24) |" in lines
    assert any(line.startswith("- `shop-") for line in lines)


def test_the_new_set_alone(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    _old, new = sets
    recorded = write_jsonl(tmp_path / "events.jsonl", events())
    data = replay(tmp_path, str(recorded), "--config", str(new))
    assert data["compared"] is False
    assert data["totals"]["messages"] == {"before": None, "after": 34}
    assert data["top_changes"] == []
    text = run_syncd("plan", "--replay", str(recorded), "--config", str(new), cwd=tmp_path)
    assert text.returncode == 0
    assert "through the new set alone" in text.stdout


def test_the_daemon_records_what_it_accepted(
    tmp_path: Path, sets: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    _old, new = sets
    record = tmp_path / "recorded"
    proc = start(new, tmp_path / "state", "--record-events", str(record), env=ENV)
    try:
        sent = events(5)
        assert proc.post_events(sent[:2]).status_code == 202
        assert proc.post_events(sent[2]).status_code == 202
        refused = proc.post_events({"project": "shop"})
        assert refused.status_code == 400
        assert proc.post_events(sent[3:]).status_code == 202
        files = lambda: sorted(record.glob("events-*.jsonl"))  # noqa: E731
        wait_for(lambda: files() and len(files()[0].read_text().splitlines()) == 5)
    finally:
        proc.stop()
    (written,) = files()
    assert [json.loads(line) for line in written.read_text().splitlines()] == sent
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    data = replay(tmp_path, str(written), "--config", str(new))
    assert data["events"] == 5


def test_a_recorder_that_cannot_write_never_fails_ingest(
    tmp_path: Path, sets: tuple[Path, Path], hipchat: HipChatServer
) -> None:
    _old, new = sets
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_text("")
    proc = start(new, tmp_path / "state", "--record-events", str(in_the_way), env=ENV)
    try:
        for event in events(3):
            assert proc.post_events(event).status_code == 202
        wait_for(lambda: "could not record accepted events" in proc.log, what=proc.log)
        wait_for(lambda: len(hipchat.messages_for("2002")) == 2 + 3)  # one from staging
    finally:
        proc.stop()
    assert proc.log.count("could not record accepted events") == 1  # once a minute at most
