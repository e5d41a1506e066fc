"""The config loader re-reads only what changed."""

from __future__ import annotations

import os
from pathlib import Path

from syncd.configset import ConfigLoader
from tests.support.configs import minimal


def test_unchanged_files_are_not_parsed_again(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / f"{name}.yaml").write_text(minimal(name))
    loader = ConfigLoader()
    first = loader.load([tmp_path])
    assert first.valid and len(first.integrations) == 3
    a, b, c = first.integrations

    (tmp_path / "b.yaml").write_text(minimal("b") + "    state: disabled\n")
    second = loader.load([tmp_path])
    assert second.integrations[0] is a
    assert second.integrations[1] is not b
    assert second.integrations[1].state == "disabled"
    assert second.integrations[2] is c
    assert second.digest != first.digest


def test_touched_but_identical_file_keeps_its_result(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(minimal("a"))
    loader = ConfigLoader()
    (before,) = loader.load([tmp_path]).integrations
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    config = loader.load([tmp_path])
    assert config.integrations[0] is before


def test_without_trusting_stat_a_same_size_same_mtime_edit_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(minimal("a") + "    state: stopped\n")
    loader = ConfigLoader()
    assert loader.load([tmp_path]).integrations[0].state == "stopped"
    st = path.stat()
    path.write_text(minimal("a") + "    state: enabled\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert loader.load([tmp_path]).integrations[0].state == "stopped"
    assert loader.load([tmp_path], trust_stat=False).integrations[0].state == "enabled"


def test_deleted_files_leave_the_set(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(minimal("a"))
    (tmp_path / "b.yaml").write_text(minimal("b"))
    loader = ConfigLoader()
    assert len(loader.load([tmp_path]).integrations) == 2
    (tmp_path / "b.yaml").unlink()
    assert [i.uid for i in loader.load([tmp_path]).integrations] == ["a"]


def test_kept_files_place_a_later_duplicate_without_their_yaml_tree(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# first\n" + minimal("shared"))
    loader = ConfigLoader()
    assert loader.load([tmp_path]).valid
    (tmp_path / "b.yaml").write_text(minimal("shared").replace("name: shared", "name: other"))
    config = loader.load([tmp_path])
    messages = [f"{d.file}:{d.line}:{d.col}: {d.message}" for d in config.diagnostics]
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    assert messages == [
        f"{first}:4:10: duplicate uid 'shared'; also defined at {second}:3:10",
        f"{second}:3:10: duplicate uid 'shared'; also defined at {first}:4:10",
    ]
    assert all(result.loaded.root is None for _, result in loader._cache.values())
