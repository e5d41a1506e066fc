"""Replay: how long `syncd plan --replay` takes, and how much memory, on a week of events.

Generates --integrations integrations (default 1,000), --per-project of them
(default 10) per project, so each event goes through that many,
of four kinds in turn (new groups only; every event throttled per fingerprint
with a 5 minute window; every event with a filter and a mention on attributes;
every event at once), an old set and a new one in which each throttled window
is twice as long; then --events events (default 1,000,000) over those projects,
a few hundred fingerprints each, over seven days in timestamp order, as JSONL.
Times one `syncd plan --replay --config NEW --against-config OLD` process (both
sets, so every event goes through ingest twice), wall clock, and its peak RSS.
Goal at the defaults: under 60 s and under 500 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from host import machine  # noqa: E402

WEEK = 7 * 24 * 3600
START = datetime(2026, 11, 23, tzinfo=UTC).timestamp()


def integration(n: int, window: int, per_project: int) -> str:
    kind = n % 4
    trigger = {
        0: "{event: group}",
        1: f"{{event: trace, frequency: {window}}}",
        2: "{event: trace}",
        3: "{event: trace}",
    }[kind]
    actions = (
        '\n    actions:\n      - {action: filter, attribute: env, regex: "^staging$"}'
        '\n      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}'
        if kind == 2
        else ""
    )
    return (
        f"  - uid: i{n}\n    project: p{n // per_project}\n    name: i{n}\n"
        f"    trigger: {trigger}{actions}\n"
        "    hipchat:\n      endpoint: https://hipchat.example.com\n"
        f"      rooms:\n        - {{id: {1000 + n % 50}, token: {{env: HIPCHAT_TOKEN}}}}\n"
    )


def write_set(directory: Path, count: int, window: int, per_project: int) -> None:
    directory.mkdir(parents=True)
    for first in range(0, count, 100):
        body = "".join(
            integration(n, window, per_project) for n in range(first, min(count, first + 100))
        )
        (directory / f"set{first // 100}.yaml").write_text(f"version: 1\nintegrations:\n{body}")


def write_events(path: Path, count: int, projects: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    step = WEEK / count
    with path.open("w") as out:
        for i in range(count):
            stamp = datetime.fromtimestamp(START + i * step, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            event = {
                "project": f"p{rng.randrange(projects)}",
                "fingerprint": f"f{rng.randrange(300)}",
                "timestamp": stamp,
                "classifiers": ["TimeoutError"],
                "attributes": {"env": rng.choice(("prod", "staging")), "team": "pay"},
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--integrations", type=int, default=1_000)
    parser.add_argument(
        "--per-project",
        type=int,
        default=10,
        help="integrations per project (each event's fan-out)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_set(root / "old", args.integrations, 300, args.per_project)
        write_set(root / "new", args.integrations, 600, args.per_project)
        events = root / "events.jsonl"
        made = time.perf_counter()
        write_events(events, args.events, max(1, args.integrations // args.per_project))
        print(f"generated {args.events:,} events in {time.perf_counter() - made:.1f} s")
        command = [
            *(sys.executable, "-m", "syncd", "plan", "--replay", str(events)),
            *("--config", str(root / "new"), "--against-config", str(root / "old")),
            *("--format", "json"),
        ]
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - began
        load_after = os.getloadavg()[0]
    if done.returncode != 0:
        sys.exit(f"replay failed ({done.returncode}): {done.stderr}")
    totals = json.loads(done.stdout)["totals"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = children.ru_maxrss / 1024
    cpu = children.ru_utime + children.ru_stime  # both processes, whatever the load
    print(machine())
    print(
        f"replay of {args.events:,} events through {args.integrations:,} integrations "
        f"({args.per_project} per project; old and new set): {wall:.1f} s, peak RSS {peak:.0f} MiB"
    )
    print(f"messages {totals['messages']}, digests {totals['digests']}")
    # The machine is shared: a wall time means little without the load it ran under.
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
    print(f"CPU time of the replay (both processes): {cpu:.1f} s")
    print(f"per 1,000,000 events: {wall * 1_000_000 / args.events:.0f} s")


if __name__ == "__main__":
    main()
