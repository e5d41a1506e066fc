"""kill -9 at every file system call of a last-known-good save.

A child process saves a set over another one and sends itself SIGKILL just
before its Nth call that writes, syncs, renames or removes (halfway through
a write, for a write), for every N the save makes: while blobs are written,
between the manifest's write and its rename, while the objects the old
manifest alone named are removed, while the copies of the older layout go.
After each kill the copy must read back as the old set or the new one,
whole; and the next daemon's first save must leave exactly the new set and
nothing else.

Three saves are cut this way: one after the first of a process (handed the
changed files), the first of a process over a copy saved before (a whole
comparison), and the conversion of a copy in the older layout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest

from syncd.config.filecache import ConfigLoader
from syncd.config.semantics import Options
from syncd.reconcile import lastgood
from tests.support.configs import minimal, write_files
from tests.support.lastgood import saved_files

Mode = Literal["changes", "whole", "convert"]

OLD = {
    **{f"f{n}.yaml": minimal(f"f{n}") for n in range(6)},
    "team/a.yaml": minimal("team-a"),
    "team/deep/b.yaml": minimal("team-b"),
    "twin.yaml": minimal("twin"),
}
# Edited, removed, added (one in a new directory), and one moved between files.
EDITS: dict[str, str | None] = {
    "f1.yaml": minimal("f1") + "    state: stopped\n",
    "team/a.yaml": minimal("team-a") + "    state: stopped\n",
    "f2.yaml": None,
    "team/deep/b.yaml": None,
    "g.yaml": minimal("g"),
    "new/h.yaml": minimal("team-b"),
}
NEW = {name: text for name, text in {**OLD, **EDITS}.items() if text is not None}

CHILD = r"""
import json, os, signal, sys
from pathlib import Path

spec = json.loads(sys.argv[1])
from syncd.config.filecache import ConfigLoader
from syncd.reconcile import lastgood

config, target = Path(spec["config"]), Path(spec["target"])
calls = 0

def armed(name):
    real = getattr(os, name)

    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == spec["kill_at"]:
            if name == "write":  # half of it, then die
                real(args[0], bytes(args[1])[: len(args[1]) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    return call

def arm():
    for name in ("open", "write", "fsync", "replace", "rename", "unlink", "rmdir",
                 "symlink", "mkdir", "sync"):
        setattr(os, name, armed(name))

store = lastgood.LastGood(target)
if spec["mode"] == "convert":
    saved = lastgood.read(target, ConfigLoader().options)
    arm()
    done = store.save(saved.config, saved.revision, saved.legacy)
else:
    loader = ConfigLoader()
    loader.take_changes()
    config_set = loader.load([config])
    changes = None
    if spec["mode"] == "changes":
        assert store.save(config_set, "old", config)
        loader.take_changes()
        for name, text in spec["edits"].items():
            path = config / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        config_set = loader.load([config], changed=list(spec["edits"]))
        changes = loader.take_changes()
    arm()
    done = store.save(config_set, "new", config, changes)
print(json.dumps({"done": done, "calls": calls}))
"""


def prepare(base: Path, mode: Mode) -> tuple[Path, Path]:
    """The config dir and state dir a child starts from."""
    config = write_files(base / "config", *OLD.items())
    state = base / "state"
    state.mkdir()
    target = state / "last-known-good"
    if mode == "whole":
        loader = ConfigLoader()
        assert lastgood.LastGood(target).save(loader.load([config]), "old", config)
    if mode == "convert":
        copy = write_files(state / "last-known-good.1764000000000000000", *OLD.items())
        (copy / lastgood.REVISION_FILE).write_text("old\n")
        target.symlink_to(copy.name)
    if mode != "changes":
        apply_edits(config)
    return config, state


def apply_edits(config: Path) -> None:
    for name, text in EDITS.items():
        path = config / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def child(config: Path, state: Path, mode: Mode, kill_at: int) -> subprocess.CompletedProcess[str]:
    spec = {
        "mode": mode,
        "config": str(config),
        "target": str(state / "last-known-good"),
        "kill_at": kill_at,
        "edits": EDITS,
    }
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HIPCHAT_TOKEN": "kill-lastgood-token"},
        check=False,
    )


def expected(mode: Mode) -> tuple[dict[str, bytes], dict[str, bytes]]:
    old = {name: text.encode() for name, text in OLD.items()}
    new = {name: text.encode() for name, text in NEW.items()}
    return old, (old if mode == "convert" else new)


def check_after_kill(config: Path, state: Path, mode: Mode, kill_at: int) -> str | None:
    """What is wrong with the copy a kill at ``kill_at`` left, if anything: it must
    read whole as the old set or the new, and the next save must leave the new set
    alone in a clean store."""
    target = state / "last-known-good"
    old, new = expected(mode)
    saved = lastgood.read(target, Options())
    if saved is None or not saved.config.valid:
        return f"call {kill_at}: no whole set to start on"
    files = saved_files(target)
    if (files, saved.revision) not in ((old, "old"), (new, "new" if mode != "convert" else "old")):
        return f"call {kill_at}: {saved.revision} with {sorted(files)}"
    if mode == "convert" and files == old and saved.legacy is None and saved.revision != "old":
        return f"call {kill_at}: converted without its revision"
    loader = ConfigLoader()
    if not lastgood.LastGood(target).save(loader.load([config]), "final", config):
        return f"call {kill_at}: the next save failed"
    return check_clean(state, {name: text.encode() for name, text in NEW.items()})


def check_clean(state: Path, files: dict[str, bytes]) -> str | None:
    target = state / "last-known-good"
    store = target.with_name("last-known-good.store")
    if saved_files(target) != files:
        return "the next save did not leave the new set"
    manifest = lastgood.Manifest.parse((store / lastgood.MANIFEST).read_bytes())
    named = set(manifest.parts.values()) | {
        lastgood.blob_name(path, digest) for path, digest in manifest.entries(store).items()
    }
    left = set(os.listdir(store / lastgood.OBJECTS))
    if left != named:
        return f"objects no manifest names: {sorted(left - named)}, missing: {named - left}"
    if sorted(os.listdir(store)) != [lastgood.MANIFEST, lastgood.OBJECTS]:
        return f"debris in the store: {sorted(os.listdir(store))}"
    if sorted(os.listdir(state)) != ["last-known-good", "last-known-good.store"]:
        return f"debris in the state dir: {sorted(os.listdir(state))}"
    return None


def one_kill(base: Path, mode: Mode, kill_at: int) -> str | None:
    work = base / f"kill-{kill_at}"
    config, state = prepare(work, mode)
    ran = child(config, state, mode, kill_at)
    if ran.returncode != -signal.SIGKILL:
        return f"call {kill_at}: exit {ran.returncode}, not killed: {ran.stderr[-600:]}"
    problem = check_after_kill(config, state, mode, kill_at)
    if problem is None:
        shutil.rmtree(work)
    return problem


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["changes", "whole", "convert"])
def test_a_kill_at_any_call_of_a_save_leaves_the_old_set_or_the_new(
    tmp_path: Path, mode: Mode
) -> None:
    config, state = prepare(tmp_path / "whole-run", mode)
    ran = child(config, state, mode, kill_at=0)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["done"], ran.stdout
    calls = report["calls"]
    assert calls > 20, calls  # the save was cut where it writes, not only at its end
    new = expected(mode)[1]
    assert saved_files(state / "last-known-good") == new
    assert check_clean(state, new) is None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(lambda k: one_kill(tmp_path, mode, k), range(1, calls + 1)))
    assert [p for p in problems if p is not None] == []
