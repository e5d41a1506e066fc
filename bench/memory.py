"""Peak memory of the daemon, and of loading and applying many integrations.

Run: python bench/memory.py [--sizes 10000,50000] [--edits 100] [--resyncs 10]
                            [--before DIR] [--quick]
     python bench/memory.py --loader [--files 1000] [--per-file 10] [--repeat 3]
     python bench/memory.py --trace [--files 50000] [--top 30]

By default, the daemon itself: a real ``syncd run`` (``run_args``) on a
directory of one-integration files (bench/corpus.py's shape), its own peak RSS
read from ``/proc/PID/status`` (``VmHWM``) when it is ready (it logs
"listening on"), after ``--edits`` edits (one file rewritten, each waited for
until the daemon logs it applied), and after ``--resyncs`` more resyncs (the
daemon runs with ``--resync-interval 2``; each resync is seen as an open of the
config dir, bench/dirwatch.py). ``--before DIR`` runs another checkout of syncd
the same way. ``--quick``: 2,000 and 10,000 files, 20 edits, 3 resyncs.

With ``--loader``, the loader alone in a bare interpreter instead:
generates ``--files`` files of ``--per-file`` integrations each (10,000
integrations by default), then measures, each in a fresh interpreter, the peak
RSS (``resource.getrusage`` ``ru_maxrss``):

- baseline: the interpreter with syncd's loader and registry imported;
- syncd: ``ConfigLoader().load([DIR])`` applied to a ``Registry``, with the
  loader (and its per-file cache, as the daemon keeps it) and the registry alive;
- peer, a lower bound: ``yaml.safe_load`` of every file, the results kept in a
  list, in an interpreter that imported only yaml. (check-jsonschema does not
  keep a set in memory, so it is no peer for memory.)

Also printed: the RSS still held after the load, once garbage is collected
(``VmRSS``, Linux only), which is what a running daemon keeps.

With ``--trace``, where the memory goes, in one process: ``--files``
one-integration files (50,000 by default) loaded as the daemon loads them
(its loader, registry and options), then what each later step of a running
daemon holds at its peak and keeps: the first last-known-good save (whole),
a resync that finds nothing (the fingerprints copied, the directory walked),
a one-file change, and a walk that finds nothing changed (SIGHUP). Counted by
tracemalloc (Python's own allocations, not RSS); the ``--top`` lines that
hold most of what the loaded set keeps are listed with their share per file.
Tracing makes the load several times slower.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from corpus import INTEGRATION
from dirwatch import DirOpens
from host import machine
from running import Daemon

ROOT = Path(__file__).resolve().parents[1]
GOAL_MIB = 150.0
DAEMON_GOAL_MIB = 250.0  # at 50,000 files, at ready and after the resyncs
# The endpoint every generated integration names; nothing is sent to it.
ENDPOINT = "https://hipchat.example.com"
RESYNC_INTERVAL = 2.0


def generate(directory: Path, files: int, per_file: int) -> None:
    for f in range(files):
        parts = ["version: 1\nintegrations:\n"]
        for k in range(per_file):
            n = f * per_file + k
            uid = f"integration-{n:06}"
            state = ("enabled", "disabled")[n % 2]
            parts.append(INTEGRATION.format(uid=uid, project=n % 50, state=state, room=100_000 + n))
        (directory / f"file-{f:05}.yaml").write_text("".join(parts), encoding="utf-8")


# Run in a fresh interpreter per measurement; prints one JSON line.
CHILD = """
import gc, json, resource, sys, time
from pathlib import Path

def rss_now():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None

def peak():
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

mode, directory, expected = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
kept = None
start = time.perf_counter()
if mode == "baseline":
    import syncd.registry
elif mode == "syncd":
    try:
        from syncd.config.filecache import ConfigLoader
    except ImportError:  # sources from before the sub-packages
        try:
            from syncd.filecache import ConfigLoader
        except ImportError:  # sources from before the loader had its own module
            from syncd.configset import ConfigLoader
    from syncd.registry import Registry
    loader, registry = ConfigLoader(), Registry()
    outcome = registry.apply(loader.load([directory]), "r1")
    if not outcome.ok or len(registry.snapshot.notifiers) != expected:
        sys.exit(f"apply failed: {[str(d) for d in outcome.diagnostics[:3]]}")
    kept = (loader, registry)
elif mode == "yaml-baseline":
    import yaml
elif mode == "yaml":
    import yaml
    kept = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.yaml"))]
    if sum(len(d["integrations"]) for d in kept) != expected:
        sys.exit("yaml: wrong number of integrations")
seconds = time.perf_counter() - start
gc.collect()
print(json.dumps({"peak": peak(), "retained": rss_now(), "seconds": seconds}))
"""


def measure(mode: str, directory: Path, expected: int) -> dict[str, float | None]:
    env = {
        **os.environ,
        "HIPCHAT_BENCH_TOKEN": "bench-token",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(directory), str(expected)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode}: exit {result.returncode}\n{result.stderr[-2000:]}")
    figures: dict[str, float | None] = json.loads(result.stdout)
    return figures


def median_of(runs: list[dict[str, float | None]], key: str) -> float | None:
    values = [r[key] for r in runs]
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.1f}"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loader", action="store_true", help="the loader alone, no daemon")
    parser.add_argument("--trace", action="store_true", help="where the memory goes (tracemalloc)")
    parser.add_argument("--top", type=int, default=30, help="--trace: lines listed")
    parser.add_argument("--sizes", help="files (one integration each; default 10000,50000)")
    parser.add_argument("--edits", type=int, help="edits before the second reading (100)")
    parser.add_argument("--resyncs", type=int, help="resyncs before the third reading (10)")
    parser.add_argument("--before", type=Path, help="another checkout of syncd to measure too")
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000 files, fewer")
    parser.add_argument("--files", type=int, help="--loader: files (1000); --trace: (50000)")
    parser.add_argument("--per-file", type=int, default=10, help="--loader: integrations per file")
    parser.add_argument("--repeat", type=int, default=3, help="--loader: fresh processes (median)")
    args = parser.parse_args()
    if args.trace:
        trace_main(args.files or 50_000, args.top)
    elif args.loader:
        args.files = args.files or 1000
        loader_main(args)
    else:
        daemon_main(args)


# The daemon: its own peak RSS.


def run_args(config: Path, state: Path) -> list[str]:
    """Every ``syncd run`` of this bench, built here alone: a free loopback port,
    text logs (the bench reads them), a short resync period, and the endpoint
    policy the generated integrations need."""
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
        f"{RESYNC_INTERVAL:g}",
        "--allow-endpoint",
        ENDPOINT,
        # A first load of 50,000 files takes longer than the default 30 s on 2 cores.
        "--reconcile-timeout",
        "600",
    ]


def generate_one_each(directory: Path, files: int) -> None:
    for n in range(files):
        uid = f"integration-{n:05}"
        text = INTEGRATION.format(uid=uid, project=n % 50, state="enabled", room=1000 + n)
        (directory / f"{uid}.yaml").write_text("version: 1\nintegrations:\n" + text)


def edit(directory: Path, n: int, threshold: int) -> None:
    uid = f"integration-{n:05}"
    text = INTEGRATION.format(uid=uid, project=n % 50, state="enabled", room=1000 + n)
    text = text.replace("threshold: 50", f"threshold: {threshold}")
    (directory / f"{uid}.yaml").write_text("version: 1\nintegrations:\n" + text)


def measure_daemon(source: Path, files: int, edits: int, resyncs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="syncd-memory-") as tmp:
        config = Path(tmp) / "config"
        config.mkdir()
        generate_one_each(config, files)
        opens = DirOpens(config)
        started = time.monotonic()
        daemon = Daemon(
            run_args(config, Path(tmp) / "state"),
            source,
            {"HIPCHAT_BENCH_TOKEN": "bench-token"},
            Path(tmp),
        )
        try:
            daemon.wait_count("listening on", 1, timeout=1800)
            figures = {"ready_s": time.monotonic() - started, "ready": daemon.status("VmHWM")}
            at_start = opens.drain()  # the first reconcile's walk
            applied = daemon.count(" applied ")
            for e in range(edits):
                edit(config, (e * 7919) % files, 1000 + e)
                daemon.wait_count(" applied ", applied + e + 1, timeout=600)
            figures["edits"] = daemon.status("VmHWM")
            figures["resyncs_by_then"] = opens.drain() - at_start
            target = opens.count + resyncs
            # A resync that re-reads every file (an older syncd) takes minutes at 50,000.
            deadline = time.monotonic() + resyncs * (RESYNC_INTERVAL + 300)
            while opens.count < target:
                if not opens.wait(max(0.0, deadline - time.monotonic())):
                    raise SystemExit(f"fewer than {resyncs} resyncs:\n{daemon.log[-2000:]}")
            time.sleep(0.2)  # the last one's comparison, after its walk
            figures["resyncs"] = daemon.status("VmHWM")
            figures["rss_now"] = daemon.status("VmRSS")
            figures["resyncs_seen"] = opens.drain() - at_start
        finally:
            daemon.stop()
            opens.close()
    return figures


def daemon_main(args: argparse.Namespace) -> None:
    sizes = [
        int(n) for n in (args.sizes or ("2000,10000" if args.quick else "10000,50000")).split(",")
    ]
    edits = args.edits if args.edits is not None else (20 if args.quick else 100)
    resyncs = args.resyncs if args.resyncs is not None else (3 if args.quick else 10)
    sources = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    print(f"machine: {machine()}")
    print(
        f"syncd run --resync-interval {RESYNC_INTERVAL:g} --log-format text --allow-endpoint "
        f"{ENDPOINT} --reconcile-timeout 600 (every other flag at its default), one "
        "integration per file; peak RSS is the daemon's own VmHWM from /proc/PID/status"
    )
    for files in sizes:
        results = {
            label: measure_daemon(source, files, edits, resyncs) for label, source in sources
        }
        print(f"\n{files:,} files")
        rows = [["", *results]]
        rows.append(["ready after", *(f"{r['ready_s']:.1f} s" for r in results.values())])
        rows.append(["peak RSS at ready", *(mib(r["ready"]) + " MiB" for r in results.values())])
        rows.append(
            [f"peak RSS after {edits} edits", *(mib(r["edits"]) + " MiB" for r in results.values())]
        )
        rows.append(
            [
                f"peak RSS after {resyncs} more resyncs",
                *(mib(r["resyncs"]) + " MiB" for r in results.values()),
            ]
        )
        rows.append(["RSS at the end", *(mib(r["rss_now"]) + " MiB" for r in results.values())])
        rows.append(
            [
                "resyncs seen (by the edits' end / in all)",
                *(
                    f"{r['resyncs_by_then']:.0f} / {r['resyncs_seen']:.0f}"
                    for r in results.values()
                ),
            ]
        )
        print_table(rows)
        if files == 50_000:
            after = results["after"]
            worst = max(after["ready"], after["resyncs"]) / (1 << 20)
            verdict = "met" if worst < DAEMON_GOAL_MIB else "NOT met"
            goal = f"peak RSS < {DAEMON_GOAL_MIB:.0f} MiB at ready and after the resyncs"
            print(f"goal: {goal}: {verdict}")


# Where the memory goes.


def trace_main(files: int, top: int) -> None:
    os.environ["HIPCHAT_BENCH_TOKEN"] = "bench-token"
    sys.path.insert(0, str(ROOT))
    from syncd.config import semantics
    from syncd.config.configset import ConfigSet
    from syncd.config.filecache import ConfigLoader
    from syncd.config.reach import Reach
    from syncd.reconcile.lastgood import LastGood
    from syncd.registry import Registry
    from syncd.service import daemon  # noqa: F401  everything a daemon imports, before counting

    print(f"machine: {machine()}")
    print(f"{files:,} one-integration files; tracemalloc: Python's allocations, per phase")
    options = semantics.Options(
        refuse_plaintext_tokens=True, reach=Reach(allowed_endpoints=(ENDPOINT,))
    )
    with tempfile.TemporaryDirectory(prefix="syncd-trace-") as tmp:
        config = Path(tmp) / "config"
        config.mkdir()
        generate_one_each(config, files)
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.take_snapshot()
        loader, registry = ConfigLoader(options), Registry()
        rows = [["", "peak MiB", "kept after MiB", "s"]]

        def phase(label: str, step: Callable[[], object]) -> None:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            began = time.perf_counter()
            step()
            seconds = time.perf_counter() - began
            peak = tracemalloc.get_traced_memory()[1]
            gc.collect()
            now = tracemalloc.get_traced_memory()[0]
            rows.append([label, mib(peak - before), mib(now - before), f"{seconds:.1f}"])

        held: dict[str, ConfigSet] = {}

        def first() -> None:
            held["set"] = loaded = loader.load([config])
            if not registry.apply(loaded, "r1").ok:
                raise SystemExit("the set did not apply")

        phase("load and apply", first)
        kept = tracemalloc.take_snapshot()
        store = LastGood(Path(tmp) / "state" / "last-known-good")
        phase("first last-known-good save", lambda: store.save(held.pop("set"), "r1", config))
        phase("resync, nothing changed", lambda: loader.differences(config, loader.baseline()))

        def change() -> None:
            edit(config, files // 2, 1001)
            registry.apply(
                loader.load([config], changed=[f"integration-{files // 2:05}.yaml"]),
                "r2",
                reuse_tokens=True,
            )

        phase("one file changed", change)
        phase("walk, nothing changed", lambda: registry.apply(loader.load([config]), "r3"))
        print()
        print_table(rows)
        stats = kept.compare_to(start, "lineno")
        total = sum(stat.size_diff for stat in stats)
        print(
            f"\nkept once loaded and applied: {mib(total)} MiB, {total / files:,.0f} bytes a file"
        )
        lines = [["where", "MiB", "bytes a file", "blocks"]]
        for stat in stats[:top]:
            frame = stat.traceback[0]
            where = f"{_short(frame.filename)}:{frame.lineno}"
            lines.append(
                [
                    where,
                    mib(stat.size_diff),
                    f"{stat.size_diff / files:.0f}",
                    f"{stat.count_diff:,}",
                ]
            )
        print_table(lines)


def _short(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


# The loader alone.


def loader_main(args: argparse.Namespace) -> None:
    if min(args.files, args.per_file, args.repeat) < 1:
        raise SystemExit("--files, --per-file and --repeat must be at least 1")
    total = args.files * args.per_file

    print(f"machine: {machine()}")
    print(
        f"{total} integrations in {args.files} files of {args.per_file}; peak RSS "
        f"(ru_maxrss) of a fresh interpreter per measurement, median of {args.repeat}"
    )
    modes = ("baseline", "syncd", "yaml-baseline", "yaml")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        generate(directory, args.files, args.per_file)
        size = sum(p.stat().st_size for p in directory.iterdir())
        print(
            f"generated {size / (1 << 20):.1f} MiB of YAML in {time.perf_counter() - started:.1f} s"
        )
        runs: dict[str, list[dict[str, float | None]]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode in modes:
                runs[mode].append(measure(mode, directory, total))
    peak = {m: median_of(runs[m], "peak") or 0.0 for m in modes}
    retained = {m: median_of(runs[m], "retained") for m in modes}
    seconds = {m: median_of(runs[m], "seconds") for m in modes}

    syncd_delta = peak["syncd"] - peak["baseline"]
    yaml_delta = peak["yaml"] - peak["yaml-baseline"]
    print()
    rows = [
        ["", "peak RSS MiB", "retained MiB", "load s"],
        [
            "python + syncd imported (baseline)",
            mib(peak["baseline"]),
            mib(retained["baseline"]),
            "-",
        ],
        [
            "syncd: load + apply",
            mib(peak["syncd"]),
            mib(retained["syncd"]),
            f"{seconds['syncd'] or 0:.2f}",
        ],
        ["  difference", mib(syncd_delta), "-", "-"],
        ["python + yaml imported", mib(peak["yaml-baseline"]), mib(retained["yaml-baseline"]), "-"],
        [
            "yaml.safe_load, all kept",
            mib(peak["yaml"]),
            mib(retained["yaml"]),
            f"{seconds['yaml'] or 0:.2f}",
        ],
        ["  difference", mib(yaml_delta), "-", "-"],
    ]
    print_table(rows)
    print()
    print(f"ratio syncd / yaml.safe_load, peak RSS:       {peak['syncd'] / peak['yaml']:.1f}x")
    over = f"{syncd_delta / yaml_delta:.1f}x" if yaml_delta > 0 else "- (too few files to tell)"
    print(f"ratio syncd / yaml.safe_load, over baselines: {over}")
    print(f"per integration, syncd over baseline:         {syncd_delta / total / 1024:.1f} KiB")
    verdict = "met" if peak["syncd"] / (1 << 20) < GOAL_MIB else "NOT met"
    print(
        f"goal: peak RSS < {GOAL_MIB:.0f} MiB for {total} integrations: "
        f"{mib(peak['syncd'])} MiB, {verdict}"
    )


if __name__ == "__main__":
    main()
