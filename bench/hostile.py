"""Hostile inputs against well-formed inputs of the same size, through the same path.

Run: python bench/hostile.py [--quick] [--repeat N] [--only 1,3,6]

Each finding of the third hostile round was a small input that cost
``syncd validate`` or ``syncd run`` far more than its size. Here each hostile
input is measured again, black-box, beside a well-formed input of the same
size sent through the same path, and the ratio printed (hostile over
well-formed; for a rate, well-formed over hostile): the goal is a ratio of 2
or less. Where a hostile input is now refused early (a 413, a 400, a validate
error), the figure is the cost of that refusal, against the cost of taking the
well-formed request of the same size.

Everything runs as it does for users: ``syncd validate FILE`` and ``syncd run``
as child processes, the bundled HipChat server (``syncd hipchat-server``) on
127.0.0.1 as every endpoint, real files in a temporary directory. CPU is the
child's user + system time (``wait4`` for a command, ``/proc/PID/stat`` for the
daemon), memory its peak resident set (``ru_maxrss``, ``VmHWM``). Every
integration the daemon holds is ``state: stopped`` unless said otherwise, so
what a request queues stays queued and is measured, and nothing is sent.

1. validation cost: ``integrations: [no, no, ...]`` x 1,000, x 2,000 and 40 KB,
   20,000 unknown keys (189 KB); in the daemon, a 12 KB slow file written and
   removed 2 s later: the reload's answer, a fix applied, a stop, a restart.
2. duplicate uids: ``{uid: a}`` x 4,000 (40 KB) in validate (peak RSS, output);
   x 6,000 (60 KB) in the daemon (peak RSS, ``/status``, the log, the reload).
3. fan-out and outbox growth: a 1,000-event POST for a project of 1,000
   integrations (and a one-event POST for another project meanwhile); a
   0.91 MB POST for a project of 200 integrations; 20,000 events for a
   project no integration serves.
4. a 0.87 MB request of invalid events (99,000 problems): the 400's cost and
   size; beyond the issue, the same size of 340 bad classifiers an event.
5. a 0.96 MB event (route time); an event at the size bound against the most
   actions allowed; ingest events/s beside a disabled integration holding the
   largest actions list allowed, and the validate error a 133 KB one gets.
6. slow senders, huge headers, idle connections under ``ulimit -n 256``:
   whether real ingest is answered, the daemon's peak RSS and CPU.
7. ``frequency: 3000000d``: the validate error, and a batch for a project whose
   frequency is at the bound (7 days) with another project's events.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from corpus import INTEGRATION as CORPUS
from host import machine

TOKEN = "bench-hostile-room-token"
ROOM = "1"
GOAL = 2.0
TIMESTAMP = "2026-12-03T12:00:00Z"
KB = 1000
MB = 1000 * 1000
MIB = 1024 * 1024
STATE_RUN = "stopped"  # what the daemon's integrations are, unless said otherwise


# ---------------------------------------------------------------- commands


def syncd_command() -> list[str]:
    """``syncd`` next to this interpreter (the venv's entry point), else ``python -m``."""
    local = Path(sys.executable).parent / "syncd"
    return [str(local)] if local.exists() else [sys.executable, "-m", "syncd"]


def source_state() -> str:
    """The commit measured, and how many files under syncd/ differ from it (read
    without taking git's index lock)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        command = ["git", "--no-optional-locks", "-C", str(root), *args]
        found = subprocess.run(command, capture_output=True, text=True, check=False)
        return found.stdout.strip() if found.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return f"{root} (not a git checkout)"
    changed = len(git("status", "--porcelain", "--", "syncd").splitlines())
    return f"commit {commit}" + (
        f", {changed} file(s) under syncd/ changed since" if changed else ""
    )


def child_env() -> dict[str, str]:
    """The environment every syncd child gets: unbuffered output, the room token,
    and none of the variables that would change what is measured."""
    dropped = {"GITHUB_ACTIONS", "NOTIFY_SOCKET", "WATCHDOG_USEC", "SYNCD_INGEST_TOKEN"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(PYTHONUNBUFFERED="1", HIPCHAT_BENCH_TOKEN=TOKEN)
    return env


def run_args(syncd: Sequence[str], config: Path, state: Path, endpoint: str) -> list[str]:
    """Every ``syncd run`` of this bench, built here alone: a free loopback port,
    text logs, and the endpoint policy the bundled HipChat server needs (its
    address, plain http)."""
    return [
        *syncd,
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "text",
        "--allow-endpoint",
        endpoint,
        "--allow-http-endpoint",
    ]


def shown_run_flags(endpoint: str) -> str:
    return (
        f"syncd run --listen 127.0.0.1:0 --log-format text --allow-endpoint {endpoint} "
        "--allow-http-endpoint (every other flag at its default)"
    )


@dataclass(frozen=True)
class Ran:
    """One finished command: its CPU (user + system) and peak RSS, from wait4."""

    code: int
    cpu: float
    peak_rss: int
    output: int  # bytes written to stdout and stderr together
    wall: float


def run_once(command: Sequence[str], env: dict[str, str]) -> Ran:
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        size = os.fstat(out.fileno()).st_size
    return Ran(proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, size, wall)


def proc_status(pid: int, name: str) -> int:
    """A field of /proc/PID/status in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0]) * 1024
    raise LookupError(name)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 10 ms; returns the seconds it took."""
    started = time.perf_counter()
    deadline = started + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)
    return time.perf_counter() - started


class Child:
    """A long-running child whose output is collected line by line, with its size."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], preexec: Callable[[], None] | None
    ) -> None:
        self.popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec,
        )
        self.lines: list[str] = []
        self.output_bytes = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.output_bytes += len(raw)
            self.lines.append(raw.decode("utf-8", "replace"))

    def find(self, pattern: str, start: int = 0) -> re.Match[str] | None:
        for line in self.lines[start:]:
            found = re.search(pattern, line)
            if found:
                return found
        return None

    def wait_line(self, pattern: str, start: int = 0, timeout: float = 60) -> re.Match[str]:
        def seen() -> bool:
            return self.find(pattern, start) is not None or self.popen.poll() is not None

        wait_until(seen, timeout, repr(pattern))
        found = self.find(pattern, start)
        if found is None:
            tail = "".join(self.lines[-20:])
            raise SystemExit(f"exited {self.popen.poll()} before {pattern!r}:\n{tail}")
        return found

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM, then the seconds until it exited (a kill after ``timeout``)."""
        started = time.perf_counter()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return time.perf_counter() - started


@contextmanager
def hipchat_server(syncd: Sequence[str], env: dict[str, str]) -> Iterator[str]:
    """``syncd hipchat-server`` on a free loopback port, accepting the bench's token."""
    child = Child(
        [*syncd, "hipchat-server", "--listen", "127.0.0.1:0", "--room", f"{ROOM}={TOKEN}"],
        env,
        None,
    )
    try:
        yield child.wait_line(r"listening on (http://\S+)", timeout=30).group(1)
    finally:
        child.stop()


class Daemon(Child):
    """``syncd run`` as a child process; its URL once its probes answer."""

    def __init__(self, command: Sequence[str], env: dict[str, str], files: int | None = None):
        def limit() -> None:
            if files is not None:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (files, hard))

        self.started_at = time.perf_counter()
        super().__init__(command, env, limit)
        self.url = self.wait_line(r"answering /healthz on (http://\S+);").group(1)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_serving(self) -> None:
        self.wait_line(r"listening on http://")

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def peak_rss(self) -> int:
        return proc_status(self.pid, "VmHWM")

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=120)

    def post(self, path: str, body: bytes) -> Answer:
        return post(self.url + path, body)


RECONCILED = re.compile(r"syncd: (applied |config \S+ rejected)")


@contextmanager
def daemon(
    command: Sequence[str], env: dict[str, str], files: int | None = None
) -> Iterator[Daemon]:
    proc = Daemon(command, env, files)
    try:
        yield proc
    finally:
        proc.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    size: int
    body: bytes
    end: float  # perf_counter when the answer was read

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, body: bytes, session: requests.Session | None = None) -> Answer:
    """A POST of JSON bytes already encoded, timed from first byte sent to answer read."""
    sender = session or requests
    started = time.perf_counter()
    answer = sender.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=300)
    content = answer.content
    end = time.perf_counter()
    return Answer(answer.status_code, end - started, len(content), content, end)


# ------------------------------------------------------------------ inputs


def traps(count: int) -> str:
    """``integrations: [no, no, ...]``: each ``no`` a YAML 1.1 boolean where a mapping goes."""
    return "version: 1\nintegrations: [" + ", ".join(["no"] * count) + "]\n"


def unknown_keys(count: int) -> str:
    """Top-level keys ``k0`` to ``k<count-1>``: 20,000 make 189 KB."""
    return "version: 1\nintegrations: []\n" + "".join(f"k{n}: 1\n" for n in range(count))


def duplicate_uids(count: int) -> str:
    """``{uid: a}`` ``count`` times in one flow list: 4,000 make 40 KB."""
    return "version: 1\nintegrations: [" + ", ".join(["{uid: a}"] * count) + "]\n"


def pad_to(text: str, size: int) -> str:
    """``text`` with a comment line making it ``size`` bytes (left as is if it is not shorter)."""
    missing = size - len(text.encode())
    if missing <= 0:
        return text
    return text + ("#" * (missing - 1)) + "\n"


def well_formed(
    size: int,
    endpoint: str = "https://hipchat.example.com",
    *,
    prefix: str = "bench",
    mistake: bool = False,
) -> str:
    """Valid integrations (the reconcile bench's, every kind of setting once) up
    to ``size`` bytes, the rest a comment. ``mistake`` misspells one key in each
    (``colour``): an ordinary error per integration, for what a report of
    problems costs."""
    text = "version: 1\nintegrations:\n"
    n = 0
    while True:
        item = CORPUS.format(uid=f"{prefix}-{n:05}", project=n, state="enabled", room=ROOM)
        item = item.replace("https://hipchat.example.com", endpoint)
        if mistake:
            item = item.replace("      color: red", "      colour: red")
        if len((text + item).encode()) > size - 2:
            break
        text += item
        n += 1
    return pad_to(text, size)


def integration(
    uid: str,
    project: str,
    endpoint: str,
    *,
    state: str = STATE_RUN,
    trigger: str = "{event: trace}",
    actions: Sequence[str] = (),
) -> str:
    listed = "".join(f"      - {action}\n" for action in actions)
    return (
        f"  - uid: {uid}\n"
        f"    project: {project}\n"
        f"    name: {uid}\n"
        f"    state: {state}\n"
        f"    trigger: {trigger}\n"
        "    hipchat:\n"
        f"      endpoint: {endpoint}\n"
        f"      rooms: [{{id: {ROOM}, token: {{env: HIPCHAT_BENCH_TOKEN}}}}]\n"
        + (f"    actions:\n{listed}" if actions else "")
    )


def file_of(*integrations: str) -> str:
    return "version: 1\nintegrations:\n" + "".join(integrations)


def largest_actions(attribute: str = '"*"') -> list[str]:
    """The most actions an integration may hold by default (100), their patterns
    together just under the 64 KiB allowed: alternations of service names that
    no attribute of the bench's events matches, after a class that every letter
    does, so every action reads every value to its end."""
    actions = []
    for a in range(100):
        names = "|".join(f"svc-{a:03}-{n:03}" for n in range(54))
        actions.append(f"{{action: filter, attribute: {attribute}, regex: '[a-z]+({names})'}}")
    return actions


def many_actions(total: int) -> list[str]:
    """Actions making about ``total`` bytes of YAML: far more than allowed."""
    line = "{action: filter, attribute: team, regex: '^(" + "a" * 80 + ")$'}"
    return [line] * (total // (len(line) + 9))


def event(project: str, n: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "project": project,
        "fingerprint": f"fp-{n}",
        "timestamp": TIMESTAMP,
        "classifiers": ["KeyError"],
        "attributes": {"n": str(n), "version": "1.4.2", "datacenter": "nyc"},
        "hostname": f"web-{n % 12:02}.example.com",
    }
    base.update(fields)
    return base


def encode(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def filler(length: int, start: int = 0) -> dict[str, str]:
    """Attributes of at most 4,000 characters each, ``length`` characters in all."""
    values: dict[str, str] = {}
    k = start
    while length > 0:
        values[f"pad{k}"] = "x" * min(4000, length)
        length -= 4000
        k += 1
    return values


def sized(events: list[dict[str, Any]], total: int) -> bytes:
    """The events as one body of ``total`` bytes, each padded alike with filler
    attributes (values of 'x', which no pattern of the bench matches), the last
    event taking what division left over."""
    per_event = max(0, (total - len(encode(events))) // len(events))
    chunks = -(-per_event // 4000)
    each = max(0, per_event - 11 * chunks)  # ,"padK":"" around each value
    for item in events:
        item["attributes"] = {**item.get("attributes", {}), **filler(each)}
    body = encode(events)
    last = events[-1]["attributes"]
    keys = [k for k in last if k.startswith("pad")]
    if keys and 0 < len(last[keys[-1]]) + total - len(body) <= 4096:
        last[keys[-1]] = "x" * (len(last[keys[-1]]) + total - len(body))
        body = encode(events)
    return body


# ------------------------------------------------------------------ report


@dataclass
class Row:
    measure: str
    hostile: str
    well: str
    ratio: float | None = None
    issue: str = ""
    extra: bool = False  # beyond the issue's inputs: shown, not counted against the goal


@dataclass
class Section:
    title: str
    setup: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        measure: str,
        hostile: str,
        well: str,
        ratio: float | None,
        issue: str = "",
        *,
        extra: bool = False,
    ) -> None:
        self.rows.append(Row(measure, hostile, well, ratio, issue, extra))

    def show(self) -> None:
        print(f"\n{self.title}")
        for line in self.setup:
            print(textwrap.fill(line, 100, initial_indent="  setup: ", subsequent_indent=" " * 9))
        header = Row("measure", "hostile", "well-formed, same size", None, "issue (before)")
        cells = [
            [
                r.measure,
                r.hostile,
                r.well,
                ratio_text(r.ratio) if r is not header else "ratio",
                r.issue,
            ]
            for r in [header, *self.rows]
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        for c in cells:
            print(
                "  "
                + "  ".join(
                    cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(c, widths, strict=True))
                ).rstrip()
            )
        for note in self.notes:
            print(textwrap.fill(note, 100, initial_indent="  ", subsequent_indent="    "))


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    flag = "" if ratio <= GOAL else " OVER"
    return f"{ratio:.2f}x{flag}"


def ratio(hostile: float, well: float) -> float:
    return hostile / well if well > 0 else float("inf") if hostile > 0 else 1.0


def secs(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def size(value: float) -> str:
    if value >= MB:
        return f"{value / MB:.2f} MB"
    if value >= KB:
        return f"{value / KB:.1f} KB"
    return f"{value:.0f} B"


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Bench:
    syncd: list[str]
    env: dict[str, str]
    endpoint: str
    root: Path
    repeat: int
    quick: bool

    def dir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path

    def run_command(self, config: Path, state: Path) -> list[str]:
        return run_args(self.syncd, config, state, self.endpoint)


def place(path: Path, text: str) -> None:
    """Write a file beside its final place, then rename it in: the watcher sees it whole."""
    staged = path.parent.parent / f".{path.name}.staged"
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


# ------------------------------------------------------- 1. validation cost


def validate_runs(bench: Bench, *texts: str) -> list[list[Ran]]:
    """``syncd validate`` on each file in turn, ``repeat`` times: interleaved, so a
    drift of the machine's speed moves them all."""
    directory = bench.dir("validate")
    paths = []
    for n, text in enumerate(texts):
        paths.append(directory / f"input-{n}.yaml")
        paths[-1].write_text(text, encoding="utf-8")
    runs: list[list[Ran]] = [[] for _ in texts]
    for _ in range(bench.repeat):
        for n, path in enumerate(paths):
            runs[n].append(run_once([*bench.syncd, "validate", str(path)], bench.env))
    return runs


def validate_pair(bench: Bench, hostile: str, well: str) -> tuple[list[Ran], list[Ran]]:
    first, second = validate_runs(bench, hostile, well)
    return first, second


def validation_cost(bench: Bench) -> Section:
    directory = bench.dir("floor")
    (directory / "one.yaml").write_text(well_formed(700), encoding="utf-8")
    floor = median(
        [run_once([*bench.syncd, "validate", str(directory)], bench.env).cpu for _ in range(5)]
    )
    section = Section(
        "1. validation cost: `syncd validate FILE`, CPU (user + system) of a fresh process",
        [
            f"{machine()}; `syncd validate FILE`, default flags; median of "
            f"{bench.repeat} runs of each, taken in turn",
            "well-formed: valid integrations (every kind of setting once) of the same "
            "size, exit 0; a hostile file now gets its errors (exit 1), at most 100 listed",
            f"floor: a file of one integration takes {floor:.3f} s (interpreter, imports, "
            "schema); the notes give each pair above it",
        ],
    )
    cases = [
        ("[no, no, ...] x 1,000", traps(1000), "23 s"),
        ("[no, no, ...] x 2,000", traps(2000), "120 s"),
        ("[no, no, ...] x 10,000", traps(10_000), "about 1.5 h"),
        ("20,000 unknown keys", unknown_keys(20_000), "15 s"),
        ("beyond the issue: [no, no, ...] x 50,000", traps(50_000), ""),
    ]
    for label, text, issue in cases:
        length = len(text.encode())
        hostile, well = validate_pair(bench, text, well_formed(length))
        h, w = median([r.cpu for r in hostile]), median([r.cpu for r in well])
        codes = f"exit {hostile[0].code}/{well[0].code}"
        section.add(
            f"{label} ({size(length)}), CPU; {codes}",
            secs(h),
            secs(w),
            ratio(h, w),
            issue,
            extra=label.startswith("beyond"),
        )
        above = (max(0.0, h - floor), max(0.0, w - floor))
        section.notes.append(
            f"{label}, above the floor: {above[0]:.3f} s against {above[1]:.3f} s"
            + (f" ({ratio(*above):.2f}x)" if above[1] > 0.005 else "")
        )
    return section


def slow_file_in_daemon(bench: Bench) -> Section:
    section = Section(
        "1. (daemon) a 12 KB slow file written, removed 2 s later, a fix and a reload",
        [
            f"{machine()}; {shown_run_flags(bench.endpoint)}; config dir: one valid integration",
            "hostile: [no, no, ...] x 3,000 (12 KB); well-formed: 12 KB of valid integrations; "
            "one run each, a fresh daemon and state dir",
            "steps: the file renamed in; 2 s; it goes and a fix (one new integration) comes; "
            "POST /-/reload; the fix served; the file back, SIGTERM 0.2 s later; "
            "a restart with the file in place",
        ],
    )
    hostile = slow_file_steps(bench, traps(3000))
    well = slow_file_steps(bench, well_formed(len(traps(3000)), bench.endpoint, prefix="slow"))
    section.add(
        "POST /-/reload: answer, time",
        f"{hostile['reload_status']}, {ms(hostile['reload_s'])}",
        f"{well['reload_status']}, {ms(well['reload_s'])}",
        ratio(hostile["reload_s"], well["reload_s"]),
        "504",
    )
    section.add(
        "fix written -> served (GET /v1/registry)",
        ms(hostile["fix_s"]),
        ms(well["fix_s"]),
        ratio(hostile["fix_s"], well["fix_s"]),
        "minutes",
    )
    section.add(
        "SIGTERM 0.2 s after the file came back -> exit",
        ms(hostile["stop_s"]),
        ms(well["stop_s"]),
        ratio(hostile["stop_s"], well["stop_s"]),
        "45 s (killed)",
    )
    section.add(
        "restart with the file in place -> /readyz 200",
        f"{secs(hostile['ready_s'])} ({hostile['served']})",
        f"{secs(well['ready_s'])} ({well['served']})",
        ratio(hostile["ready_s"], well["ready_s"]),
        "never ready",
    )
    return section


def slow_file_steps(bench: Bench, text: str) -> dict[str, Any]:
    root = bench.dir("slow")
    config, state = root / "config", root / "state"
    config.mkdir()
    (config / "a.yaml").write_text(file_of(integration("a", "single", bench.endpoint)))
    fix = file_of(integration("fix", "fixed", bench.endpoint))
    figures: dict[str, Any] = {}
    with daemon(bench.run_command(config, state), bench.env) as proc:
        proc.wait_serving()
        place(config / "slow.yaml", text)
        time.sleep(2.0)
        (config / "slow.yaml").unlink()
        written = time.perf_counter()
        place(config / "fix.yaml", fix)
        answer = proc.post("/-/reload", b"{}")
        figures["reload_status"], figures["reload_s"] = answer.status, answer.seconds

        def fixed() -> bool:
            listed = proc.get("/v1/registry").json()["integrations"]
            return any(i["uid"] == "fix" for i in listed)

        wait_until(fixed, 600, "the fix to be served")
        figures["fix_s"] = time.perf_counter() - written
        time.sleep(1.5)  # the applied set is copied to the state dir once a second
        place(config / "slow.yaml", text)
        time.sleep(0.2)
        figures["stop_s"] = proc.stop()
    with daemon(bench.run_command(config, state), bench.env) as proc:

        def ready() -> bool:
            return bool(requests.get(proc.url + "/readyz", timeout=10).status_code == 200)

        wait_until(ready, 600, "readiness")
        figures["ready_s"] = time.perf_counter() - proc.started_at
        served = len(proc.get("/v1/registry").json()["integrations"])
        figures["served"] = f"{served} integrations served"
    return figures


# ------------------------------------------------------- 2. duplicate uids


def duplicate_uids_section(bench: Bench) -> Section:
    text = duplicate_uids(4000)
    length = len(text.encode())
    section = Section(
        "2. duplicate uids: {uid: a} x 4,000 in `syncd validate`, x 6,000 in `syncd run`",
        [
            f"{machine()}; `syncd validate FILE`, default flags; median of "
            f"{bench.repeat} runs of each, taken in turn; peak RSS is the process's ru_maxrss",
            "well-formed: valid integrations of the same size (exit 0, one line); for "
            "what is printed, also an ordinary mistake of the same size: those "
            "integrations, each with one misspelt key (colour:)",
        ],
    )
    hostile, well, mistaken = validate_runs(
        bench, text, well_formed(length), well_formed(length, mistake=True)
    )
    h_rss, w_rss = median([r.peak_rss for r in hostile]), median([r.peak_rss for r in well])
    h_cpu, w_cpu = median([r.cpu for r in hostile]), median([r.cpu for r in well])
    section.add(
        f"validate {size(length)}: peak RSS", mib(h_rss), mib(w_rss), ratio(h_rss, w_rss), "787 MB"
    )
    section.add(
        f"validate {size(length)}: CPU; exit {hostile[0].code}/{well[0].code}",
        secs(h_cpu),
        secs(w_cpu),
        ratio(h_cpu, w_cpu),
    )
    out_h, out_w, out_m = hostile[0].output, well[0].output, mistaken[0].output
    section.add("validate: output bytes", size(out_h), size(out_w), ratio(out_h, out_w), "252 MB")
    section.add(
        "  against the ordinary mistake (exit 1)", size(out_h), size(out_m), ratio(out_h, out_m)
    )
    big = duplicate_uids(20_000)
    big_hostile, big_well = validate_pair(bench, big, well_formed(len(big.encode())))
    bh, bw = median([r.cpu for r in big_hostile]), median([r.cpu for r in big_well])
    section.add(
        f"beyond the issue: x 20,000 ({size(len(big.encode()))}): CPU",
        secs(bh),
        secs(bw),
        ratio(bh, bw),
        extra=True,
    )
    br, bwr = median([r.peak_rss for r in big_hostile]), median([r.peak_rss for r in big_well])
    section.add("  its peak RSS", mib(br), mib(bwr), ratio(br, bwr), extra=True)

    daemon_text = duplicate_uids(6000)
    daemon_size = len(daemon_text.encode())
    section.setup.append(
        f"daemon: {shown_run_flags(bench.endpoint)}; config dir: one valid integration, "
        f"then a {size(daemon_size)} file renamed in (a fresh daemon for each input)"
    )
    h = file_in_daemon(bench, daemon_text)
    w = file_in_daemon(bench, well_formed(daemon_size, bench.endpoint, prefix="dup"))
    m = file_in_daemon(bench, well_formed(daemon_size, bench.endpoint, prefix="dup", mistake=True))
    section.add(
        f"daemon, {size(daemon_size)} file: reconcile ({h['outcome']} / {w['outcome']})",
        ms(h["reconcile_s"]),
        ms(w["reconcile_s"]),
        ratio(h["reconcile_s"], w["reconcile_s"]),
    )
    section.add(
        "daemon: peak RSS (VmHWM)",
        mib(h["peak_rss"]),
        mib(w["peak_rss"]),
        ratio(h["peak_rss"], w["peak_rss"]),
        "1.8 GiB",
    )
    for key, label, issue in (
        ("status_bytes", "daemon: GET /status bytes", "3.6 GB"),
        ("log_bytes", "daemon: log bytes of that reconcile", "1.8 GB"),
        ("reload_bytes", "daemon: POST /-/reload answer bytes", ""),
    ):
        section.add(label, size(h[key]), size(w[key]), ratio(h[key], w[key]), issue)
        section.add(
            f"  against the ordinary mistake ({m['outcome']})",
            size(h[key]),
            size(m[key]),
            ratio(h[key], m[key]),
        )
    section.notes.append(
        "reconcile: the file renamed in to the log line of its outcome, the watcher's "
        "quiet window (150 ms) included."
    )
    section.notes.append(
        "A valid set prints one line, a rejected one its problems: against a valid "
        "file the output, log and reload ratios measure the caps (100 problems listed "
        "per file, 1,000 per set, each naming at most 3 other places), not the input's "
        "size; /status lists a valid set's integrations, a rejected set's problems."
    )
    return section


def file_in_daemon(bench: Bench, text: str) -> dict[str, Any]:
    root = bench.dir("dup")
    config, state = root / "config", root / "state"
    config.mkdir()
    (config / "a.yaml").write_text(file_of(integration("first", "single", bench.endpoint)))
    with daemon(bench.run_command(config, state), bench.env) as proc:
        proc.wait_serving()
        time.sleep(0.3)
        before_log, before_lines = proc.output_bytes, len(proc.lines)
        started = time.perf_counter()
        place(config / "big.yaml", text)
        outcome = proc.wait_line(RECONCILED.pattern, before_lines)
        reconcile = time.perf_counter() - started
        time.sleep(0.5)  # the rest of its lines
        figures = {
            "outcome": "rejected" if "rejected" in outcome.group(1) else "applied",
            "reconcile_s": reconcile,
            "log_bytes": proc.output_bytes - before_log,
            "status_bytes": len(proc.get("/status").content),
            "reload_bytes": proc.post("/-/reload", b"{}").size,
            "peak_rss": proc.peak_rss(),
        }
    return figures


# ------------------------------------------------------- 3, 4, 5, 7. ingest

PROJECTS = {"fanout": 1000, "wide00": 200, "tenfan": 10, "single": 1, "probes": 1}


def ingest_config(endpoint: str) -> str:
    """Every integration the ingest daemon holds."""
    items = []
    for project, count in PROJECTS.items():
        items += [integration(f"{project}-{n}", project, endpoint) for n in range(count)]
    corpus_actions = [
        '{action: submit, attribute: "*", regex: ".*"}',
        "{action: filter, attribute: environment, regex: '^staging$'}",
        "{action: mention, attribute: team, regex: '^payments$', target: '@payments'}",
    ]
    group = "{event: group}"
    items += [
        integration("ruled1-ops", "ruled1", endpoint, actions=corpus_actions),
        integration("maxact-ops", "maxact", endpoint, actions=largest_actions()),
        integration("disab0-ops", "disab0", endpoint, trigger=group),
        integration("disab1-ops", "disab1", endpoint, trigger=group),
        integration(
            "disab1-off", "disab1", endpoint, state="disabled", actions=largest_actions("team")
        ),
        integration(
            "freqmx-ops",
            "freqmx",
            endpoint,
            trigger="{event: group, frequency: 7d, threshold: 1000000}",
        ),
        integration(
            "freq5m-ops", "freq5m", endpoint, trigger="{event: group, frequency: 5m, threshold: 50}"
        ),
    ]
    return file_of(*items)


INGEST_EXTRA = 7  # integrations of ingest_config beyond PROJECTS


def outbox_used(state: Path) -> int:
    """Bytes of the outbox's pages in use (free pages left out), as the daemon's
    last commit left them, read beside it through SQLite's WAL."""
    conn = sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True)
    try:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    return int((pages - free) * page)


class Prober(threading.Thread):
    """One-event POSTs for project ``probes``, one after another 20 ms apart, each timed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopped = threading.Event()
        self.samples: list[Answer] = []

    def run(self) -> None:
        n = 0
        with requests.Session() as session:
            while not self.stopped.is_set():
                body = encode([event("probes", 10**6 + n)])
                self.samples.append(post(self.url + "/v1/events", body, session))
                n += 1
                self.stopped.wait(0.02)

    def during(self, spans: Sequence[tuple[float, float]]) -> list[Answer]:
        """The probes in flight during one of ``spans`` (perf_counter pairs)."""
        return [
            probe
            for probe in list(self.samples)
            if any(probe.end - probe.seconds < end and probe.end > start for start, end in spans)
        ]


def spans_of(answers: Sequence[Answer]) -> list[tuple[float, float]]:
    return [(a.end - a.seconds, a.end) for a in answers]


def probe_text(found: Sequence[Answer]) -> str:
    if not found:
        return "none in flight"
    codes = "/".join(str(code) for code in sorted({a.status for a in found}))
    slowest, middle = max(a.seconds for a in found), median([a.seconds for a in found])
    return f"max {ms(slowest)}, median {ms(middle)} ({len(found)} x {codes})"


def queued(answer: Answer) -> str:
    if answer.status != 202:
        return f"{answer.status}, none"
    return f"{answer.json()['notifications']:,}"


def ingest_sections(bench: Bench, wanted: set[int]) -> list[Section]:
    root = bench.dir("ingest")
    config, state = root / "config", root / "state"
    config.mkdir()
    (config / "ingest.yaml").write_text(ingest_config(bench.endpoint))
    total = sum(PROJECTS.values()) + INGEST_EXTRA
    setup = (
        f"{machine()}; {shown_run_flags(bench.endpoint)}; one daemon for sections 3, 4, 5 "
        f"and 7: {total:,} integrations, all stopped but one disabled (what is queued "
        "stays queued): 1,000 on project fanout, 200 on wide00, 10 on tenfan, one on "
        "each other project"
    )
    sections = []
    with daemon(bench.run_command(config, state), bench.env) as proc:
        proc.wait_serving()
        for number, measure in (
            (3, fan_out),
            (4, invalid_events),
            (5, route_cost),
            (7, frequency_bound),
        ):
            if number in wanted:
                sections.append(measure(bench, proc, state, setup))
    return sections


def fan_out(bench: Bench, proc: Daemon, state: Path, setup: str) -> Section:
    burst = 1.0 if bench.quick else 3.0
    section = Section(
        "3. fan-out and outbox growth: POST /v1/events",
        [
            setup,
            f"the two 1,000-event POSTs sent in turn for {burst:.0f} s (at least "
            f"{bench.repeat} times each), the median time shown; then each alone, back to "
            f"back for {burst:.0f} s, with one-event POSTs for project probes one after "
            "another 20 ms apart: the slowest and the median of those in flight during "
            "one of the POSTs, and how many were",
            "well-formed: the same events for project single (one integration)",
        ],
    )
    bodies = [encode([event(project, n) for n in range(1000)]) for project in ("fanout", "single")]
    h, w = sent_pair(bench, proc, *bodies, least=burst)
    prober = Prober(proc.url)
    prober.start()
    time.sleep(burst)
    alone = [a.seconds for a in prober.during([(0.0, time.perf_counter())])]
    section.setup.append(
        f"a one-event POST with nothing else sent: median {ms(median(alone))}, max {ms(max(alone))}"
    )
    probed = []
    for body in bodies:
        answers: list[Answer] = []
        started = time.perf_counter()
        while time.perf_counter() - started < burst:
            answers.append(proc.post("/v1/events", body))
        time.sleep(0.3)
        probed.append(prober.during(spans_of(answers)))
    prober.stopped.set()
    prober.join()
    add_sent(
        section, f"1,000 events ({size(len(bodies[0]))}), 1,000 integrations / 1", h, w, "21 s"
    )
    section.add(
        "  its answer's bytes",
        size(h.first.size),
        size(w.first.size),
        ratio(h.first.size, w.first.size),
        "60 MB",
    )
    section.add(
        "  notifications queued per POST", queued(h.first), queued(w.first), None, "1,000,000"
    )
    h_probes, w_probes = probed
    section.add(
        "  one-event POST for project probes meanwhile",
        probe_text(h_probes),
        probe_text(w_probes),
        ratio(max(a.seconds for a in h_probes), max(a.seconds for a in w_probes))
        if h_probes and w_probes
        else None,
        "up to 19 s",
    )
    if h.first.status == 413:
        said = h.first.json()["error"]["message"].partition("; nothing was stored")[0]
        section.notes.append(
            "The fan-out POST is refused (413, nothing stored): its figures are the "
            f"refusal's cost against the well-formed request's. It says: \"{said}; ...\""
        )

    # 0.91 MB for a project of 200 integrations: 50 events x 200 = 10,000
    # notifications, at the limit (an event is stored once however many it causes);
    # and the same size and as many notifications from an ordinary shape: 1,000
    # events for a project of 10 integrations.
    shapes = {"hostile": ("wide00", 50), "well": ("single", 50), "ten": ("tenfan", 1000)}
    rounds: dict[str, list[tuple[Answer, int, float]]] = {name: [] for name in shapes}
    for r in range(bench.repeat):
        for name, (project, count) in shapes.items():
            body = sized([event(project, 20_000 * (r + 1) + n) for n in range(count)], 910 * KB)
            before, cpu = outbox_used(state), proc.cpu()
            answer = proc.post("/v1/events", body)
            rounds[name].append((answer, outbox_used(state) - before, proc.cpu() - cpu))
    first = {name: found[0][0] for name, found in rounds.items()}
    grew = {name: median([g for _, g, _ in found]) for name, found in rounds.items()}
    took = {name: median([a.seconds for a, _, _ in found]) for name, found in rounds.items()}
    used = {name: median([c for _, _, c in found]) for name, found in rounds.items()}
    section.add(
        f"{size(910 * KB)}, 50 events, 200 integrations / 1: outbox growth",
        f"{size(grew['hostile'])} ({queued(first['hostile'])} queued)",
        f"{size(grew['well'])} ({queued(first['well'])} queued)",
        ratio(grew["hostile"], grew["well"]),
        "181 MB",
    )
    section.add(
        "  that POST: answer, time",
        f"{first['hostile'].status}, {ms(took['hostile'])}",
        f"{first['well'].status}, {ms(took['well'])}",
        ratio(took["hostile"], took["well"]),
    )
    section.add(
        "  daemon CPU per POST",
        ms(used["hostile"]),
        ms(used["well"]),
        ratio(used["hostile"], used["well"]),
    )
    section.add(
        "  against 1,000 events for 10 integrations: growth",
        f"{size(grew['hostile'])} ({queued(first['hostile'])} queued)",
        f"{size(grew['ten'])} ({queued(first['ten'])} queued)",
        ratio(grew["hostile"], grew["ten"]),
        extra=True,
    )
    section.add(
        "  the same: daemon CPU per POST",
        ms(used["hostile"]),
        ms(used["ten"]),
        ratio(used["hostile"], used["ten"]),
        extra=True,
    )

    # 20,000 events in 20 POSTs of 1,000, the most a request may hold.
    spent: dict[str, tuple[float, int]] = {}
    for name, project in (("hostile", "nobody"), ("well", "single")):
        before = outbox_used(state)
        seconds = 0.0
        for first in range(0, 20_000, 1000):
            body = encode([event(project, 10**5 + n) for n in range(first, first + 1000)])
            answer = proc.post("/v1/events", body)
            if answer.status != 202:
                raise SystemExit(f"20,000 events: {answer.status} {answer.body[:300]!r}")
            seconds += answer.seconds
        spent[name] = (seconds, outbox_used(state) - before)
    (nt, ng), (st, sg) = spent["hostile"], spent["well"]
    section.add(
        "20,000 events, no integration / 1: outbox growth",
        size(ng),
        size(sg),
        ratio(ng, sg),
        "8.2 MB",
    )
    section.add("  the 20 POSTs' time", secs(nt), secs(st), ratio(nt, st))
    section.notes.append(
        "Outbox growth: the database's pages in use after the POSTs less before "
        "(page_count less freelist_count, read through the WAL)."
    )
    return section


def invalid_events(bench: Bench, proc: Daemon, state: Path, setup: str) -> Section:
    section = Section(
        "4. invalid events: a 0.87 MB POST of 1,000 events, 99 bad classifiers each",
        [
            setup,
            "the two POSTs sent in turn (at least "
            f"{bench.repeat} times each), the median time shown; well-formed: 1,000 valid "
            "events of the same size for project single, taken in (202)",
        ],
    )
    bad = sized([event("single", n, classifiers=[1] * 99) for n in range(1000)], 870 * KB)
    good = sized([event("single", 3000 + n) for n in range(1000)], 870 * KB)
    h, w = sent_pair(bench, proc, bad, good)
    add_sent(section, f"POST {size(len(bad))} / {size(len(good))}", h, w)
    section.add(
        "  its answer's bytes",
        size(h.first.size),
        size(w.first.size),
        ratio(h.first.size, w.first.size),
        "10.4 MB",
    )
    # Beyond the issue: as many problems as a body of that size can hold, a
    # classifier of two bytes each (340 an event, over the 100 allowed).
    dense = sized([event("single", n, classifiers=[1] * 340) for n in range(1000)], 870 * KB)
    hd, wd = sent_pair(bench, proc, dense, good)
    section.add(
        f"beyond the issue: {size(len(dense))}, 340 bad classifiers each: daemon CPU per POST "
        f"({len(hd.answers)} / {len(wd.answers)} sent)",
        f"{hd.first.status}, {ms(hd.cpu)}",
        f"{wd.first.status}, {ms(wd.cpu)}",
        ratio(hd.cpu, wd.cpu),
        extra=True,
    )
    if h.first.status == 400:
        error = h.first.json()["error"]
        section.notes.append(
            f"The 400 lists {len(error['problems'])} problems and says "
            f'"{error["message"]}": the refusal against taking the well-formed request.'
        )
    return section


@dataclass(frozen=True)
class Sent:
    """One kind of POST sent many times: the answers, and the daemon's CPU per POST."""

    answers: list[Answer]
    cpu: float

    @property
    def first(self) -> Answer:
        return self.answers[0]

    @property
    def time(self) -> float:
        return median([a.seconds for a in self.answers])


def sent_pair(
    bench: Bench, proc: Daemon, hostile: bytes, well: bytes, least: float | None = None
) -> tuple[Sent, Sent]:
    """Each body POSTed in turn, at least ``repeat`` times each and for at least
    ``least`` seconds in all, so that a drift of the machine moves both; the
    daemon's CPU (/proc, 10 ms ticks) summed over each kind's POSTs."""
    least = (1.0 if bench.quick else 3.0) if least is None else least
    answers: tuple[list[Answer], list[Answer]] = ([], [])
    cpu = [0.0, 0.0]
    started = time.perf_counter()
    while len(answers[0]) < bench.repeat or time.perf_counter() - started < least:
        for n, body in enumerate((hostile, well)):
            before = proc.cpu()
            answers[n].append(proc.post("/v1/events", body))
            cpu[n] += proc.cpu() - before
    return Sent(answers[0], cpu[0] / len(answers[0])), Sent(answers[1], cpu[1] / len(answers[1]))


def add_sent(section: Section, label: str, h: Sent, w: Sent, issue: str = "") -> None:
    """Two rows: the answer and its median time, and the daemon's CPU per POST."""
    section.add(
        f"{label}: answer, time",
        f"{h.first.status}, {ms(h.time)}",
        f"{w.first.status}, {ms(w.time)}",
        ratio(h.time, w.time),
        issue,
    )
    section.add(
        f"  daemon CPU per POST ({len(h.answers)} / {len(w.answers)} sent)",
        ms(h.cpu),
        ms(w.cpu),
        ratio(h.cpu, w.cpu),
    )


def route_cost(bench: Bench, proc: Daemon, state: Path, setup: str) -> Section:
    section = Section(
        "5. route cost: large events, the most actions, a disabled integration's actions",
        [
            setup,
            f"each pair of POSTs sent in turn (at least {bench.repeat} times each), the "
            "median time shown; project ruled1 has "
            "the example's three actions, maxact the most allowed (100 actions on every "
            "attribute, 64 KiB of patterns, none matching)",
        ],
    )
    big = encode([event("ruled1", 0, attributes={"blob": "x" * 960_000})])
    many = sized([event("ruled1", 4000 + n) for n in range(1000)], len(big))
    h, w = sent_pair(bench, proc, big, many)
    add_sent(section, f"one {size(len(big))} event / 1,000 events, same size", h, w, "19.5 s")
    if h.first.status == 413:
        section.notes.append(
            "The 0.96 MB event is refused (413, over the 64 KiB bound per event): "
            "the refusal's time against taking 1,000 events of the same size."
        )
    at_bound = encode([event("maxact", 0, attributes=filler(60_000))])
    ordinary = sized([event("maxact", 5000 + n) for n in range(60)], len(at_bound))
    h, w = sent_pair(bench, proc, at_bound, ordinary)
    add_sent(section, f"one {size(len(at_bound))} event (15 values of 4,000) / 60 events", h, w)

    events = 4000 if bench.quick else 10_000
    rates: dict[str, list[float]] = {"disab1": [], "disab0": []}
    for _ in range(bench.repeat):
        for project in rates:
            rates[project].append(ingest_rate(proc, project, events))
    h_rate, w_rate = median(rates["disab1"]), median(rates["disab0"])
    section.setup.append(
        f"ingest: {events:,} events in POSTs of 500 (fingerprints fp-0 to fp-9, trigger "
        "group) for a project of one stopped integration, beside a disabled one holding "
        "the most actions allowed (disab1) or alone (disab0); rounds taken in turn"
    )
    section.add(
        "ingest events/s, disabled integration with 100 actions / none",
        f"{h_rate:,.0f}/s",
        f"{w_rate:,.0f}/s",
        ratio(w_rate, h_rate),
        "38 vs 14,191/s",
    )
    section.notes.append("For the ingest rate the ratio is well-formed over hostile.")

    # The 133 KB actions list itself is a validate error now.
    off = integration(
        "off", "p", "https://hipchat.example.com", state="disabled", actions=many_actions(133 * KB)
    )
    text = file_of(integration("on", "p", "https://hipchat.example.com"), off)
    length = len(text.encode())
    hostile, well = validate_pair(bench, text, well_formed(length))
    hc, wc = median([r.cpu for r in hostile]), median([r.cpu for r in well])
    section.add(
        f"validate, a disabled integration with {size(length)} of actions: CPU; "
        f"exit {hostile[0].code}/{well[0].code}",
        secs(hc),
        secs(wc),
        ratio(hc, wc),
    )
    return section


def ingest_rate(proc: Daemon, project: str, count: int) -> float:
    """Events per second as POSTs of 500 see them, answer to answer."""
    seconds = 0.0
    for first in range(0, count, 500):
        body = encode(
            [event(project, n, fingerprint=f"fp-{n % 10}") for n in range(first, first + 500)]
        )
        answer = proc.post("/v1/events", body)
        if answer.status != 202:
            raise SystemExit(f"ingest {project}: {answer.status} {answer.body[:300]!r}")
        seconds += answer.seconds
    return count / seconds


def frequency_bound(bench: Bench, proc: Daemon, state: Path, setup: str) -> Section:
    section = Section(
        "7. frequency: 3000000d",
        [
            f"{machine()}; `syncd validate FILE`, median of {bench.repeat} runs of each, "
            "taken in turn; well-formed: the same file with frequency: 5m, padded to the "
            "same size",
            setup,
        ],
    )
    hostile_text = file_of(
        integration(
            "freq",
            "p",
            "https://hipchat.example.com",
            trigger="{event: group, frequency: 3000000d, threshold: 50}",
        )
    )
    well_text = pad_to(hostile_text.replace("3000000d", "5m"), len(hostile_text.encode()))
    hostile, well = validate_pair(bench, hostile_text, well_text)
    hc, wc = median([r.cpu for r in hostile]), median([r.cpu for r in well])
    section.add(
        f"validate: CPU; exit {hostile[0].code}/{well[0].code}", secs(hc), secs(wc), ratio(hc, wc)
    )
    mixed = {
        name: encode(
            [event(project, 6000 + n) for n in range(50)]
            + [event("single", 7000 + n) for n in range(50)]
        )
        for name, project in (("hostile", "freqmx"), ("well", "freq5m"))
    }
    h, w = sent_pair(bench, proc, mixed["hostile"], mixed["well"])
    add_sent(section, "daemon: 50 events of the project + 50 of single", h, w, "500, rolled back")
    section.notes.append(
        "In the daemon the hostile project has the largest frequency and threshold now "
        "allowed (7d, 1,000,000), since 3000000d is refused: the well-formed one 5m, 50."
    )
    return section


# ------------------------------------------------------- 6. connections


@dataclass
class Hold:
    """A daemon held under some connections for a while, probed meanwhile."""

    probes: list[tuple[str, int, float]] = field(default_factory=list)  # path, status, s
    cpu_share: float = 0.0
    peak_rss: int = 0
    rss_before: int = 0
    log_lines: list[str] = field(default_factory=list)
    attack: dict[str, Any] = field(default_factory=dict)

    def answered(self, path: str) -> str:
        mine = [(status, seconds) for p, status, seconds in self.probes if p == path]
        good = [seconds for status, seconds in mine if status in (200, 202)]
        worst = f", max {ms(max(good))}" if good else ""
        return f"{len(good)}/{len(mine)}{worst}"

    def median_latency(self, path: str) -> float:
        good = [s for p, status, s in self.probes if p == path and status in (200, 202)]
        return median(good) if good else float("inf")


Attack = Callable[[str, threading.Event, dict[str, Any]], None]


def held(bench: Bench, attack: Attack, hold: float, files: int | None = None) -> Hold:
    """A fresh daemon (``files``: its descriptor limit) under ``attack`` for
    ``hold`` seconds once the attack says it is in place, probed meanwhile."""
    root = bench.dir("conn")
    config, state = root / "config", root / "state"
    config.mkdir()
    (config / "a.yaml").write_text(file_of(integration("single-ops", "single", bench.endpoint)))
    result = Hold()
    with daemon(bench.run_command(config, state), bench.env, files) as proc:
        proc.wait_serving()
        time.sleep(0.3)
        result.rss_before = proc.rss()
        lines = len(proc.lines)
        done = threading.Event()
        worker = threading.Thread(target=attack, args=(proc.url, done, result.attack), daemon=True)
        worker.start()
        wait_until(lambda: "ready" in result.attack, 120, "the connections to be in place")
        cpu, started = proc.cpu(), time.perf_counter()
        n = 0
        while time.perf_counter() - started < hold:
            body = encode([event("single", 8000 + n)])
            result.probes.append(real_request("POST", proc.url + "/v1/events", body))
            result.probes.append(real_request("GET", proc.url + "/healthz", b""))
            n += 1
            time.sleep(0.5)
        result.cpu_share = (proc.cpu() - cpu) / (time.perf_counter() - started)
        result.peak_rss = proc.peak_rss()
        result.log_lines = [line.rstrip() for line in proc.lines[lines:]]
        done.set()
        worker.join(60)
    return result


def real_request(method: str, url: str, body: bytes) -> tuple[str, int, float]:
    """One request on a new connection, as a client of the API makes it: its status
    (0 when it failed or took over 10 s) and time."""
    path = url.split("/", 3)[3]
    started = time.perf_counter()
    try:
        answer = requests.request(
            method, url, data=body or None, headers={"Content-Type": "application/json"}, timeout=10
        )
        status = answer.status_code
    except requests.RequestException:
        status = 0
    return "/" + path, status, time.perf_counter() - started


def address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def connect(url: str, first: bytes = b"") -> socket.socket | None:
    """A connection that has sent ``first``; None when connecting failed."""
    try:
        conn = socket.create_connection(address(url), timeout=10)
        if first:
            conn.sendall(first)
    except OSError:
        return None
    return conn


def still_open(sockets: Sequence[socket.socket]) -> int:
    """Connections the daemon has neither answered (a 408 to a slow sender) nor closed."""
    count = 0
    for conn in sockets:
        try:
            conn.setblocking(False)  # a timeout would wait for the answer
            conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:  # nothing to read yet
            count += 1
        except OSError:
            pass
    return count


def healthz_request(url: str) -> bytes:
    host, port = address(url)
    return f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def held_open(count: int, first: Callable[[str], bytes], interval: float | None) -> Attack:
    """``count`` connections, each opened and sending ``first(url)`` at once; with
    ``interval``, one more byte of a request line every ``interval`` seconds."""
    line = b"POST /v1/events HTTP/1.1\r\n"

    def attack(url: str, done: threading.Event, report: dict[str, Any]) -> None:
        request = first(url)
        opened = [connect(url, request) for _ in range(count)]
        sockets = [conn for conn in opened if conn is not None]
        report["opened"] = len(sockets)
        if request.endswith(b"\r\n\r\n"):
            report["answered"] = sum(read_answer(conn) for conn in sockets)
        report["ready"] = True
        sent = 1
        while not done.wait(interval or None):
            for conn in sockets:
                with suppress(OSError):
                    conn.send(line[sent % len(line) : sent % len(line) + 1])
            sent += 1
        report["open"] = still_open(sockets)
        for conn in sockets:
            conn.close()

    return attack


def read_answer(conn: socket.socket) -> bool:
    """Read a whole short answer (GET /healthz's); whether it was a 200."""
    data = b""
    with suppress(OSError):
        while not data.endswith(b"ok\n"):
            more = conn.recv(4096)
            if not more:
                break
            data += more
    return data.startswith(b"HTTP/1.1 200")


def slow_senders(count: int, interval: float) -> Attack:
    """Each connection sends its request line a byte every ``interval`` seconds."""
    return held_open(count, lambda _url: b"P", interval)


def idle(count: int) -> Attack:
    """Connections that send nothing."""
    return held_open(count, lambda _url: b"", None)


def kept_alive(count: int) -> Attack:
    """Connections that each send one whole GET /healthz (kept alive), then nothing."""
    return held_open(count, healthz_request, None)


def huge_headers(count: int, total: int) -> Attack:
    """``count`` connections at once, each sending header lines until ``total``
    bytes or until the daemon closes it, then again on a new connection."""
    chunk = "".join(f"X-Pad-{n}: {'a' * 1000}\r\n" for n in range(64)).encode()

    def one(url: str, done: threading.Event, report: dict[str, Any]) -> None:
        host, port = address(url)
        head = f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
        while not done.is_set():
            conn, sent = connect(url, head), 0
            if conn is None:
                continue
            with conn:
                try:
                    while sent < total:
                        conn.sendall(chunk)
                        sent += len(chunk)
                    got = conn.recv(64).split(b"\r\n")[0].decode(errors="replace")
                except OSError as exc:
                    got = f"closed ({type(exc).__name__})"
            report.setdefault("sent", []).append(sent)
            report.setdefault("answers", set()).add(got)

    return in_parallel(count, one)


def largest_bodies(count: int, total: int) -> Attack:
    """``count`` connections at once, each posting a valid ``total``-byte body of
    1,000 events (for a project of its own that no integration serves), again
    and again."""
    bodies = [sized([event(f"nobody{k:02}", n) for n in range(1000)], total) for k in range(count)]

    def one(url: str, done: threading.Event, report: dict[str, Any]) -> None:
        body = bodies[report.setdefault("next", iter(range(count))).__next__()]
        with requests.Session() as session:
            while not done.is_set():
                try:
                    status = post(url + "/v1/events", body, session).status
                except requests.RequestException as exc:
                    status = type(exc).__name__
                report.setdefault("answers", set()).add(str(status))

    return in_parallel(count, one)


def in_parallel(count: int, one: Callable[[str, threading.Event, dict[str, Any]], None]) -> Attack:
    def attack(url: str, done: threading.Event, report: dict[str, Any]) -> None:
        threads = [
            threading.Thread(target=one, args=(url, done, report), daemon=True)
            for _ in range(count)
        ]
        for thread in threads:
            thread.start()
        report["ready"] = True
        for thread in threads:
            thread.join(60)

    return attack


def connections_section(bench: Bench) -> Section:
    hold = 6.0 if bench.quick else 12.0
    section = Section(
        "6. slow senders, huge headers, idle connections",
        [
            f"{machine()}; {shown_run_flags(bench.endpoint)}; one stopped integration; a "
            "fresh daemon for each column of each row",
            f"once the connections are in place, for {hold:.0f} s a real ingest POST (one "
            "event) and a GET /healthz every 0.5 s, each on a new connection: answered / "
            "sent, the slowest; CPU: the daemon's over those seconds; the ratio on the "
            "first line of each block: median real POST latency, hostile over well-formed",
        ],
    )
    slow = held(bench, slow_senders(512, 10.0), hold)
    polite = held(bench, kept_alive(512), hold)
    section.add(
        "512 connections, 1 byte / 10 s | a whole GET each, kept alive: real POSTs answered",
        slow.answered("/v1/events"),
        polite.answered("/v1/events"),
        ratio(slow.median_latency("/v1/events"), polite.median_latency("/v1/events")),
        "refused all along",
    )
    hold_rows(section, slow, polite)
    section.add(
        "  of the 512, neither answered nor closed at the end",
        str(slow.attack.get("open")),
        str(polite.attack.get("open")),
        None,
    )

    headers = held(bench, huge_headers(60, 5_900_000), hold)
    bodies = held(bench, largest_bodies(60, 960 * KB), hold)
    section.add(
        "60 connections, 5.9 MB of headers | a valid 0.96 MB POST each, again and again: "
        "real POSTs answered",
        headers.answered("/v1/events"),
        bodies.answered("/v1/events"),
        ratio(headers.median_latency("/v1/events"), bodies.median_latency("/v1/events")),
    )
    hold_rows(section, headers, bodies, memory="47 -> 970 MiB")
    sent = headers.attack.get("sent", [0])
    section.add(
        "  what the connections got",
        ", ".join(sorted(headers.attack.get("answers", []))) or "-",
        ", ".join(sorted(bodies.attack.get("answers", []))) or "-",
        None,
    )
    section.notes.append(
        f"Huge headers: {len(sent):,} connections in {hold:.0f} s; each had at most "
        f"{size(max(sent))} leave the client (into kernel buffers) before the daemon "
        "closed it. The well-formed peer is the largest request the daemon takes (a "
        "0.96 MB body, under the 1 MiB bound), since 5.9 MB of anything is over a bound."
    )

    silent = held(bench, idle(300), hold, files=256)
    used = held(bench, kept_alive(300), hold, files=256)
    section.add(
        "ulimit -n 256, 300 connections, idle | a whole GET each: real POSTs answered",
        silent.answered("/v1/events"),
        used.answered("/v1/events"),
        ratio(silent.median_latency("/v1/events"), used.median_latency("/v1/events")),
        "timed out",
    )
    hold_rows(section, silent, used, cpu="a core at 100%")
    section.add(
        "  daemon log lines meanwhile",
        str(len(silent.log_lines)),
        str(len(used.log_lines)),
        None,
        "nothing logged",
    )
    for hostile in (slow, headers, silent):
        for line in hostile.log_lines[:2]:
            section.notes.append(f"log: {line.partition(' ')[2][:150]}")
    return section


def hold_rows(section: Section, hostile: Hold, well: Hold, memory: str = "", cpu: str = "") -> None:
    section.add(
        "  GET /healthz answered", hostile.answered("/healthz"), well.answered("/healthz"), None
    )
    section.add(
        f"  daemon peak RSS (VmHWM; before: {mib(hostile.rss_before)} / {mib(well.rss_before)})",
        mib(hostile.peak_rss),
        mib(well.peak_rss),
        ratio(hostile.peak_rss, well.peak_rss),
        memory,
    )
    section.add(
        "  daemon CPU, share of a core",
        f"{hostile.cpu_share:.1%}",
        f"{well.cpu_share:.1%}",
        ratio(hostile.cpu_share, well.cpu_share),
        cpu,
    )


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measure (median)")
    parser.add_argument(
        "--quick", action="store_true", help="2 runs of each, 6 s holds, fewer ingest events"
    )
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="findings to measure, e.g. 1,6")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    wanted = {int(n) for n in args.only.split(",") if n.strip()}
    if repeat < 1 or not wanted or not wanted <= set(range(1, 8)):
        parser.error("--repeat wants at least 1, --only numbers from 1 to 7")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))

    syncd, env = syncd_command(), child_env()
    print(f"machine: {machine()}")
    print(f"source: {source_state()}")
    shown = "the venv's syncd" if len(syncd) == 1 else "python -m syncd"
    print(f"syncd: {shown}; {repeat} run(s) of each measure unless said otherwise")
    print(f"goal: every ratio (hostile / well-formed, same size, same path) <= {GOAL:g}x")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-hostile-") as tmp,
        hipchat_server(syncd, env) as endpoint,
    ):
        bench = Bench(syncd, env, endpoint, Path(tmp), repeat, args.quick)
        steps: list[tuple[int, Callable[[Bench], Section]]] = [
            (1, validation_cost),
            (1, slow_file_in_daemon),
            (2, duplicate_uids_section),
        ]
        sections: list[Section] = []
        for number, measure in steps:
            if number in wanted:
                sections.append(measure(bench))
                sections[-1].show()
        if wanted & {3, 4, 5, 7}:
            for section in ingest_sections(bench, wanted):
                sections.append(section)
                section.show()
        if 6 in wanted:
            sections.append(connections_section(bench))
            sections[-1].show()
    rows = [(s.title.split(":")[0], r) for s in sections for r in s.rows if r.ratio is not None]
    goal = [(title, r) for title, r in rows if not r.extra]
    over = [(title, r) for title, r in rows if r.ratio is not None and r.ratio > GOAL]
    print(
        f"\n{len(goal) - sum(not r.extra for _, r in over)} of {len(goal)} ratios within "
        f"{GOAL:g}x, rows beyond the issue's inputs left out "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    for title, row in over:
        kind = "beyond the issue's inputs" if row.extra else "over"
        print(f"  {kind}: {title}: {row.measure.strip()}: {ratio_text(row.ratio)}")


if __name__ == "__main__":
    main()
