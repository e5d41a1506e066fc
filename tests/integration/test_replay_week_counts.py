"""``syncd plan --replay`` counts of a generated week, pinned: what the replay
counts for a fixed set pair and fixed events is what the daemon's ingest
decides, so any change made to take events in faster must leave every count
of every integration and room as it was.

The sets hold each kind of integration a replay meets (new groups only,
throttled per fingerprint, filtered with a mention, every event, stopped,
disabled, several rooms) and mutes (a whole integration, one room, on an
attribute, a project), and the events come in bursts so that windows
throttle and fall due, over a week so that mutes begin and end on the way.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime
from pathlib import Path

from syncd.commands.replay import run_replay, to_data

WEEK = 7 * 24 * 3600
START = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
PROJECTS = 6


def _integration(n: int, window: int) -> str:
    kind = n % 6
    trigger = {
        0: "{event: group}",
        1: f"{{event: trace, frequency: {window}}}",
        2: "{event: trace}",
        3: "{event: trace}",
        4: f"{{event: group, frequency: {window * 4}}}",
        5: f"{{event: trace, frequency: {window // 2}}}",
    }[kind]
    extra = ""
    if kind == 2:
        extra = (
            "\n    actions:"
            '\n      - {action: filter, attribute: env, regex: "^staging$"}'
            '\n      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}'
        )
    if n == 7:
        extra += "\n    state: stopped"
    if n == 9:
        extra += "\n    state: disabled"
    rooms = "".join(
        f"\n        - {{id: {1000 + (n + r) % 5}, token: {{env: HIPCHAT_TOKEN}}}}"
        for r in range(1 + n % 3)
    )
    return (
        f"  - uid: i{n}\n    project: p{n % PROJECTS}\n    name: i{n}\n"
        f"    trigger: {trigger}{extra}\n"
        f"    hipchat:\n      endpoint: https://hipchat.example.com\n      rooms:{rooms}\n"
    )


MUTES = """\
mutes:
  - {uid: i3, until: "2026-11-25T00:00:00Z", reason: freeze}
  - {uid: i5, rooms: ["1001"], until: "2026-11-27T12:00:00Z", reason: one room}
  - uid: i8
    match:
      - {attribute: env, regex: "^staging$"}
    until: "2026-11-29T00:00:00Z"
    reason: staging
  - {project: p4, until: "2026-11-24T06:00:00Z", reason: project}
"""


def _write_set(directory: Path, window: int) -> None:
    directory.mkdir()
    body = "".join(_integration(n, window) for n in range(24))
    (directory / "set.yaml").write_text(f"version: 1\nintegrations:\n{body}{MUTES}")


def _write_events(path: Path, count: int) -> None:
    rng = random.Random(11)
    bursts = [rng.uniform(0, WEEK - 900) for _ in range(30)]
    times = sorted(
        rng.uniform(0, WEEK) if rng.random() < 0.4 else rng.choice(bursts) + rng.uniform(0, 900)
        for _ in range(count)
    )
    lines = []
    for at in times:
        event = {
            "project": f"p{rng.randrange(PROJECTS + 1)}",  # p6: no integration serves it
            "fingerprint": f"f{rng.randrange(40)}",
            "timestamp": datetime.fromtimestamp(START + at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "classifiers": ["TimeoutError"],
            "attributes": {
                "env": rng.choice(("prod", "staging")),
                "team": rng.choice(("pay", "x")),
            },
        }
        lines.append(json.dumps(event, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


# The counts of the week below, as the daemon's ingest decided them when pinned:
# the totals to read, and a digest of every per-integration and per-room count.
TOTALS = {
    "messages": {"before": 16290, "after": 16850},
    "digests": {"before": 453, "after": 853},
    "mentions": {"before": 1644, "after": 1644},
    "filtered": {"before": 1180, "after": 1180},
    "throttled": {"before": 336, "after": 516},
    "muted": {"before": 607, "after": 202},
}
DIGEST = "a2390fe4b8c265153b4bf26f823526f8e1bf31351f3e81610bf4761915ee9694"


def test_a_generated_week_counts_as_pinned(tmp_path: Path) -> None:
    _write_set(tmp_path / "old", 300)
    _write_set(tmp_path / "new", 600)
    events = tmp_path / "events.jsonl"
    _write_events(events, 4000)
    result = run_replay(events, tmp_path / "new", tmp_path / "old", ())
    data = to_data(result)
    text = json.dumps(data["integrations"], sort_keys=True)
    assert data["events"] == 4000
    assert data["totals"] == TOTALS
    assert hashlib.sha256(text.encode()).hexdigest() == DIGEST
