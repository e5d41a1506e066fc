"""The last-known-good store on real files: a save costs the changed files, the
copy reads back whole, a copy in the older layout is read and converted, and a
reader never sees half a set."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.config.configset import ConfigSet
from syncd.config.filecache import ConfigLoader
from syncd.config.semantics import Options
from syncd.reconcile import lastgood
from syncd.reconcile.reconciler import Reconciler
from syncd.registry import Registry
from tests.support.configs import minimal, write_files
from tests.support.lastgood import saved_files


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "lastgood-test-token")


class Saving:
    """A loader over a config dir and the store its sets are saved in, as the
    reconciler drives them: each load's changes go with the set saved."""

    def __init__(self, config: Path, state: Path) -> None:
        self.config = config
        self.target = state / "last-known-good"
        self.loader = ConfigLoader()
        self.loader.take_changes()
        self.store = lastgood.LastGood(self.target)

    def load(self, *changed: str) -> tuple[ConfigSet, lastgood.FileChanges | None]:
        config = self.loader.load([self.config], changed=changed or None)
        assert config.valid, config.diagnostics
        return config, self.loader.take_changes()

    def save(self, revision: str, *changed: str) -> bool:
        config, changes = self.load(*changed)
        return self.store.save(config, revision, self.config, changes)

    def objects(self) -> set[str]:
        return set(os.listdir(self.store.store / lastgood.OBJECTS))


def files_of(config: Path) -> dict[str, bytes]:
    return {
        p.relative_to(config).as_posix(): p.read_bytes()
        for p in config.rglob("*.yaml")
        if p.is_file()
    }


@pytest.fixture
def saving(tmp_path: Path) -> Saving:
    config = write_files(
        tmp_path / "config",
        *((f"f{n}.yaml", minimal(f"f{n}")) for n in range(20)),
        ("team/a.yaml", minimal("team-a")),
        ("team/deep/b.yaml", minimal("team-b")),
    )
    return Saving(config, tmp_path / "state")


def test_a_saved_set_reads_back_whole_under_the_copy_path(saving: Saving) -> None:
    assert saving.save("r1")
    saved = lastgood.read(saving.target, Options())
    assert saved is not None and saved.legacy is None
    assert saved.revision == "r1" and saved.config.valid
    assert saved_files(saving.target) == files_of(saving.config)
    assert saved.config.files[-2:] == (
        str(saving.target / "team" / "a.yaml"),
        str(saving.target / "team" / "deep" / "b.yaml"),
    )  # discovery's order, shown below the state dir's link
    assert os.readlink(saving.target) == "last-known-good.store"


def test_one_changed_file_writes_its_blob_its_part_and_the_manifest(saving: Saving) -> None:
    assert saving.save("r1")
    before = saving.objects()
    manifest = (saving.store.store / lastgood.MANIFEST).stat().st_ino
    (saving.config / "f3.yaml").write_text(minimal("f3") + "    state: stopped\n")
    assert saving.save("r2", "f3.yaml")
    after = saving.objects()
    assert len(after - before) == 2 and len(before - after) == 2  # a blob and a part each
    assert (saving.store.store / lastgood.MANIFEST).stat().st_ino != manifest
    assert saved_files(saving.target) == files_of(saving.config)


def test_a_save_after_the_first_reads_only_the_changed_files(saving: Saving) -> None:
    assert saving.save("r1")
    expected = saved_files(saving.target)
    for name in ["f1.yaml", "f2.yaml", "team/deep/b.yaml"]:
        (saving.config / name).chmod(0)  # unreadable now: a save that reads them fails
    (saving.config / "f5.yaml").write_text(minimal("f5") + "    state: stopped\n")
    config, changes = saving.load("f5.yaml")
    os.unlink(saving.config / "f1.yaml")
    (saving.config / "f2.yaml").write_text("not even YAML: [")
    assert saving.store.save(config, "r2", saving.config, changes)
    expected["f5.yaml"] = (saving.config / "f5.yaml").read_bytes()
    assert saved_files(saving.target) == expected


class Calls:
    """Counts the file system calls that look at or open files: what a save costs."""

    NAMES = ("stat", "lstat", "open", "scandir", "listdir")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in self.NAMES:
            monkeypatch.setattr(os, name, self._counted(getattr(os, name)))
        monkeypatch.setattr(io, "open", self._counted(io.open))

    def _counted(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return call(*args, **kwargs)

        return counted


def calls_of_one_change(base: Path, files: int) -> int:
    config = write_files(base / "config", *((f"f{n}.yaml", minimal(f"f{n}")) for n in range(files)))
    saving = Saving(config, base / "state")
    assert saving.save("r1")
    (config / "f3.yaml").write_text(minimal("f3") + "    state: stopped\n")
    loaded, changes = saving.load("f3.yaml")
    with pytest.MonkeyPatch.context() as patch:
        calls = Calls(patch)
        assert saving.store.save(loaded, "r2", config, changes)
    assert saved_files(saving.target) == files_of(config)
    return calls.count


def test_a_one_file_save_costs_the_same_at_any_size_of_the_set(tmp_path: Path) -> None:
    small = calls_of_one_change(tmp_path / "small", 30)
    large = calls_of_one_change(tmp_path / "large", 600)
    assert small == large
    assert small < 30


def test_changes_that_do_not_add_up_to_the_set_make_a_whole_comparison(saving: Saving) -> None:
    assert saving.save("r1")
    (saving.config / "f4.yaml").write_text(minimal("f4") + "    state: stopped\n")
    (saving.config / "f6.yaml").unlink()
    config, _ = saving.load("f4.yaml", "f6.yaml")
    assert saving.store.save(config, "r2", saving.config, {})  # told nothing changed
    assert saved_files(saving.target) == files_of(saving.config)


def test_a_file_changed_since_it_was_applied_is_not_saved(saving: Saving) -> None:
    assert saving.save("r1")
    before, objects = saved_files(saving.target), saving.objects()
    (saving.config / "f7.yaml").write_text(minimal("f7") + "    state: stopped\n")
    (saving.config / "f8.yaml").write_text(minimal("f8") + "    state: stopped\n")
    config, changes = saving.load("f7.yaml", "f8.yaml")
    (saving.config / "f8.yaml").write_text(minimal("f8") + "    state: enabled\n")
    assert not saving.store.save(config, "r2", saving.config, changes)
    assert saved_files(saving.target) == before
    assert saving.objects() == objects  # nothing left behind
    assert saving.save("r3", "f8.yaml")  # the next reconcile's save: whole
    assert saved_files(saving.target) == files_of(saving.config)


def test_a_damaged_copy_is_not_served(saving: Saving) -> None:
    assert saving.save("r1")
    store = saving.store.store / lastgood.OBJECTS
    blob = store / lastgood.blob_name("f0.yaml", saving.load()[0].file_digests[0])
    blob.write_text(minimal("f0") + "    state: stopped\n")
    assert lastgood.read(saving.target, Options()) is None


def test_what_a_kill_left_is_swept_by_the_next_daemons_first_save(saving: Saving) -> None:
    assert saving.save("r1")
    expected = saving.objects()
    store = saving.store.store
    (store / lastgood.OBJECTS / ".abc.tmp").write_bytes(b"half")
    (store / lastgood.OBJECTS / ("0" * 64)).write_bytes(b"named by no manifest")
    (store / ".manifest.tmp").write_bytes(b"{")
    old_copy = saving.target.with_name("last-known-good.1234")
    old_copy.mkdir()
    (old_copy / "a.yaml").write_text(minimal("a"))
    saving.target.with_name("last-known-good.link").symlink_to(old_copy.name)

    again = lastgood.LastGood(saving.target)
    config, _ = saving.load()
    assert again.save(config, "r1", saving.config)
    assert saving.objects() == expected
    assert sorted(os.listdir(store)) == [lastgood.MANIFEST, lastgood.OBJECTS]
    assert sorted(p.name for p in saving.target.parent.iterdir()) == [
        "last-known-good",
        "last-known-good.store",
    ]


def legacy_copy(state: Path, files: dict[str, str], *, linked: bool = True) -> Path:
    """The layout before the store: a link to a directory of plain copies and a
    ``.revision`` file, or (``linked`` False) that directory in the link's place."""
    state.mkdir(parents=True, exist_ok=True)
    copy = state / ("last-known-good.1764000000000000000" if linked else "last-known-good")
    write_files(copy, *files.items(), (".revision", "abc123\n"))
    if linked:
        (state / "last-known-good").symlink_to(copy.name)
    return copy


@pytest.mark.parametrize("linked", [True, False])
def test_a_copy_in_the_older_layout_is_served_then_converted(tmp_path: Path, linked: bool) -> None:
    files = {"a.yaml": minimal("a"), "team/b.yaml": minimal("b")}
    state = tmp_path / "state"
    copy = legacy_copy(state, files, linked=linked)
    config = write_files(tmp_path / "config", ("a.yaml", "version: 1\nintegrations: [\n"))
    rec = Reconciler(config, state, ConfigLoader(), Registry())

    served = rec.serve_last_known_good()
    assert served is not None and served.ok and served.revision == "abc123"
    assert sorted(rec.registry.snapshot.notifiers) == ["a", "b"]
    rejected = rec.reconcile()
    assert rejected is not None and not rejected.ok  # the config dir is broken

    rec.save_last_known_good()
    assert os.readlink(state / "last-known-good") == "last-known-good.store"
    assert saved_files(state / "last-known-good") == {k: v.encode() for k, v in files.items()}
    assert not any(p.name.startswith("last-known-good.1") for p in state.iterdir())
    if linked:
        assert not copy.exists()
    saved = lastgood.read(state / "last-known-good", Options())
    assert saved is not None and saved.legacy is None and saved.revision == "abc123"
    assert sorted(i.uid for i in saved.config.integrations) == ["a", "b"]


def names_in_round(round_no: int) -> set[str]:
    """The integration names of round ``round_no``: one file's renamed each round."""
    renamed = {round_no % 20: f"r{round_no}"} if round_no else {}
    return {renamed.get(n, f"f{n}") for n in range(20)} | {"team-a", "team-b"}


def test_a_reader_sees_one_whole_set_while_saves_run(saving: Saving) -> None:
    """Each save replaces a file and removes what only the manifest it replaced
    named; a reader that lost a file to that reads again from the new manifest."""
    assert saving.save("r0")
    stop = threading.Event()
    seen: set[str] = set()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            saved = lastgood.read(saving.target, Options())
            if saved is None or not saved.config.valid:
                problems.append("no whole set")
                continue
            names = {i.name for i in saved.config.integrations}
            if names != names_in_round(int(saved.revision[1:])):
                problems.append(f"{saved.revision}: {sorted(names)}")
            seen.add(saved.revision)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_no in range(1, 60):
            n, previous = round_no % 20, (round_no - 1) % 20
            (saving.config / f"f{previous}.yaml").write_text(minimal(f"f{previous}"))
            (saving.config / f"f{n}.yaml").write_text(
                minimal(f"f{n}").replace(f"name: f{n}", f"name: r{round_no}")
            )
            assert saving.save(f"r{round_no}", f"f{previous}.yaml", f"f{n}.yaml")
    finally:
        stop.set()
        reader.join(30)
    assert problems == []
    assert len(seen) > 1


def test_the_reconciler_hands_each_save_the_files_changed_since_the_last(
    tmp_path: Path,
) -> None:
    """Across reconciles that apply, reject and change nothing, and sets queued but
    replaced before a save took them, each save gets what changed since the set
    saved before it: it touches those files alone and leaves the applied set."""
    config = write_files(
        tmp_path / "config", *((f"f{n:03}.yaml", minimal(f"f{n:03}")) for n in range(200))
    )
    rec = Reconciler(config, tmp_path / "state", ConfigLoader(), Registry())
    target = tmp_path / "state" / "last-known-good"

    def reconcile(*changed: str) -> bool:
        outcome = rec.reconcile(changed)
        assert outcome is not None
        return outcome.ok

    assert rec.reconcile() is not None
    rec.save_last_known_good()
    (config / "f001.yaml").write_text(minimal("f001") + "    state: stopped\n")
    assert reconcile("f001.yaml")
    (config / "f002.yaml").write_text("version: 1\nintegrations: [\n")
    assert not reconcile("f002.yaml")  # rejected: not saved, but its change is noted
    (config / "f002.yaml").write_text(minimal("f002") + "    state: stopped\n")
    (config / "f003.yaml").unlink()
    assert reconcile("f002.yaml", "f003.yaml")  # queued over the first, never taken
    (config / "f004.yaml").write_text(minimal("f004") + "\n# a comment\n")
    assert reconcile("f004.yaml")  # applied, nothing changed in the set: not queued
    (config / "f005.yaml").write_text(minimal("f005") + "    state: stopped\n")
    assert reconcile("f005.yaml")
    with pytest.MonkeyPatch.context() as patch:
        calls = Calls(patch)
        rec.save_last_known_good()
    assert calls.count < 40  # five files, not two hundred
    assert saved_files(target) == files_of(config)
