"""What the daemon's config pieces keep per file, and what a walk and a whole
last-known-good save hold at their peak, counted by tracemalloc on real files.

A daemon keeps its loader, registry and last-known-good store for as long as
it runs, 50,000 files in a large set, so each figure here is a share per file
of one-integration files, the shape that costs most per integration.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config.configset import ConfigSet
from syncd.config.diagnostics import Diagnostic
from syncd.config.discovery import discover
from syncd.config.filecache import ConfigLoader
from syncd.config.secrets import SecretRef
from syncd.reconcile.lastgood import LastGood
from syncd.registry import Registry
from tests.support.configs import minimal, write_files
from tests.support.filetimes import later_wall

FILES = 1500

# Every setting once, as bench/corpus.py writes them by the thousand.
FULL = """\
version: 1
integrations:
  - uid: {uid}
    project: project-{project}
    name: {uid}
    state: enabled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: {room}
          token: {{env: HIPCHAT_TOKEN}}
      color: red
      notify: true
    display:
      attribute_list: [version, hostname]
    actions:
      - {{action: filter, attribute: "*", regex: ".*"}}
      - {{action: submit, attribute: datacenter, regex: "^nyc$"}}
    trigger:
      event: group
      frequency: 5m
      threshold: 50
"""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "memory-test-token")


def one_each(directory: Path, count: int, prefix: str = "integration") -> Path:
    return write_files(
        directory,
        *(
            (
                f"{prefix}-{n:05}.yaml",
                FULL.format(uid=f"{prefix}-{n:05}", project=n % 50, room=1000 + n),
            )
            for n in range(count)
        ),
    )


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[None]:
    """Whatever a first load, apply and save make once per process (compiled
    schema, patterns, caches), made before anything is counted."""
    config = one_each(tmp_path / "warm", 20, "warm")
    loader = ConfigLoader()
    Registry().apply(loader.load([config]), "warm")
    LastGood(tmp_path / "warm-state" / "last-known-good").save(loader.load([config]), "w", config)
    gc.collect()
    tracemalloc.start()
    yield
    tracemalloc.stop()


def per_file(size: int) -> float:
    return size / FILES


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def peak_over(start: int, run: Callable[[], object]) -> tuple[object, float, float]:
    """What ``run`` returned, and per file its peak and what it left, both over
    ``start``."""
    tracemalloc.reset_peak()
    result = run()
    now, peak = tracemalloc.get_traced_memory()
    return result, per_file(peak - start), per_file(now - start)


@pytest.mark.usefixtures("warm")
def test_a_loaded_and_applied_set_keeps_under_2_75_kib_per_one_integration_file(
    tmp_path: Path,
) -> None:
    config = one_each(tmp_path / "config", FILES)
    start = traced()
    loader, registry = ConfigLoader(), Registry()
    loaded = loader.load([config])
    assert registry.apply(loaded, "r1").ok
    del loaded
    gc.collect()
    assert per_file(traced() - start) < 2816  # 3,880 bytes before these pieces shed theirs


@pytest.mark.usefixtures("warm")
def test_a_walk_of_unchanged_files_peaks_low_and_keeps_no_second_copy(tmp_path: Path) -> None:
    config = one_each(tmp_path / "config", FILES)
    loader = ConfigLoader(wall=later_wall)
    first = loader.load([config])
    gc.collect()
    loaded, peak, left = peak_over(traced(), lambda: loader.load([config]))
    assert isinstance(loaded, ConfigSet) and loaded.files == first.files
    assert loader.reads == FILES
    assert peak < 250  # 700 bytes before: every path found listed first
    assert left < 50  # 340 bytes before: a second copy of each name and key


@pytest.mark.usefixtures("warm")
def test_a_whole_last_known_good_save_holds_one_part_at_a_time(tmp_path: Path) -> None:
    config = one_each(tmp_path / "config", FILES)
    loaded = ConfigLoader().load([config])
    gc.collect()
    store = LastGood(tmp_path / "state" / "last-known-good")
    done, peak, left = peak_over(traced(), lambda: store.save(loaded, "r1", config))
    assert done is True
    assert peak < 400  # 1,000 bytes before: every path twice, and a Path per blob
    # Nothing held once done, the table of interned texts included (a Path per
    # blob grew it for good).
    assert left < 50


def test_a_walk_and_named_changes_list_files_as_discovery_does(tmp_path: Path) -> None:
    """Where a file sorts is kept as one text; names that begin others, a file and
    a directory of the same stem, and names past ASCII sort as discovery lists
    them, after a walk and after changes applied by name."""
    names = [
        "a.yaml",
        "a/b.yaml",
        "a.b.yaml",
        "a-/c.yaml",
        "ab/d.yaml",
        "a/a/e.yaml",
        "a/a.yaml",
        "Z.yaml",
        "é.yaml",
        "z/é/f.yaml",
        "z/g.yaml",
    ]
    config = write_files(
        tmp_path / "config", *((name, minimal(f"u{n}")) for n, name in enumerate(names))
    )
    loader = ConfigLoader()
    assert loader.load([config]).files == tuple(str(p) for p in discover([config]))
    added = ["a/a/0.yaml", "a0.yaml", "ab.yaml", "z/é/0.yaml"]
    write_files(config, *((name, minimal(f"v{n}")) for n, name in enumerate(added)))
    (config / "a.b.yaml").unlink()
    named = loader.load([config], changed=[*added, "a.b.yaml"])
    assert named.changes is not None
    assert named.files == tuple(str(p) for p in discover([config]))
    assert named.files == ConfigLoader().load([config]).files


def test_each_token_reference_is_resolved_once_per_applied_set(tmp_path: Path) -> None:
    config = one_each(tmp_path / "config", 40)
    asked: list[SecretRef] = []

    def resolver(ref: SecretRef) -> str:
        asked.append(ref)
        return "resolved-token-value"

    registry = Registry(resolver=resolver)
    assert registry.apply(ConfigLoader().load([config]), "r1").ok
    assert asked == [SecretRef("env", "HIPCHAT_TOKEN")]
    notifiers = registry.snapshot.notifiers
    assert {n.tokens[str(1000 + i)] for i, n in enumerate(notifiers.values())} == {
        "resolved-token-value"
    }
    tokens = [t for n in notifiers.values() for t in n.tokens.values()]
    assert list(dict.fromkeys(tokens)) == ["resolved-token-value"]
    assert "resolved-token-value" not in repr(next(iter(notifiers.values())).tokens)


def test_a_checked_files_shared_listing_refuses_new_problems(tmp_path: Path) -> None:
    """Every checked file shares one empty listing of problems; adding to it would
    add to all of them, so it refuses."""
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")), ("b.yaml", minimal("b")))
    a, b = (r.loaded for r in ConfigLoader().load([config]).results)
    assert a.problems is b.problems and a.diagnostics == []
    with pytest.raises(RuntimeError):
        a.problems.add(Diagnostic(a.path, 1, 1, "", "found too late"))
    assert b.diagnostics == []
