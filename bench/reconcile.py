"""Reconcile speed: one changed file among many, and file-write-to-registry latency.

Run: python bench/reconcile.py [--files 2000] [--edits 200]

Peer: a naive reconcile that re-parses and re-validates every file on each
change (what a loader without a per-file cache does), measured side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpus import INTEGRATION  # noqa: E402
from host import machine  # noqa: E402

from syncd.configset import ConfigLoader, load_config_set  # noqa: E402
from syncd.registry import Registry  # noqa: E402


def write(directory: Path, n: int, state: str = "enabled") -> None:
    uid = f"integration-{n:05}"
    text = "version: 1\nintegrations:\n" + INTEGRATION.format(
        uid=uid, project=n % 50, state=state, room=1000 + n
    )
    (directory / f"{uid}.yaml").write_text(text)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_change_among(files: int, rounds: int) -> None:
    os.environ["HIPCHAT_BENCH_TOKEN"] = "bench-token"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n in range(files):
            write(directory, n)
        loader = ConfigLoader()
        registry = Registry()
        registry.apply(loader.load([directory]), "r0")
        cached, naive = [], []
        for r in range(rounds):
            write(directory, r % files, state="disabled" if (r // files) % 2 == 0 else "enabled")
            start = time.perf_counter()
            outcome = registry.apply(loader.load([directory]), f"r{r + 1}")
            cached.append(time.perf_counter() - start)
            if not (outcome.ok and outcome.plan and len(outcome.plan.update) == 1):
                raise SystemExit(f"round {r}: expected exactly one update")
            start = time.perf_counter()
            load_config_set([directory])
            naive.append(time.perf_counter() - start)
        c, n = statistics.median(cached), statistics.median(naive)
        print(f"one changed file among {files} files ({rounds} rounds, median):")
        print(f"  syncd (cached loader + plan + swap): {c * 1000:8.1f} ms   goal < 50 ms")
        print(f"  naive full re-parse and validate:    {n * 1000:8.1f} ms")
        print(f"  ratio naive / syncd:                 {n / c:8.1f}x")


def write_to_registry_latency(edits: int) -> None:
    from syncd.daemon import Daemon, DaemonConfig

    os.environ["HIPCHAT_BENCH_TOKEN"] = "bench-token"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n in range(20):
            write(directory, n)
        state = Path(tmp + "-state")
        daemon = Daemon(DaemonConfig(directory, state_dir=state, port=0))
        daemon.start()
        try:
            latencies = []
            for e in range(edits):
                state = "disabled" if e % 2 == 0 else "enabled"
                start = time.perf_counter()
                write(directory, 0, state=state)
                deadline = start + 10
                notifiers = daemon.registry.snapshot.notifiers
                while notifiers["integration-00000"].integration.state != state:
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"edit {e} not applied within 10 s")
                    time.sleep(0.001)
                    notifiers = daemon.registry.snapshot.notifiers
                latencies.append(time.perf_counter() - start)
        finally:
            daemon.shutdown()
    print(f"file write -> registry updated ({edits} edits, debounce quiet 150 ms, max 1 s):")
    print(f"  p50 {pct(latencies, 0.5) * 1000:7.1f} ms   goal < 250 ms")
    print(f"  p99 {pct(latencies, 0.99) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--edits", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    one_change_among(args.files, args.rounds)
    if args.edits:
        write_to_registry_latency(args.edits)


if __name__ == "__main__":
    main()
