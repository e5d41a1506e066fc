"""Rule suites: how long `syncd rules test --suite` takes on a large suite.

Generates a suite of --cases cases (default 1,000) of --events events each
(default 10) against the shipped examples/integrations.yaml: each case one
project's events at random gaps (5 s to 6 min), of a few fingerprints and
attributes, so that every kind of outcome comes up (sends, mentions, filters,
throttles, groups seen before, digests at the end of windows, a stopped and a
disabled integration). What each integration does is written as a suite
would write it, from a first run in this process (rooms, title and mentions
of each message, its count line without its time), so that the suite passes
and every case is compared in full. Then times --repeat fresh processes
(default 3) of the command on it, wall clock and CPU, and prints the median
and the share of it each phase takes in-process. Goal: under 5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from host import machine  # noqa: E402

from syncd.commands.configdir import load_valid  # noqa: E402
from syncd.commands.suite import load_suite, message_text  # noqa: E402
from syncd.config import semantics  # noqa: E402
from syncd.config.reach import Reach  # noqa: E402
from syncd.events.suite import clock_text, differences, read_suite  # noqa: E402
from syncd.events.timeline import FILTERED, Happened, Outcome, Timeline  # noqa: E402

CONFIG = ROOT / "examples"
GAPS = (5, 5, 30, 45, 45, 120, 360)
PROJECTS: Mapping[str, Callable[[random.Random], dict[str, Any]]] = {
    "checkout": lambda pick: {
        "fingerprint": f"c{pick.randrange(6)}",
        "classifiers": [pick.choice(("KeyError", "ValueError", "TimeoutError"))],
        "attributes": {
            "environment": pick.choice(("production",) * 4 + ("staging",)),
            "team": pick.choice(("payments", "search", "core")),
        },
    },
    "search": lambda pick: {
        "fingerprint": f"s{pick.randrange(3)}",
        "attributes": {"datacenter": pick.choice(("nyc", "nyc", "sfo"))},
    },
    "billing": lambda pick: {"fingerprint": f"b{pick.randrange(12)}"},
}


def _events(pick: random.Random, count: int) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    project = pick.choice(list(PROJECTS))
    at, events = 0, []
    for _ in range(count):
        events.append((at, {"project": project, **PROJECTS[project](pick)}))
        at += pick.choice(GAPS)
    return project, events


def _written(outcome: Outcome) -> object:
    """An outcome as a suite writes it: details of a message without their times."""
    if outcome.kind == FILTERED:
        return {FILTERED: outcome.rule}
    if outcome.rooms is None:
        return outcome.kind
    details: dict[str, Any] = {
        "rooms": list(outcome.rooms),
        "mentions": list(outcome.mentions or ()),
    }
    if outcome.title:
        details["title"] = outcome.title.rsplit(" at ", 1)[0]
    if outcome.more:
        details["more"] = outcome.more.rsplit(" since ", 1)[0]
    return {outcome.kind: details}


def _case(name: str, events: list[tuple[int, dict[str, Any]]], happened: list[Happened]) -> str:
    times = sorted({at for at, _ in events} | {int(h.at) for h in happened})
    by_time: dict[int, dict[str, list[object]]] = {at: {} for at in times}
    for happening in happened:
        by_time[int(happening.at)].setdefault(happening.uid, []).append(_written(happening.outcome))
    event_at = dict(events)
    lines = [f"  - name: {json.dumps(name)}", "    timeline:"]
    for at in times:
        step: dict[str, Any] = {"at": clock_text(at)}
        if at in event_at:
            step["event"] = event_at[at]
        step["expect"] = {
            uid: found[0] if len(found) == 1 else found for uid, found in by_time[at].items()
        }
        lines.append(f"      - {json.dumps(step)}")
    return "\n".join(lines)


def generate(path: Path, cases: int, count: int, seed: int) -> tuple[int, int]:
    """The suite, passing by construction; how many events and steps it holds."""
    options = semantics.Options(allow_plaintext_tokens=True, reach=Reach(allow_http=True))
    timeline = Timeline(load_valid(CONFIG, options), message_text)
    pick = random.Random(seed)
    out, steps = ["version: 1", "cases:"], 0
    for index in range(cases):
        project, events = _events(pick, count)
        happened = timeline.run([(float(at), event) for at, event in events], 0.0)
        out.append(_case(f"{project} {index}", events, happened))
        steps += out[-1].count("\n") - 1
    path.write_text("\n".join(out) + "\n")
    return cases * count, steps


def _command(suite: Path) -> list[str]:
    """The command, or its entry point where this checkout's command line lacks --suite."""
    probe = subprocess.run(
        [sys.executable, "-m", "syncd", "rules", "test", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    if "--suite" in probe.stdout:
        return [
            sys.executable,
            "-m",
            "syncd",
            "rules",
            "test",
            "--config",
            str(CONFIG),
            "--suite",
            str(suite),
        ]
    code = (
        "import sys; from pathlib import Path; from syncd.commands.suite import run_suite; "
        f"sys.exit(run_suite(Path({str(CONFIG)!r}), Path({str(suite)!r})))"
    )
    return [sys.executable, "-c", code]


def _timed(command: list[str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"the suite did not pass ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr}")
    return wall, cpu, done.returncode


def _phases(suite: Path) -> Iterator[tuple[str, float]]:
    """Where the time goes, in this process (imports already paid), with the
    cyclic collector off as the command has it."""
    gc.disable()
    start = time.perf_counter()
    options = semantics.Options(allow_plaintext_tokens=True, reach=Reach(allow_http=True))
    config = load_valid(CONFIG, options)
    loaded = load_suite(suite)
    yield "read the YAML", time.perf_counter() - start
    start = time.perf_counter()
    read, problems = read_suite(loaded, {i.uid for i in config.integrations})
    assert read is not None, problems
    yield "schema, times, uids, events", time.perf_counter() - start
    start = time.perf_counter()
    timeline = Timeline(config, message_text)
    runs = [timeline.run(case.events, read.start) for case in read.cases]
    yield "run the timelines", time.perf_counter() - start
    start = time.perf_counter()
    assert not any(differences(case, run) for case, run in zip(read.cases, runs, strict=True))
    yield "compare", time.perf_counter() - start
    gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as work:
        suite = Path(work) / "bench.suite.yaml"
        events, steps = generate(suite, args.cases, args.events, args.seed)
        size = suite.stat().st_size
        print(
            f"suite: {args.cases:,} cases, {events:,} events, {steps:,} steps, "
            f"{size / 2**20:.1f} MiB, against {CONFIG.relative_to(ROOT)}/ (seed {args.seed})"
        )
        command = _command(suite)
        print(
            "command: "
            + ("syncd rules test --suite" if "-m" in command else "run_suite() (entry point)")
        )
        runs = [_timed(command) for _ in range(args.repeat)]
        wall = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        print(f"fresh process, median of {args.repeat}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        print(f"load average while measured: {os.getloadavg()[0]:.2f} (others' work too)")
        print(f"goal: under 5 s on 2 cores: {'met' if wall < 5 else 'NOT met'}")
        for phase, seconds in _phases(suite):
            print(f"  in-process {phase:30} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
