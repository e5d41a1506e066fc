"""The daemon's loader re-reads only what changed, and a load that is told which
paths changed gives the set a fresh load gives."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config.budget import Deadline
from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.discovery import find
from syncd.config.filecache import RACY_NS, ConfigLoader
from syncd.config.semantics import Options
from tests.support.configs import minimal
from tests.support.filetimes import later_wall, next_tick


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


def test_a_same_size_same_mtime_edit_is_seen_through_the_ctime(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(minimal("a") + "    state: stopped\n")
    loader = ConfigLoader(wall=later_wall)
    assert loader.load([tmp_path]).integrations[0].state == "stopped"
    st = path.stat()
    next_tick(path)
    path.write_text(minimal("a") + "    state: enabled\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert loader.load([tmp_path]).integrations[0].state == "enabled"


def test_a_file_read_as_it_was_written_is_read_again(tmp_path: Path) -> None:
    """Written again within the same tick of the file system's clock, it would keep
    its fingerprint over other bytes: it is not trusted until read a while later."""
    path = tmp_path / "a.yaml"
    path.write_text(minimal("a"))
    ctime = path.stat().st_ctime_ns
    wall = [ctime + RACY_NS - 1]
    loader = ConfigLoader(wall=lambda: wall[0])
    loader.load([tmp_path])
    loader.load([tmp_path])
    assert loader.reads == 2  # racy when read: read again
    wall[0] = ctime + RACY_NS
    loader.load([tmp_path])
    loader.load([tmp_path])
    assert loader.reads == 3  # then trusted


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
    assert all(entry.result.loaded.root is None for entry in loader._entries.values())


def _same(incremental: ConfigSet, fresh: ConfigSet) -> None:
    assert incremental.files == fresh.files
    assert [str(d) for d in incremental.diagnostics] == [str(d) for d in fresh.diagnostics]
    assert incremental.integrations == fresh.integrations
    assert incremental.digest == fresh.digest
    assert incremental.file_digests == fresh.file_digests


NAMES = ["a.yaml", "b.yml", "z.yaml", "sub/c.yaml", "sub/a.yaml", "sub/deep/d.yaml", "x/e.yaml"]
IGNORED = ["notes.txt", ".hidden/f.yaml", "skip/g.yaml", ".h.yaml"]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "delete", "rename"]),
            st.sampled_from(NAMES + IGNORED),
            st.sampled_from(NAMES),
            st.sampled_from(["a", "b", "c", "shared", "broken", "dupname"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_named_changes_give_the_set_a_fresh_load_gives(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str, str]]
) -> None:
    """Random writes, deletions and renames, in nested and ignored places, files that
    clash on uid or name, files that do not parse; after each, the loader is told
    the paths, and must agree with a load that reads everything."""
    root = tmp_path_factory.mktemp("config")
    options = Options(exclude=("skip/*",))
    loader = ConfigLoader(options)
    loader.load([root])
    for number, (kind, name, other, uid) in enumerate(steps):
        path = root / name
        changed = [name]
        if kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_text(uid, number))
        elif kind == "delete":
            path.unlink(missing_ok=True)
        elif path.exists():
            target = root / other
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            changed.append(other)
        _same(loader.load([root], changed=changed), load_config_set([root], options))


def _text(uid: str, number: int) -> str:
    if uid == "broken":
        return "version: 1\nintegrations: [\n"
    text = minimal(uid)
    if uid == "dupname":
        text = minimal(f"dup-{number}").replace(f"name: dup-{number}", "name: shared")
    return text + f"    # edit {number}\n"


def test_a_new_directory_is_walked(tmp_path: Path) -> None:
    loader = ConfigLoader()
    loader.load([tmp_path])
    (tmp_path / "team" / "inner").mkdir(parents=True)
    (tmp_path / "team" / "inner" / "a.yaml").write_text(minimal("a"))
    config = loader.load([tmp_path], changed=["team"])
    assert [i.uid for i in config.integrations] == ["a"]


def test_a_linked_directory_turns_named_changes_into_a_walk(tmp_path: Path) -> None:
    """A file under a linked directory has two paths; an event names the real one."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.yaml").write_text(minimal("a"))
    (tmp_path / "link").symlink_to("real")
    loader = ConfigLoader()
    assert len(loader.load([tmp_path]).integrations) == 1  # each directory once
    (tmp_path / "real" / "a.yaml").write_text(minimal("a") + "    state: stopped\n")
    config = loader.load([tmp_path], changed=["real/a.yaml"])
    _same(config, load_config_set([tmp_path]))
    assert config.integrations[0].state == "stopped"


def test_unchanged_files_are_not_even_stated_when_paths_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(minimal("a"))
    (tmp_path / "b.yaml").write_text(minimal("b"))
    loader = ConfigLoader()
    loader.load([tmp_path])
    # b changes without being named: a named load does not look at it.
    (tmp_path / "b.yaml").write_text(minimal("b") + "    state: stopped\n")
    (tmp_path / "a.yaml").write_text(minimal("a") + "    state: stopped\n")
    config = loader.load([tmp_path], changed=["a.yaml"])
    assert [i.state for i in config.integrations] == ["stopped", "enabled"]
    assert [i.state for i in loader.load([tmp_path]).integrations] == ["stopped", "stopped"]


class _Clock:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _files(root: Path, count: int) -> None:
    for n in range(count):
        (root / f"f{n:02}.yaml").write_text(minimal(f"u{n}"))


def test_a_load_past_its_deadline_is_rejected_whole_in_one_diagnostic(tmp_path: Path) -> None:
    """The daemon keeps its set when a load runs too long: the set it is given is
    invalid and says why."""
    _files(tmp_path, 10)
    clock = _Clock()
    config = ConfigLoader().load([tmp_path], deadline=Deadline.within(5.0, clock))
    assert not config.valid and not config.integrations
    (only,) = config.diagnostics
    assert only.file == str(tmp_path)
    assert only.message.startswith("the config set took more than 5 s to load")
    assert "rejected" in only.message
    assert clock.now < 10  # stopped, not run to the end and judged after


def test_a_load_within_its_deadline_is_the_set_a_load_without_one_gives(tmp_path: Path) -> None:
    _files(tmp_path, 10)
    config = ConfigLoader().load([tmp_path], deadline=Deadline.within(1000.0, _Clock()))
    _same(config, load_config_set([tmp_path]))


def test_after_a_stopped_load_the_next_gives_the_whole_set(tmp_path: Path) -> None:
    """A stopped load leaves the loader's lists behind its files: the next load walks,
    keeping what the stopped one read, even when told only one path changed."""
    _files(tmp_path, 10)
    loader = ConfigLoader()
    loader.load([tmp_path])
    (tmp_path / "f03.yaml").write_text(minimal("u3") + "    state: stopped\n")
    (tmp_path / "f07.yaml").unlink()
    assert not loader.load([tmp_path], deadline=Deadline.within(5.0, _Clock())).valid
    (tmp_path / "f09.yaml").write_text(minimal("u9") + "    state: disabled\n")
    config = loader.load([tmp_path], changed=["f09.yaml"])
    _same(config, load_config_set([tmp_path]))
    assert len(config.integrations) == 9
    assert {i.uid: i.state for i in config.integrations}["u3"] == "stopped"


def test_a_named_change_load_past_its_deadline_is_rejected(tmp_path: Path) -> None:
    _files(tmp_path, 3)
    loader = ConfigLoader()
    loader.load([tmp_path])
    (tmp_path / "f01.yaml").write_text(minimal("u1") + "    state: stopped\n")
    stopped = loader.load([tmp_path], changed=["f01.yaml"], deadline=Deadline.within(0.0, _Clock()))
    assert not stopped.valid
    _same(loader.load([tmp_path], changed=["f01.yaml"]), load_config_set([tmp_path]))


def test_load_config_set_takes_a_deadline_too(tmp_path: Path) -> None:
    _files(tmp_path, 10)
    config = load_config_set([tmp_path], deadline=Deadline.within(5.0, _Clock()))
    (only,) = config.diagnostics
    assert "took more than" in only.message
    assert load_config_set([tmp_path], deadline=Deadline.within(100.0, _Clock())).valid


def test_the_walk_of_a_deep_tree_stops_at_the_deadline(tmp_path: Path) -> None:
    deep = tmp_path
    for n in range(30):
        deep = deep / f"d{n}"
    deep.mkdir(parents=True)
    clock = _Clock()
    config = load_config_set([tmp_path], deadline=Deadline.within(10.0, clock))
    assert "took more than" in config.diagnostics[0].message
    assert clock.now < 15


def test_a_scan_finds_the_files_a_load_finds(tmp_path: Path) -> None:
    """The resync's walk and discovery agree on every rule: hidden and build
    directories, --exclude, links inside and outside the directory, a loop, a
    dangling link, names that are not YAML."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.yaml").write_text(minimal("o"))
    root = tmp_path / "config"
    for name in ["a.yaml", "b.yml", "notes.txt", ".h.yaml", ".hidden/f.yaml", "skip/g.yaml"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(minimal("x"))
    for name in ["build/x.yaml", "sub/c.yaml", "sub/deep/d.yaml", "team/skip/h.yaml"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(minimal("x"))
    (root / "linked").symlink_to("sub")
    (root / "out").symlink_to(outside)
    (root / "sub" / "loop").symlink_to("..")
    (root / "dangling.yaml").symlink_to("nowhere.yaml")
    options = Options(exclude=("/skip/*",))
    scan = ConfigLoader(options).scan(root)
    assert set(scan.files) == {str(path) for path in find([root], options.files).files}
    assert str(root / "team" / "skip" / "h.yaml") in scan.files
    assert scan.linked_dirs
    assert scan.files[str(root / "dangling.yaml")] >> 256 == 1  # the link's own, marked


def test_differences_name_the_files_that_changed_and_only_those(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / f"{name}.yaml").write_text(minimal(name))
    loader = ConfigLoader(wall=later_wall)
    loader.load([tmp_path])
    assert loader.differences(tmp_path, loader.baseline()) == frozenset()
    reads = loader.reads

    b = tmp_path / "b.yaml"
    st = b.stat()
    next_tick(b)
    b.write_text(minimal("b").replace("checkout", "checkoup"))  # same size
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    (tmp_path / "c.yaml").unlink()
    (tmp_path / "d.yaml").write_text(minimal("d"))
    (tmp_path / "notes.txt").write_text("not config")
    found = loader.differences(tmp_path, loader.baseline())
    assert found == {"b.yaml", "c.yaml", "d.yaml"}
    assert loader.reads == reads  # a scan and a comparison read nothing

    config = loader.load([tmp_path], changed=found)
    assert sorted(i.uid for i in config.integrations) == ["a", "b", "d"]
    assert loader.reads == reads + 2
    assert loader.differences(tmp_path, loader.baseline()) == frozenset()


def test_differences_ask_for_a_walk_when_names_cannot_be_applied(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(minimal("a"))
    loader = ConfigLoader(wall=later_wall)
    assert loader.differences(tmp_path, loader.baseline()) is None  # nothing loaded yet
    loader.load([tmp_path])
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "b.yaml").write_text(minimal("b"))
    (tmp_path / "linked").symlink_to("real")
    assert loader.differences(tmp_path, loader.baseline()) is None  # a file with two paths
    loader.load([tmp_path])
    assert loader.differences(tmp_path, loader.baseline()) == frozenset()
    other = tmp_path / "real"
    assert loader.differences(other, loader.baseline()) is None  # not the directory loaded


def test_take_changes_says_what_the_loads_since_changed(tmp_path: Path) -> None:
    for name in "ab":
        (tmp_path / f"{name}.yaml").write_text(minimal(name))
    loader = ConfigLoader()
    first = loader.load([tmp_path])
    assert loader.take_changes() is None  # the first load: everything changed
    a_before, b_before = first.results

    (tmp_path / "a.yaml").write_text(minimal("a") + "    state: stopped\n")
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "c.yaml").write_text(minimal("c"))
    second = loader.load([tmp_path], changed=["a.yaml", "b.yaml", "c.yaml"])
    a_after, c_after = second.results
    assert loader.take_changes() == {
        str(tmp_path / "a.yaml"): (a_before, a_after),
        str(tmp_path / "b.yaml"): (b_before, None),
        str(tmp_path / "c.yaml"): (None, c_after),
    }
    (tmp_path / "c.yaml").unlink()
    loader.load([tmp_path], changed=["c.yaml"])
    (tmp_path / "c.yaml").write_text(minimal("c"))
    loader.load([tmp_path], changed=["c.yaml"])
    assert list(loader.take_changes() or {}) == [str(tmp_path / "c.yaml")]
    loader.load([tmp_path / "a.yaml"])
    assert loader.take_changes() is None  # other paths: everything changed


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "delete", "rename"]),
            st.sampled_from(NAMES + IGNORED),
            st.sampled_from(NAMES),
            st.sampled_from(["a", "b", "c", "shared", "broken", "dupname"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_what_a_resync_names_gives_the_set_a_fresh_load_gives(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str, str]]
) -> None:
    """Changes no event reported: the resync's comparison must name every file a
    load needs to read again to agree with a load that reads everything."""
    root = tmp_path_factory.mktemp("config")
    options = Options(exclude=("skip/*",))
    loader = ConfigLoader(options)
    loader.load([root])
    for number, (kind, name, other, uid) in enumerate(steps):
        path = root / name
        if kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_text(uid, number))
        elif kind == "delete":
            path.unlink(missing_ok=True)
        elif path.exists():
            (root / other).parent.mkdir(parents=True, exist_ok=True)
            path.rename(root / other)
        found = loader.differences(root, loader.baseline())
        _same(loader.load([root], changed=found), load_config_set([root], options))


# A link swapped to another directory (a git checkout): the files that did not
# change are hard links of the ones loaded, so they keep their inode, size and
# mtime, and only their ctime moves (a link made or removed moves it).


def _swap(link: Path, directory: Path) -> None:
    temp = link.with_name(f".{link.name}.new")
    temp.symlink_to(directory.name)
    os.replace(temp, link)


def _relinked(old: Path, new: Path, edits: dict[str, str | None]) -> Path:
    """``new`` holding hard links of ``old``'s files, but for ``edits``: a name to
    its new text, written afresh, or None for a file removed."""
    new.mkdir()
    for path in sorted(old.rglob("*.yaml")):
        name = str(path.relative_to(old))
        if name not in edits:
            (new / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, new / name)
    for name, text in edits.items():
        if text is not None:
            (new / name).parent.mkdir(parents=True, exist_ok=True)
            (new / name).write_text(text)
    return new


def _checkout(tmp_path: Path, count: int) -> tuple[Path, Path]:
    first = tmp_path / "one"
    (first / "team").mkdir(parents=True)
    for n in range(count):
        (first / ("team" if n % 3 == 0 else ".") / f"f{n:02}.yaml").write_text(minimal(f"u{n}"))
    link = tmp_path / "current"
    _swap(link, first)
    return link, first


EDITS: dict[str, str | None] = {
    "f01.yaml": minimal("u1") + "    state: stopped\n",
    "f02.yaml": None,
    "team/new.yaml": minimal("new"),
}


def test_a_moved_link_reads_only_the_files_named(tmp_path: Path) -> None:
    link, first = _checkout(tmp_path, 30)
    loader = ConfigLoader(wall=later_wall)
    loader.load([link])
    reads = loader.reads
    _swap(link, _relinked(first, tmp_path / "two", EDITS))
    config = loader.load([link], changed=set(EDITS), moved=True)
    assert loader.reads == reads + 2  # the edited file and the new one
    _same(config, load_config_set([link]))
    assert config.changes is not None  # named: the registry resolves only what changed


def test_without_being_told_of_the_move_the_loader_walks_and_reads_every_file(
    tmp_path: Path,
) -> None:
    """Never inferred: the ctime of every linked file moved, so each is read."""
    link, first = _checkout(tmp_path, 30)
    loader = ConfigLoader(wall=later_wall)
    loader.load([link])
    reads = loader.reads
    next_tick(first / "f01.yaml")
    _swap(link, _relinked(first, tmp_path / "two", EDITS))
    config = loader.load([link], changed=set(EDITS))
    assert loader.reads == reads + 30
    _same(config, load_config_set([link]))


def test_after_a_move_a_resync_names_none_of_the_linked_files(tmp_path: Path) -> None:
    """Removing the old checkout moves the ctime of the files linked from it again,
    after the load: neither the resync nor a walk reads them for it."""
    link, first = _checkout(tmp_path, 30)
    loader = ConfigLoader(wall=later_wall)
    loader.load([link])
    _swap(link, _relinked(first, tmp_path / "two", EDITS))
    loader.load([link], changed=set(EDITS), moved=True)
    next_tick(tmp_path / "two" / "f04.yaml")
    shutil.rmtree(first)
    assert loader.differences(link, loader.baseline()) == frozenset()
    reads = loader.reads
    _same(loader.load([link]), load_config_set([link]))
    assert loader.reads == reads


def test_a_file_the_move_left_unnamed_but_rewritten_is_found_by_the_resync(
    tmp_path: Path,
) -> None:
    """The linked files are trusted by inode, size and mtime: one that is another
    file (written afresh, its content the same or not) is read at the next resync."""
    link, first = _checkout(tmp_path, 10)
    loader = ConfigLoader(wall=later_wall)
    loader.load([link])
    second = _relinked(first, tmp_path / "two", {"f04.yaml": minimal("u4") + "    # same\n"})
    _swap(link, second)
    reads = loader.reads
    loader.load([link], changed=(), moved=True)
    assert loader.reads == reads
    found = loader.differences(link, loader.baseline())
    assert found == {"f04.yaml"}
    _same(loader.load([link], changed=found), load_config_set([link]))
    (second / "f05.yaml").write_text(minimal("u5") + "    state: stopped\n")  # an edit
    assert loader.differences(link, loader.baseline()) == {"f05.yaml"}
    reads = loader.reads
    _same(loader.load([link]), load_config_set([link]))
    assert loader.reads == reads + 1


def test_a_move_to_a_directory_named_as_changed_is_walked(tmp_path: Path) -> None:
    link, first = _checkout(tmp_path, 6)
    loader = ConfigLoader(wall=later_wall)
    loader.load([link])
    second = _relinked(first, tmp_path / "two", {"f01.yaml": None})
    (second / "f01.yaml").mkdir()  # a file become a directory
    (second / "f01.yaml" / "a.yaml").write_text(minimal("a"))
    _swap(link, second)
    _same(loader.load([link], changed={"f01.yaml"}, moved=True), load_config_set([link]))
