"""The recorder of accepted events: one file a UTC day, old days pruned, and a
failed write counted, cut back and never raised."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from syncd.service.recorder import Recorder
from tests.support.events import event


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_file_a_day_rotated_at_utc_midnight(tmp_path: Path) -> None:
    clock = Clock("2026-11-26T23:59:59")
    recorder = Recorder(tmp_path / "rec", clock=clock)
    recorder.record(json.dumps([event(fingerprint="a"), event(fingerprint="b")]).encode())
    clock.now += 1
    recorder.record(json.dumps(event(fingerprint="c", attributes={"env": "prod"})).encode())
    recorder.close()
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == ["events-2026-11-26.jsonl", "events-2026-11-27.jsonl"]
    assert [e["fingerprint"] for e in lines(tmp_path / "rec" / names[0])] == ["a", "b"]
    assert lines(tmp_path / "rec" / names[1]) == [
        event(fingerprint="c", attributes={"env": "prod"})
    ]
    assert stat.S_IMODE(os.stat(tmp_path / "rec").st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE(os.stat(tmp_path / "rec" / name).st_mode) == 0o600
    assert (recorder.recorded, recorder.errors) == (3, 0)


def test_days_past_the_kept_ones_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    directory.mkdir()
    for day in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"):
        (directory / f"events-{day}.jsonl").write_text("")
    (directory / "notes.txt").write_text("kept")
    clock = Clock("2026-11-24T00:00:05")
    recorder = Recorder(directory, days=3, clock=clock)
    recorder.record(json.dumps(event()).encode())
    kept = sorted(p.name for p in directory.iterdir())
    assert kept == [
        "events-2026-11-22.jsonl",
        "events-2026-11-23.jsonl",
        "events-2026-11-24.jsonl",
        "notes.txt",
    ]
    clock.now += 24 * 3600
    recorder.record(json.dumps(event()).encode())
    recorder.close()
    assert "events-2026-11-22.jsonl" not in {p.name for p in directory.iterdir()}
    assert "events-2026-11-25.jsonl" in {p.name for p in directory.iterdir()}


def test_a_write_error_is_counted_not_raised(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    (directory / "events-2026-11-26.jsonl").mkdir(parents=True)  # the day's file cannot open
    clock = Clock("2026-11-26T10:00:00")
    recorder = Recorder(directory, clock=clock)
    recorder.record(json.dumps(event()).encode())
    recorder.record(json.dumps(event()).encode())
    assert (recorder.recorded, recorder.errors) == (0, 2)
    clock.now += 24 * 3600  # the next day's file can: recording resumes
    recorder.record(json.dumps(event()).encode())
    recorder.close()
    assert (recorder.recorded, recorder.errors) == (1, 2)
    assert lines(directory / "events-2026-11-27.jsonl") == [event()]


def test_a_link_in_place_of_the_days_file_is_not_followed(tmp_path: Path) -> None:
    """Events are not written through a link someone put in the directory."""
    directory = tmp_path / "rec"
    directory.mkdir()
    (directory / "events-2026-11-26.jsonl").symlink_to("/dev/full")
    recorder = Recorder(directory, clock=Clock("2026-11-26T10:00:00"))
    recorder.record(json.dumps(event()).encode())
    recorder.close()
    assert (recorder.recorded, recorder.errors) == (0, 1)


WRITER = """
import json, resource, signal, sys
from pathlib import Path
from syncd.service.recorder import Recorder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
recorder = Recorder(Path(sys.argv[1]), clock=lambda: 1_800_000_000.0)
for n in range(6):
    recorder.record(json.dumps({"project": "shop", "fingerprint": "f" * 60 + str(n),
                                "timestamp": "2027-01-15T08:00:00Z"}).encode())
print(recorder.recorded, recorder.errors)
"""


def test_a_file_that_cannot_grow_keeps_whole_lines(tmp_path: Path) -> None:
    """With the file size capped (as a full disk stops a write part way), the
    line that does not fit is cut back, and the ones before stay whole."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path / "rec")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "4"]
    assert "could not record accepted events" in done.stderr
    (written,) = (tmp_path / "rec").iterdir()
    assert [e["fingerprint"][-1] for e in lines(written)] == ["0", "1"]
    assert written.read_bytes().endswith(b"\n")
