"""The watcher's rules without the observer: the debounce, what counts as a
change, and the fingerprint of a config dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config.discovery import ConfigFiles
from syncd.reconcile.debounce import Debouncer
from syncd.reconcile.pathfilter import is_editor_noise, is_relevant, relevant_to
from syncd.reconcile.watchdir import fingerprint_dir

# Debouncer (pure: the clock is an argument)


def test_debouncer_is_idle_until_an_event() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    assert not debouncer.pending
    assert debouncer.deadline() is None
    assert not debouncer.due(1e9)


def test_debouncer_fires_after_the_quiet_window_restarted_by_each_event() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    debouncer.event(10.0)
    assert debouncer.deadline() == pytest.approx(10.15)
    debouncer.event(10.1)
    assert not debouncer.due(10.2)
    assert debouncer.due(10.25)
    debouncer.fired()
    assert not debouncer.pending
    assert debouncer.deadline() is None


def test_debouncer_max_wait_caps_a_continuous_stream() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    fired_at = None
    for tick in range(100):  # an event every 0.1 s, always inside the quiet window
        now = 10.0 + tick / 10
        if debouncer.due(now):
            fired_at = now
            break
        debouncer.event(now)
    assert fired_at == pytest.approx(11.0)
    debouncer.fired()
    debouncer.event(11.05)
    assert debouncer.deadline() == pytest.approx(11.2), "the next burst starts afresh"


def test_debouncer_force_is_due_at_once_and_absorbs_pending_events() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    debouncer.event(10.0)
    debouncer.force(10.05)
    assert debouncer.due(10.05)
    debouncer.event(10.06)
    assert debouncer.deadline() == pytest.approx(10.05), "more events do not postpone a force"
    debouncer.fired()
    assert not debouncer.pending


def test_debouncer_hold_outlasts_max_wait_then_waits_a_fresh_quiet_window() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    debouncer.event(10.0)
    debouncer.hold(10.15)
    assert debouncer.held_since == 10.15
    debouncer.force(10.2)
    debouncer.event(10.5)
    assert debouncer.deadline() is None
    assert not debouncer.due(100.0)
    debouncer.release(100.0)
    assert debouncer.held_since is None
    assert not debouncer.due(100.1)
    assert debouncer.due(100.15)


def test_debouncer_release_without_pending_events_stays_idle() -> None:
    debouncer = Debouncer(quiet=0.15, max_wait=1.0)
    debouncer.hold(1.0)
    debouncer.release(2.0)
    assert not debouncer.pending
    assert debouncer.deadline() is None


@pytest.mark.parametrize(("quiet", "max_wait"), [(-0.1, 1.0), (0.5, 0.2)])
def test_debouncer_rejects_inconsistent_windows(quiet: float, max_wait: float) -> None:
    with pytest.raises(ValueError, match="quiet"):
        Debouncer(quiet, max_wait)


# the noise filter


@pytest.mark.parametrize(
    "name",
    [
        "4913",
        ".a.yaml.swp",
        ".a.yaml.swx",
        ".a.yaml.swo",
        "a.yaml~",
        ".#a.yaml",
        ".goutputstream-X1Y2Z3",
        "a.yaml___jb_tmp___",
        "a.yaml___jb_old___",
    ],
)
def test_editor_noise(name: str) -> None:
    assert is_editor_noise(name)
    assert not is_relevant(name)
    assert not is_relevant(f"sub/{name}")


@pytest.mark.parametrize("name", ["a.yaml", "a.yml", "4913.yaml", "notes.txt", "swp"])
def test_not_editor_noise(name: str) -> None:
    assert not is_editor_noise(name)


@pytest.mark.parametrize(
    ("path", "is_directory", "expected"),
    [
        ("a.yaml", False, True),
        ("a.yml", False, True),
        ("team/ops/a.yaml", False, True),
        ("a.json", False, False),
        ("README.md", False, False),
        ("a.yaml.tmp", False, False),
        (".hidden.yaml", False, False),
        (".git/index", False, False),
        (".git/refs/heads/main.yaml", False, False),
        (".git/index.lock", False, False),
        ("..2024_01_01_00_00_00.1/a.yaml", False, False),
        ("..data", False, True),
        ("../elsewhere/a.yaml", False, False),
        (".", True, True),
        ("team", True, True),
        (".git", True, False),
        ("team/.cache", True, False),
    ],
)
def test_is_relevant(path: str, is_directory: bool, expected: bool) -> None:
    assert is_relevant(path, is_directory=is_directory) is expected


FILES = ConfigFiles(exclude=("deploy/*", "*.values.yaml"))
PATHS = [
    "a.yaml",
    "b.yml",
    "team/c.yaml",
    "deploy/k8s.yaml",
    "other/deploy/k8s.yaml",
    "deploy/nested/k8s.yaml",
    "build/lib/a.yaml",
    "node_modules/pkg/a.yaml",
    "chart.values.yaml",
    "team/chart.values.yaml",
    ".hidden.yaml",
    ".git/x.yaml",
    "team/.cache/x.yaml",
    "notes.txt",
    "a.yaml~",
]


@pytest.mark.parametrize("path", PATHS)
def test_the_watcher_counts_exactly_the_files_discovery_reads(path: str) -> None:
    assert relevant_to(FILES)(path, is_directory=False) is FILES.holds(Path(path))


def test_an_excluded_file_is_not_a_change() -> None:
    relevant = relevant_to(FILES)
    assert not relevant("deploy/k8s.yaml", is_directory=False)
    assert not relevant("team/chart.values.yaml", is_directory=False)
    assert relevant("team/c.yaml", is_directory=False)
    assert is_relevant("deploy/k8s.yaml", is_directory=False)


# the default fingerprint


def test_fingerprint_covers_yaml_content_names_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("b: 1\n")
    base = fingerprint_dir(tmp_path)
    assert fingerprint_dir(tmp_path) == base

    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "c.yaml").write_text("c: 1\n")
    (tmp_path / ".a.yaml.swp").write_text("x")
    assert fingerprint_dir(tmp_path) == base

    stat = (tmp_path / "a.yaml").stat()
    (tmp_path / "a.yaml").write_text("a: 2\n")
    os.utime(tmp_path / "a.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = fingerprint_dir(tmp_path)
    assert edited != base, "same size and mtime, different bytes"

    (tmp_path / "sub" / "b.yml").rename(tmp_path / "sub" / "c.yml")
    assert fingerprint_dir(tmp_path) != edited


def test_fingerprint_of_a_missing_dir(tmp_path: Path) -> None:
    assert fingerprint_dir(tmp_path / "nope") == fingerprint_dir(tmp_path / "nope")
    assert fingerprint_dir(tmp_path / "nope") != fingerprint_dir(tmp_path)


def test_the_fingerprint_of_a_dir_with_a_fifo_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    os.mkfifo(tmp_path / "x.yaml")
    assert fingerprint_dir(tmp_path) != fingerprint_dir(tmp_path / "missing")
