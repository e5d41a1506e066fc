"""A day-long HipChat outage in a minute: a deep backlog, the daemon idle beside it,
then the drain once HipChat is back.

Run: python bench/outage.py [--notifications 20000] [--rooms 50] [--quick]

The daemon runs as ``syncd run`` in a child process (``--retry-max-delay 2``,
default 8 workers); the HipChat test server runs in this process and answers
every request 503 until it "recovers". Measured:

- queueing: the notifications are posted (one integration, every event to every
  room) while HipChat answers 503;
- idle: the daemon's CPU over 10 s with the backlog queued and HipChat still
  down, each room's head retried at most 2 s apart (goal < 5 % of one core);
- ingest: latency of single-event POSTs while the backlog waits (goal p50 < 20 ms);
- drain: notifications per second from HipChat's recovery to the last message
  (goal >= 1,000/s), each room's messages checked to arrive in order;
- claim: the outbox's claim-and-settle time per item at 1k, 10k and 100k queued
  rows over the same rooms, against the peer: the claim query before the heads
  table, a scan for each room's oldest row, timed on the same files.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from host import machine  # noqa: E402

from syncd.store.contract import NewItem, Settle  # noqa: E402
from syncd.store.sqlite import Outbox  # noqa: E402
from syncd.testing import Fault, HipChatServer  # noqa: E402
from tests.support.configs import room_tokens, token_env, trace_config  # noqa: E402
from tests.support.processes import Proc, spawn, wait_listening  # noqa: E402
from tests.support.stores import claim  # noqa: E402

FIRST_ROOM = 5000
IDLE_SECONDS = 10.0
GOAL_IDLE_CPU = 0.05
GOAL_POST_P50 = 0.020
GOAL_DRAIN = 1000.0
CLAIM_DEPTHS = (1_000, 10_000, 100_000)
CLAIMS_TIMED = 300

# The claim query before the heads table: every pending row checked against a
# scan for its room's oldest undelivered row.
SCAN_CLAIM = (
    "SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ? "
    "AND o.id = (SELECT min(id) FROM outbox h WHERE h.uid = o.uid "
    "AND h.room_id = o.room_id AND h.state IN ('pending', 'inflight')) "
    "ORDER BY o.next_attempt_at, o.id LIMIT 1"
)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def event(n: int) -> dict[str, Any]:
    return {
        "project": "shop",
        "fingerprint": f"fp-{n % 13}",
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": [f"Error{n}"],
        "attributes": {"n": str(n)},
    }


def cpu_seconds(proc: Proc) -> float:
    fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(proc: Proc, events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    answer = proc.post_events(events)
    if answer.status_code != 202:
        raise SystemExit(f"POST answered {answer.status_code}: {answer.text}")
    return time.perf_counter() - started


def stop(proc: Proc) -> None:
    proc.popen.terminate()
    try:
        proc.popen.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.popen.kill()


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def outage(notifications: int, room_count: int) -> dict[str, float]:
    rooms = [str(FIRST_ROOM + r) for r in range(room_count)]
    tokens = room_tokens(*rooms)
    events = notifications // room_count
    probes = 50
    total = (events + probes) * room_count
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, HipChatServer(tokens, limits=None) as hipchat:
        hipchat.inject(Fault.server_error(503), times=10**9)
        config = Path(tmp) / "config"
        config.mkdir()
        (config / "outage.yaml").write_text(trace_config(hipchat.url, rooms, uid="outage"))
        daemon = wait_listening(
            spawn(
                config,
                Path(tmp) / "state",
                "--retry-max-delay",
                "2",
                "--log-format",
                "text",
                env=token_env(tokens),
            )
        )
        try:
            started = time.perf_counter()
            for first in range(0, events, 20):
                post(daemon, [event(n) for n in range(first, min(events, first + 20))])
            figures["queue_s"] = time.perf_counter() - started
            wait(lambda: daemon.status()["outbox_depth"] >= events * room_count, 120, "the backlog")
            cpu = cpu_seconds(daemon)
            time.sleep(IDLE_SECONDS)
            figures["idle_cpu"] = (cpu_seconds(daemon) - cpu) / IDLE_SECONDS
            latencies = []
            for n in range(events, events + probes):
                latencies.append(post(daemon, [event(n)]))
                time.sleep(0.05)
            figures["post_p50"] = pct(latencies, 0.5)
            figures["post_p99"] = pct(latencies, 0.99)
            figures["attempts_down"] = len(hipchat.attempts)
            hipchat.clear_faults()
            recovered = time.perf_counter()
            cpu = cpu_seconds(daemon)
            wait(lambda: len(hipchat.messages) >= total, 600, "the drain")
            elapsed = time.perf_counter() - recovered
            figures["drain_s"] = elapsed
            figures["drain_rate"] = total / elapsed
            figures["drain_cpu_us"] = (cpu_seconds(daemon) - cpu) / total * 1e6
            check_order(hipchat, rooms, events + probes)
        finally:
            stop(daemon)
    figures["total"] = total
    return figures


def check_order(hipchat: HipChatServer, rooms: Sequence[str], expected: int) -> None:
    for room in rooms:
        got = [int(str(m.body["message"]).rsplit("n: ", 1)[1]) for m in hipchat.messages_for(room)]
        if got != list(range(expected)):
            raise SystemExit(f"room {room}: {len(got)} messages, not 0..{expected - 1} in order")


def claim_times(depth: int, room_count: int) -> tuple[float, float]:
    """Seconds per claim-and-settle with the heads table, and per scan-based claim.

    Both in the state an outage leaves: every room's head waited for a retry,
    so the items behind the heads were due before the heads were.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.db"
        clock = [1_000_000.0]
        box = Outbox(path, synchronous="NORMAL", clock=lambda: clock[0])
        with box.batch() as batch:
            batch.enqueue(
                [NewItem("u", str(n % room_count), {"n": n}) for n in range(depth)], clock[0]
            )
        for item in claim(box, room_count, 60):
            box.settle(Settle(item.id, "pending", "HTTP 503", clock[0] + 1))
        clock[0] += 2
        started = time.perf_counter()
        settled = None
        for _ in range(CLAIMS_TIMED):
            (item,) = box.settle_and_claim(settled, 1, 60)
            settled = Settle(item.id, "delivered")
        heads = (time.perf_counter() - started) / CLAIMS_TIMED
        box.settle(settled)
        box.close()
        conn = sqlite3.connect(path)
        runs = 3 if depth >= 100_000 else 10
        started = time.perf_counter()
        for _ in range(runs):
            conn.execute(SCAN_CLAIM, (clock[0],)).fetchall()
        scan = (time.perf_counter() - started) / runs
        conn.close()
    return heads, scan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2,000 notifications, claims to 10k")
    args = parser.parse_args(argv)
    notifications = 2_000 if args.quick else args.notifications
    depths = CLAIM_DEPTHS[:2] if args.quick else CLAIM_DEPTHS
    print(machine())
    print(
        f"{notifications} notifications over {args.rooms} rooms queued while HipChat answers 503; "
        "8 workers, --retry-max-delay 2"
    )
    figures = outage(notifications, args.rooms)
    print(f"queued:  {figures['total']:.0f} notifications in {figures['queue_s']:.1f} s")
    idle = figures["idle_cpu"]
    print(f"idle:    {idle * 100:.1f} % of a core over {IDLE_SECONDS:.0f} s, backlog waiting")
    print(
        f"ingest:  1-event POST p50 {figures['post_p50'] * 1000:.1f} ms, "
        f"p99 {figures['post_p99'] * 1000:.1f} ms"
    )
    print(f"         {figures['attempts_down']:.0f} requests to HipChat while it was down")
    print(
        f"drain:   {figures['drain_rate']:.0f} notifications/s "
        f"({figures['total']:.0f} in {figures['drain_s']:.1f} s, "
        f"{figures['drain_cpu_us']:.0f} us CPU each), every room in order"
    )
    print("\nclaim per item     heads table   scan (before)   scan / heads")
    for depth in depths:
        heads, scan = claim_times(depth, args.rooms)
        print(
            f"  {depth:>7} rows   {heads * 1000:8.3f} ms   {scan * 1000:10.3f} ms   "
            f"{scan / heads:10.1f}x"
        )
    print()
    verdicts = [
        (f"idle CPU < {GOAL_IDLE_CPU:.0%} of a core", idle < GOAL_IDLE_CPU, f"{idle:.1%}"),
        (
            f"1-event POST p50 < {GOAL_POST_P50 * 1000:.0f} ms",
            figures["post_p50"] < GOAL_POST_P50,
            f"{figures['post_p50'] * 1000:.1f} ms",
        ),
        (
            f"drain >= {GOAL_DRAIN:.0f}/s",
            figures["drain_rate"] >= GOAL_DRAIN,
            f"{figures['drain_rate']:.0f}/s",
        ),
    ]
    for goal, met, value in verdicts:
        print(f"goal {goal}: {value}, {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
