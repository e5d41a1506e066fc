"""Reconcile speed and memory at 10,000 and 50,000 integrations, and the write-to-
registry latency of the running daemon.

Run: python bench/reconcile.py [--sizes 10000,50000] [--rounds 20] [--edits 20]
                               [--before DIR]

Each config is a directory of one-integration files (bench/corpus.py's shape).
Every figure comes from a fresh child process, so one measurement's memory and
caches do not reach the next:

- one change: a file among N is edited and the set applied again; the median of
  ``--rounds`` rounds. syncd is told the changed path, as its watcher tells it,
  and applies the change to the registry it serves;
- startup: the daemon (``Daemon.start``: outbox, first load and apply, HTTP
  server) on N files, until it serves;
- peak RSS with N integrations loaded and applied, as the daemon keeps them;
- write to registry: the daemon running on N files, one file rewritten, until
  the registry serves the change (median of ``--edits`` edits).

``--before DIR`` also measures another checkout of syncd (an earlier commit,
say) with the same bench, the before of a before-and-after: an older loader is
given no changed paths, since it cannot take them. The peer for one change is
a full re-read and check of every file (``load_config_set``), what a loader
without a per-file cache does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from corpus import INTEGRATION  # noqa: E402
from host import machine  # noqa: E402

GOALS = {  # (measure, files): goal, in the measure's unit
    ("change_ms", 10_000): 50.0,
    ("change_ms", 50_000): 100.0,
    ("startup_s", 10_000): 5.0,
    ("peak_mib", 50_000): 300.0,
}

# The child: run with the syncd sources to measure first on sys.path.
CHILD = r"""
import gc, inspect, json, os, resource, statistics, sys, tempfile, time
from pathlib import Path

kind, directory, files, rounds = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.environ["HIPCHAT_BENCH_TOKEN"] = "bench-token"
try:
    from syncd.config.filecache import ConfigLoader
    from syncd.config.configset import load_config_set
except ImportError:  # sources from before the sub-packages
    try:
        from syncd.filecache import ConfigLoader
    except ImportError:  # sources from before the daemon's loader had its own module
        from syncd.configset import ConfigLoader
    from syncd.configset import load_config_set
from syncd.registry import Registry

TEXT = (Path(sys.argv[5]).read_text())

def write(n, threshold):
    uid = f"integration-{n:05}"
    text = TEXT.format(uid=uid, project=n % 50, state="enabled", room=1000 + n)
    (directory / f"{uid}.yaml").write_text(
        "version: 1\nintegrations:\n" + text.replace("threshold: 50", f"threshold: {threshold}")
    )
    return f"{uid}.yaml"

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def change():
    loader, registry = ConfigLoader(), Registry()
    start = time.perf_counter()
    registry.apply(loader.load([directory]), "r0")
    first = time.perf_counter() - start
    named = "changed" in inspect.signature(loader.load).parameters
    reuse = "reuse_tokens" in inspect.signature(registry.apply).parameters
    times, naive = [], []
    # A loader that reads every file on each change gets fewer rounds.
    for r in range(rounds if named else min(rounds, 5)):
        name = write((r * 7919) % files, 100 + r)
        start = time.perf_counter()
        config = loader.load([directory], changed=[name]) if named else loader.load([directory])
        extra = {"reuse_tokens": True} if reuse else {}
        outcome = registry.apply(config, f"r{r + 1}", **extra)
        times.append(time.perf_counter() - start)
        if not (outcome.ok and outcome.plan and len(outcome.plan.update) == 1):
            sys.exit(f"round {r}: expected exactly one update")
    peak = peak_mib()  # before the peer's loads, which hold a whole set of their own
    del loader, registry
    gc.collect()
    for _ in range(3):
        start = time.perf_counter()
        load_config_set([directory])
        naive.append(time.perf_counter() - start)
    for n in {(r * 7919) % files for r in range(rounds)}:
        write(n, 50)
    return {"change_ms": statistics.median(times) * 1000, "first_s": first,
            "naive_ms": statistics.median(naive) * 1000, "peak_mib": peak}

def daemon():
    from syncd.service.daemon import Daemon, DaemonConfig
    # An older daemon may still be copying its last-known-good set after it stopped.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as state:
        start = time.perf_counter()
        cpu = time.process_time()
        d = Daemon(DaemonConfig(directory, state_dir=Path(state), port=0))
        if not d.start().ok:
            sys.exit("the daemon did not start")
        startup, startup_cpu = time.perf_counter() - start, time.process_time() - cpu
        latencies = []
        try:
            for e in range(rounds):
                n = (e * 104729) % files
                uid = f"integration-{n:05}"
                start = time.perf_counter()
                write(n, 1000 + e)
                deadline = start + 300
                while d.registry.snapshot.notifiers[uid].integration.trigger.threshold != 1000 + e:
                    if time.perf_counter() > deadline:
                        sys.exit(f"edit {e} not applied within 300 s")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - start)
        finally:
            d.shutdown()
        for e in range(rounds):
            write((e * 104729) % files, 50)
    return {"startup_s": startup, "startup_cpu_s": startup_cpu,
            "write_ms": statistics.median(latencies) * 1000}

print(json.dumps(change() if kind == "change" else daemon()))
"""


def generate(directory: Path, files: int) -> None:
    for n in range(files):
        uid = f"integration-{n:05}"
        text = INTEGRATION.format(uid=uid, project=n % 50, state="enabled", room=1000 + n)
        (directory / f"{uid}.yaml").write_text("version: 1\nintegrations:\n" + text)


def measure(source: Path, kind: str, directory: Path, files: int, rounds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as template:
        template.write(INTEGRATION)
    env = {**os.environ, "PYTHONPATH": str(source)}
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                kind,
                str(directory),
                str(files),
                str(rounds),
                template.name,
            ],
            env=env,
            cwd=directory.parent,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    finally:
        os.unlink(template.name)
    if result.returncode != 0:
        raise SystemExit(f"{kind} at {files} files ({source}): {result.stderr.strip()[-2000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


ROWS = [
    ("change_ms", "one changed file, loaded and applied", "ms"),
    ("naive_ms", "peer: a full re-read and check of every file", "ms"),
    ("first_s", "first load and apply", "s"),
    ("peak_mib", "peak RSS, set loaded and applied", "MiB"),
    ("startup_s", "daemon start, until it serves", "s"),
    ("startup_cpu_s", "daemon start, CPU", "s"),
    ("write_ms", "daemon: file written -> registry serves it", "ms"),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,50000", help="files (one integration each)")
    parser.add_argument("--rounds", type=int, default=20, help="changes timed per size")
    parser.add_argument("--edits", type=int, default=10, help="daemon edits timed per size")
    parser.add_argument("--before", type=Path, help="another checkout of syncd to measure too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sources = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    print(f"machine: {machine()}")
    for files in sizes:
        with tempfile.TemporaryDirectory(prefix="syncd-reconcile-") as tmp:
            directory = Path(tmp) / "config"
            directory.mkdir()
            generate(directory, files)
            results = {}
            for label, source in sources:
                figures = measure(source, "change", directory, files, args.rounds)
                figures.update(measure(source, "daemon", directory, files, args.edits))
                results[label] = figures
            shutil.rmtree(directory)
        print_size(files, results)


def print_size(files: int, results: dict[str, dict[str, float]]) -> None:
    labels = list(results)
    print(f"\n{files:,} files, one integration each")
    header = ["measure", *labels, "goal", "verdict"]
    table = [header]
    for key, title, unit in ROWS:
        cells = [f"{results[label][key]:,.1f} {unit}" for label in labels]
        goal = GOALS.get((key, files))
        verdict = ""
        if goal is not None:
            verdict = "met" if results["after"][key] < goal else "NOT met"
        table.append([title, *cells, f"< {goal:,.0f} {unit}" if goal else "", verdict])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
