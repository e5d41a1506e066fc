"""``syncd validate`` speed against its peers, on generated integration files.

Run: python bench/validate.py [--sizes 1,20,200,2000] [--repeat 5] [--quick] [--before DIR]

Each size is a directory of that many files, each holding three integrations
shaped like examples/integrations.yaml (unique uids, ``{env: NAME}`` tokens).
Every tool runs as a fresh process per measurement, as users run it (a
pre-commit hook runs one per commit), and the median CPU time (user + system)
of that process is reported, which a busy machine disturbs less than the wall
time:

- ``syncd validate DIR``: YAML safety, schema, semantics (unique uids and
  names, regexes, duplicate rooms) and a line:col for every error;
- ``check-jsonschema --schemafile schemas/integrations.schema.json FILES...``:
  the same JSON Schema, nothing more (the peer);
- ``yamllint -d relaxed FILES...``: YAML parsing and style only, when installed.

syncd is also measured in-process (a child process imports it once and calls
``load_config_set`` repeatedly, wall time), and ``syncd --version`` alone, to
separate interpreter and import startup from the work itself. ``--before DIR``
also runs ``python -m syncd validate`` from another checkout (an earlier
commit), the before of a before-and-after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "integrations.schema.json"
sys.path.insert(0, str(ROOT))

from host import machine  # noqa: E402

from syncd.config.configset import load_config_set  # noqa: E402

HEADER = """\
# yaml-language-server: $schema=../schemas/integrations.schema.json
version: 1
integrations:
"""

# Three integrations per file, after the three kinds in examples/integrations.yaml.
INTEGRATIONS = """\
  # {project}: every new error group goes to the ops room; payment errors
  # mention the payments team; errors from staging hosts are dropped.
  - uid: {project}-ops
    project: {project}
    name: {project} to ops
    state: enabled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: {room}
          token: {{env: HIPCHAT_{env}_OPS_TOKEN}}
        - id: "{project} war room"
          token: {{env: HIPCHAT_{env}_WAR_TOKEN}}
      from: syncd
      color: red
      notify: true
      message_format: html
    display:
      classifiers: true
      callstack: true
      attributes: true
      attribute_list: [version, hostname, datacenter]
      include_hostname: true
    actions:
      - {{action: submit, attribute: "*", regex: ".*"}}
      - {{action: filter, attribute: environment, regex: "^staging$"}}
      - {{action: mention, attribute: team, regex: "^payments$", target: "@payments"}}
    trigger:
      event: group
      frequency: 5m
      threshold: 50

  - uid: {project}-digest
    project: {project}
    name: {project} NYC digest
    hipchat:
      endpoint: https://hipchat.example.com/
      rooms:
        - id: {room2}
          token: {{env: HIPCHAT_{env}_DIGEST_TOKEN}}
      color: gray
      message_format: text
    display:
      callstack: false
      include_hostname: false
    actions:
      - {{action: filter, attribute: "*", regex: ".*"}}
      - {{action: submit, attribute: datacenter, regex: "^nyc$"}}
    trigger:
      event: trace
      frequency: 1h30m

  - uid: {project}-alerts
    project: {project}
    name: {project} alerts
    state: {state}
    hipchat:
      endpoint: https://hipchat.internal.example.org
      rooms:
        - id: {room3}
          token: {{env: HIPCHAT_{env}_TOKEN}}
        - id: {project}-oncall
          token: {{env: HIPCHAT_{env}_ONCALL_TOKEN}}
      color: purple
    display:
      classifiers: false
      attributes: false
    trigger:
      event: group
      frequency: 30s
      threshold: 10
"""


def generate(directory: Path, count: int) -> list[Path]:
    """``count`` valid files of three integrations each; returns their paths."""
    paths = []
    for n in range(count):
        project = f"project-{n:05}"
        text = HEADER + INTEGRATIONS.format(
            project=project,
            env=f"P{n:05}",
            room=1_000_000 + 3 * n,
            room2=1_000_001 + 3 * n,
            room3=1_000_002 + 3 * n,
            state=("enabled", "disabled", "stopped")[n % 3],
        )
        path = directory / f"{project}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def tool(name: str, module: str) -> list[str] | None:
    """The command for ``name``: next to this interpreter, on PATH, or ``python -m``."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found:
        return [found]
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, check=False
    )
    return [sys.executable, "-m", module] if probe.returncode == 0 else None


def run_once(
    command: Sequence[str],
    ok_codes: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> float:
    """The CPU seconds (user + system) the command's process took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in ok_codes:
        shown = " ".join(command[:4]) + (" ..." if len(command) > 4 else "")
        raise SystemExit(
            f"{shown}: exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return elapsed


def median_time(measure: Callable[[], float], repeat: int, budget: float = 12.0) -> float:
    """Median of ``repeat`` runs; at least 3 once the runs have taken ``budget`` seconds.

    A first run shorter than a second is a warm-up (page cache, .pyc files) and is
    discarded; a longer one is dominated by the work and counts as a sample.
    """
    first = measure()
    samples = [] if first < 1.0 else [first]
    repeat = repeat * 3 if first < 0.5 else repeat  # short runs are noisy: more of them
    while len(samples) < repeat and (len(samples) < 3 or sum(samples) < budget):
        samples.append(measure())
    return statistics.median(samples)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def ratio(peer: float | None, ours: float) -> str:
    return "-" if peer is None else f"{peer / ours:.1f}x"


# Run in a child process: imports syncd once, then calls load_config_set() until it
# has made ``calls`` calls, or at least 3 and ``budget`` seconds have passed.
IN_PROCESS = """
import json, sys, time
from pathlib import Path
try:
    from syncd.config.configset import load_config_set
except ImportError:  # sources from before the sub-packages
    from syncd.configset import load_config_set
directory, calls, budget = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
times = []
while len(times) < calls and (len(times) < 3 or sum(times) < budget):
    start = time.perf_counter()
    load_config_set([directory])
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def in_process(directory: Path, calls: int, budget: float = 12.0) -> list[float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(directory), str(calls), str(budget)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    times: list[float] = json.loads(result.stdout)
    return times


def bench_size(
    count: int,
    repeat: int,
    syncd: list[str],
    jsonschema: list[str] | None,
    yamllint: list[str] | None,
    before: Path | None,
) -> tuple[list[str], float, float | None, float | None]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        directory = Path(tmp)
        files = [str(p) for p in generate(directory, count)]

        config = load_config_set([directory])
        if not config.valid or len(config.integrations) != 3 * count:
            raise SystemExit(f"generated files are not valid: {config.diagnostics[:3]}")

        cli = median_time(lambda: run_once([*syncd, "validate", str(directory)]), repeat)
        earlier = None
        if before is not None:
            env = {**os.environ, "PYTHONPATH": str(before)}
            command = [sys.executable, "-m", "syncd", "validate", str(directory)]
            # From inside the checkout: `python -m` looks in the current directory first.
            earlier = median_time(lambda: run_once(command, env=env, cwd=before), repeat)
        first, *later = in_process(directory, repeat + 1)
        peer = None
        if jsonschema:
            command = [*jsonschema, "--schemafile", str(SCHEMA), *files]
            peer = median_time(lambda: run_once(command), repeat)
        lint = None
        if yamllint:
            # Exit 1 is a lint finding (none expected), not a failure to run.
            command = [*yamllint, "-d", "relaxed", *files]
            lint = median_time(lambda: run_once(command, (0, 1)), repeat)
    row = [
        str(count),
        fmt(earlier),
        "-" if earlier is None else f"{earlier / cli:.2f}x",
        fmt(cli),
        fmt(first),
        fmt(statistics.median(later)),
        fmt(peer),
        ratio(peer, cli),
        fmt(lint),
        ratio(lint, cli),
    ]
    return row, cli, lint, earlier


def one_file_against(syncd: list[str], yamllint: list[str], pairs: int) -> float:
    """syncd's CPU over yamllint's on one file, as the median of the ratios of runs
    taken in turn: a drift of the machine's speed moves both halves of a pair."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        (path,) = generate(Path(tmp), 1)
        ours = [*syncd, "validate", str(path)]
        theirs = [*yamllint, "-d", "relaxed", str(path)]
        run_once(ours), run_once(theirs, (0, 1))  # warm-up
        ratios = [run_once(ours) / run_once(theirs, (0, 1)) for _ in range(pairs)]
    return statistics.median(ratios)


def print_table(rows: list[list[str]]) -> None:
    header = [
        "files",
        "before s",
        "speed-up",
        "syncd s",
        "1st call s",
        "next calls s",
        "check-jsonschema s",
        "ratio",
        "yamllint s",
        "ratio",
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


LEGEND = """
syncd s: `syncd validate DIR`, a fresh process each run: startup + work, CPU seconds
(so are the peers'). before s: the same from the --before checkout; speed-up: before
over now.
1st call s: load_config_set(DIR) in-process, the first call after import (includes
building the schema validator); next calls s: median of the following calls in the
same interpreter. ratio: peer time / syncd time (above 1x: syncd is faster).
syncd checks more than either peer: YAML safety (duplicate keys, anchors, YAML 1.1
traps), the schema, and semantics (unique uids across files and names within a
project, regexes, rooms listed twice), and keeps a line:col for every error;
check-jsonschema checks the schema only; yamllint only parses and lints style."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="1,20,200,2000",
        help="files per run, comma-separated (3 integrations each)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per tool (median)")
    parser.add_argument("--quick", action="store_true", help="sizes 1,20,200 only")
    parser.add_argument("--before", type=Path, help="another checkout of syncd to measure too")
    args = parser.parse_args()
    sizes = [1, 20, 200] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.repeat < 1 or not sizes or min(sizes) < 1:
        parser.error("--repeat and every size must be at least 1")

    syncd = tool("syncd", "syncd")
    if syncd is None:
        raise SystemExit("syncd is not installed in this interpreter's environment")
    jsonschema = tool("check-jsonschema", "check_jsonschema")
    yamllint = tool("yamllint", "yamllint")

    print(f"machine: {machine()}")
    print(
        f"median of {args.repeat} fresh processes per tool (3 when a run takes seconds); "
        "a short first run is a discarded warm-up"
    )
    if jsonschema is None:
        print("check-jsonschema not installed: skipped (pip install check-jsonschema)")
    if yamllint is None:
        print("yamllint not installed: skipped (pip install yamllint)")
    startup = median_time(lambda: run_once([*syncd, "--version"]), args.repeat)
    print(f"syncd startup (`syncd --version`: interpreter and imports): {startup:.3f} s")
    print()
    results = [
        bench_size(count, args.repeat, syncd, jsonschema, yamllint, args.before) for count in sizes
    ]
    print_table([row for row, *_ in results])
    print(LEGEND)
    for row, cli, _, earlier in results:
        if row[0] == "1" and yamllint is not None:
            share = one_file_against(syncd, yamllint, args.repeat * 5)
            verdict = "met" if share <= 1.1 else "NOT met"
            print(
                f"goal: one file within 1.1x of yamllint's CPU: {share:.2f}x "
                f"(median of {args.repeat * 5} interleaved pairs), {verdict}"
            )
        if row[0] == "2000" and earlier is not None:
            verdict = "met" if earlier / cli >= 2 else "NOT met"
            print(
                f"goal: 2,000 files at least 2x faster than before: {earlier / cli:.2f}x, {verdict}"
            )


if __name__ == "__main__":
    main()
