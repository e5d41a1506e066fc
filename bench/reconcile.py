"""Reconcile speed and memory at 10,000 and 50,000 integrations, and the write-to-
registry latency of the running daemon.

Run: python bench/reconcile.py [--sizes 10000,50000] [--rounds 20] [--edits 20]
                               [--before DIR] [--measures ...] [--quick]
                               [--resync-sizes 50000] [--idle-window 300]

Each config is a directory of one-integration files (bench/corpus.py's shape).
Every figure comes from a fresh child process, so one measurement's memory and
caches do not reach the next:

- one change: a file among N is edited and the set applied again; the median of
  ``--rounds`` rounds. syncd is told the changed path, as its watcher tells it,
  and applies the change to the registry it serves; and the change's
  "applied" log record through the log's redaction, the first to mask the
  new set's tokens;
- startup: the daemon (``Daemon.start``: outbox, first load and apply, HTTP
  server) on N files, until it serves;
- peak RSS with N integrations loaded and applied, as the daemon keeps them;
- write to registry: the daemon running on N files, one file rewritten, until
  the registry serves the change (median of ``--edits`` edits);
- last-known-good save: the set saved once, then a file among N edited,
  loaded by name and saved again (median of ``--rounds``; an older syncd,
  which rewrites the whole copy, gets 3), wall and CPU time;
- at the sizes in ``--resync-sizes``, a real ``syncd run`` (``run_args``):
  its CPU over ``--idle-window`` seconds with nothing changing, once its first
  last-known-good save is done, resyncs at the default period (60 s), as a
  share of one core, and the resyncs it ran meanwhile (each one is an open of
  the config dir, bench/dirwatch.py); the same with no resync
  (``--resync-interval 0``), what the rest of the daemon costs; then, with
  ``--resync-interval 3``, files edited the moment a resync begins, each until
  the daemon logs it applied (``--resync-edits`` of them).

``--measures`` picks among change, daemon, lastgood and resync (all by
default). ``--quick``: 2,000 files, 5 rounds, a 30 s window at a 5 s period.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from corpus import INTEGRATION  # noqa: E402
from dirwatch import DirOpens  # noqa: E402
from host import machine  # noqa: E402
from running import Daemon  # noqa: E402

# The endpoint every generated integration names; nothing is sent to it.
ENDPOINT = "https://hipchat.example.com"
MEASURES = ("change", "daemon", "lastgood", "resync")

GOALS = {  # (measure, files): goal, in the measure's unit
    ("change_ms", 10_000): 50.0,
    ("change_ms", 50_000): 100.0,
    ("startup_s", 10_000): 5.0,
    ("peak_mib", 50_000): 300.0,
    ("lkg_change_ms", 50_000): 20.0,
    ("idle_cpu_pct", 50_000): 1.0,
    ("during_resync_ms", 50_000): 200.0,
}

# The child: run with the syncd sources to measure first on sys.path.
CHILD = r"""
import gc, inspect, json, os, resource, shutil, statistics, sys, tempfile, time
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
    times, naive, logged = [], [], []
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
        logged.append(applied_line(registry.snapshot, r))
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
            "naive_ms": statistics.median(naive) * 1000, "peak_mib": peak,
            "log_line_ms": statistics.median(logged) * 1000}

def applied_line(snapshot, r):
    # The change's "applied" record through the daemon's log filter, the first
    # record to mask the new set's tokens: its seconds.
    import logging
    from syncd.config.secrets import RedactingFilter
    if hasattr(snapshot, "redactor"):
        masking = RedactingFilter(lambda: (snapshot.redactor,))
    else:  # sources from before the redactor: the tokens, asked for at each record
        masking = RedactingFilter(lambda: snapshot.secrets())
    args = ("sha256:3439afd3d501f896", f"updated integration-{r:05}")
    record = logging.LogRecord("syncd", logging.INFO, "", 1, "applied %s: %s", args, None)
    start = time.perf_counter()
    masking.filter(record)
    return time.perf_counter() - start

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

def lastgood():
    from syncd.reconcile import lastgood as saved
    loader = ConfigLoader()
    take = getattr(loader, "take_changes", lambda: None)
    take()
    config = loader.load([directory])
    state = Path(tempfile.mkdtemp(prefix="syncd-lkg-"))
    target = state / "last-known-good"
    if hasattr(saved, "LastGood"):
        store = saved.LastGood(target)
        save = lambda config, revision, changes: store.save(config, revision, directory, changes)
        count = rounds
    else:  # a copy rewritten whole at every save
        save = lambda config, revision, changes: saved.save(target, config, revision, directory)
        count = min(rounds, 3)
    take()
    start, cpu = time.perf_counter(), time.process_time()
    if not save(config, "r0", None):
        sys.exit("the first save failed")
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    times, cpus = [], []
    for r in range(count):
        n = (r * 7919) % files
        name = write(n, 100 + r)
        config = loader.load([directory], changed=[name])
        changes = take()
        start, cpu = time.perf_counter(), time.process_time()
        if not save(config, f"r{r + 1}", changes):
            sys.exit(f"round {r}: the save failed")
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        write(n, 50)
        config = loader.load([directory], changed=[name])
        if not save(config, f"r{r + 1}b", take()):
            sys.exit(f"round {r}: the save back failed")
    shutil.rmtree(state)
    return {"lkg_first_s": first, "lkg_first_cpu_s": first_cpu,
            "lkg_change_ms": statistics.median(times) * 1000,
            "lkg_change_cpu_ms": statistics.median(cpus) * 1000,
            "lkg_change_max_ms": max(times) * 1000}

KINDS = {"change": change, "daemon": daemon, "lastgood": lastgood}
print(json.dumps(KINDS[kind]()))
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


def run_args(config: Path, state: Path, resync_interval: float) -> list[str]:
    """Every ``syncd run`` of this bench, built here alone: a free loopback port,
    text logs (the bench reads them), the resync period measured, and the
    endpoint policy the generated integrations need."""
    return [
        sys.executable,
        "-m",
        "syncd",
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "text",
        "--resync-interval",
        f"{resync_interval:g}",
        "--allow-endpoint",
        ENDPOINT,
        # A first load of 50,000 files takes longer than the default 30 s on 2 cores.
        "--reconcile-timeout",
        "600",
    ]


def start_daemon(source: Path, directory: Path, state: Path, interval: float) -> Daemon:
    daemon = Daemon(
        run_args(directory, state, interval),
        source,
        {"HIPCHAT_BENCH_TOKEN": "bench-token"},
        directory.parent,
    )
    daemon.wait_count("listening on", 1, timeout=3600)
    return daemon


def settle(daemon: Daemon, state: Path, seconds: float = 600.0) -> None:
    """Until the daemon's first last-known-good save is done (the copy is there and
    the daemon used under a tenth of a core for five seconds: the save's end, a
    sweep of the store, may follow a wait on the disk), or ``seconds``. Not no
    CPU at all: a daemon resyncing 50,000 files every 3 s uses 5% of a core."""
    deadline = time.monotonic() + seconds
    while not (state / "last-known-good").exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    marks = [(time.monotonic(), daemon.cpu())]
    while time.monotonic() < deadline:
        time.sleep(0.25)
        marks.append((time.monotonic(), daemon.cpu()))
        while len(marks) > 2 and marks[-1][0] - marks[1][0] >= 5.0:
            marks.pop(0)
        (began, used_then), (now, used) = marks[0], marks[-1]
        if now - began >= 5.0 and used - used_then < 0.1 * (now - began):
            return


def idle_resyncs(source: Path, directory: Path, window: float, interval: float) -> dict[str, float]:
    """The daemon's CPU over ``window`` seconds with nothing changing: with resyncs
    every ``interval`` seconds, and with none (what the rest of the daemon costs)."""
    quiet = idle_cpu(source, directory, window, 0)
    with_resyncs = idle_cpu(source, directory, window, interval)
    used, resyncs = with_resyncs["cpu_s"], with_resyncs["resyncs"]
    return {
        "idle_cpu_pct": used / window * 100,
        "idle_resyncs": resyncs,
        "resync_cpu_ms": (used - quiet["cpu_s"]) / resyncs * 1000 if resyncs else 0.0,
        "idle_quiet_pct": quiet["cpu_s"] / window * 100,
    }


def idle_cpu(source: Path, directory: Path, window: float, interval: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="syncd-state-") as state:
        opens = DirOpens(directory)
        daemon = start_daemon(source, directory, Path(state), interval)
        try:
            settle(daemon, Path(state))
            before, cpu = opens.drain(), daemon.cpu()
            time.sleep(window)
            used, resyncs = daemon.cpu() - cpu, opens.drain() - before
        finally:
            daemon.stop()
            opens.close()
    return {"cpu_s": used, "resyncs": resyncs}


def edits_during_resyncs(source: Path, directory: Path, files: int, edits: int) -> dict[str, float]:
    """Files edited the moment a resync begins (the config dir opened), each until
    the daemon logs it applied."""
    latencies = []
    with tempfile.TemporaryDirectory(prefix="syncd-state-") as state:
        opens = DirOpens(directory)
        daemon = start_daemon(source, directory, Path(state), 3.0)
        try:
            settle(daemon, Path(state))
            opens.drain()
            for e in range(edits):
                if not opens.wait(900):
                    raise SystemExit(f"no resync within 900 s:\n{daemon.log[-2000:]}")
                applied = daemon.count(" applied ")
                n = (e * 104729 + 17) % files
                started = time.monotonic()
                edit(directory, n, 5000 + e)
                latencies.append(daemon.wait_count(" applied ", applied + 1, 900) - started)
        finally:
            daemon.stop()
            opens.close()
        for e in range(edits):
            edit(directory, (e * 104729 + 17) % files, 50)
    return {
        "during_resync_ms": statistics.median(latencies) * 1000,
        "during_resync_max_ms": max(latencies) * 1000,
    }


def edit(directory: Path, n: int, threshold: int) -> None:
    uid = f"integration-{n:05}"
    text = INTEGRATION.format(uid=uid, project=n % 50, state="enabled", room=1000 + n)
    text = text.replace("threshold: 50", f"threshold: {threshold}")
    (directory / f"{uid}.yaml").write_text("version: 1\nintegrations:\n" + text)


ROWS = [
    ("change_ms", "one changed file, loaded and applied", "ms"),
    ("log_line_ms", "  its log line through the log's redaction", "ms"),
    ("naive_ms", "peer: a full re-read and check of every file", "ms"),
    ("first_s", "first load and apply", "s"),
    ("peak_mib", "peak RSS, set loaded and applied", "MiB"),
    ("startup_s", "daemon start, until it serves", "s"),
    ("startup_cpu_s", "daemon start, CPU", "s"),
    ("write_ms", "daemon: file written -> registry serves it", "ms"),
    ("lkg_first_s", "last-known-good: first save of the set", "s"),
    ("lkg_first_cpu_s", "last-known-good: first save, CPU", "s"),
    ("lkg_change_ms", "last-known-good: save after a one-file change", "ms"),
    ("lkg_change_cpu_ms", "last-known-good: same, CPU", "ms"),
    ("lkg_change_max_ms", "last-known-good: same, slowest", "ms"),
    ("idle_cpu_pct", "daemon idle, resyncing: CPU, % of a core", "%"),
    ("idle_resyncs", "  resyncs in the window", ""),
    ("idle_quiet_pct", "  the same daemon with no resync", "%"),
    ("resync_cpu_ms", "  CPU per resync (the difference / resyncs)", "ms"),
    ("during_resync_ms", "edit landing as a resync begins -> applied", "ms"),
    ("during_resync_max_ms", "  slowest of them", "ms"),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", help="files (one integration each; default 10000,50000)")
    parser.add_argument("--rounds", type=int, help="changes timed per size (default 20)")
    parser.add_argument("--edits", type=int, default=10, help="daemon edits timed per size")
    parser.add_argument("--before", type=Path, help="another checkout of syncd to measure too")
    parser.add_argument(
        "--measures", default=",".join(MEASURES), help=f"some of {', '.join(MEASURES)}"
    )
    parser.add_argument("--resync-sizes", help="sizes the daemon's resync is measured at (50000)")
    parser.add_argument("--idle-window", type=float, help="seconds of idle CPU measured (300)")
    parser.add_argument("--resync-edits", type=int, default=5, help="edits during resyncs")
    parser.add_argument("--quick", action="store_true", help="2,000 files, short windows")
    args = parser.parse_args()
    quick = args.quick
    sizes = [int(s) for s in (args.sizes or ("2000" if quick else "10000,50000")).split(",")]
    resync_sizes = {
        int(s) for s in (args.resync_sizes or ("2000" if quick else "50000")).split(",")
    }
    rounds = args.rounds or (5 if quick else 20)
    window = args.idle_window or (30.0 if quick else 300.0)
    interval = 5.0 if quick else 60.0
    measures = set(args.measures.split(","))
    sources = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    print(f"machine: {machine()}")
    if "resync" in measures:
        print(
            f"syncd run --resync-interval {interval:g} (idle, {window:g} s window) or 3 (edits) "
            f"--log-format text --allow-endpoint {ENDPOINT} --reconcile-timeout 600, every "
            "other flag at its default"
        )
    for files in sizes:
        with tempfile.TemporaryDirectory(prefix="syncd-reconcile-") as tmp:
            directory = Path(tmp) / "config"
            directory.mkdir()
            generate(directory, files)
            results: dict[str, dict[str, float]] = {}
            for label, source in sources:
                figures: dict[str, float] = {}
                for kind in ("change", "daemon", "lastgood"):
                    if kind in measures:
                        figures.update(measure(source, kind, directory, files, rounds))
                if "resync" in measures and files in resync_sizes:
                    figures.update(idle_resyncs(source, directory, window, interval))
                    figures.update(
                        edits_during_resyncs(source, directory, files, args.resync_edits)
                    )
                results[label] = figures
            shutil.rmtree(directory)
        print_size(files, results)


def print_size(files: int, results: dict[str, dict[str, float]]) -> None:
    labels = list(results)
    print(f"\n{files:,} files, one integration each")
    header = ["measure", *labels, "goal", "verdict"]
    table = [header]
    for key, title, unit in ROWS:
        if not all(key in results[label] for label in labels):
            continue
        cells = [f"{results[label][key]:,.1f} {unit}".rstrip() for label in labels]
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
