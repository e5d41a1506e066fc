"""``syncd run`` as a process: its resync reads a file changed without an event,
and it starts on a last-known-good copy in the older layout, then converts it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from syncd.reconcile import lastgood
from tests.support.configs import minimal, write_files
from tests.support.lastgood import saved_files
from tests.support.processes import Proc, start, terminate
from tests.support.waiting import wait_for

ENV = {"HIPCHAT_TOKEN": "lastgood-daemon-token"}


def names(proc: Proc) -> dict[str, str]:
    data = requests.get(proc.url + "/v1/registry", timeout=10).json()
    return {i["uid"]: i["name"] for i in data["integrations"]}


@pytest.mark.slow
def test_the_resync_reads_a_file_changed_without_an_event(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", *((f"i{n}.yaml", minimal(f"i{n}")) for n in range(5)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(config / "i3.yaml", elsewhere / "i3.yaml")  # writes through it send no event
    proc = start(config, tmp_path / "state", "--resync-interval", "0.2", env=ENV)
    try:
        wait_for(lambda: len(names(proc)) == 5, what="the first reconcile")
        (elsewhere / "i3.yaml").write_text(minimal("i3").replace("name: i3", "name: i3x"))
        wait_for(lambda: names(proc)["i3"] == "i3x", what="the resync to read it")
        assert "resync:" in proc.log and "changed without a file event" in proc.log
    finally:
        assert terminate(proc) == 0, proc.log


@pytest.mark.slow
def test_a_start_on_a_copy_in_the_older_layout_serves_it_and_converts_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    copy = write_files(
        state / "last-known-good.1764000000000000000",
        ("a.yaml", minimal("a")),
        ("team/b.yaml", minimal("b")),
        (lastgood.REVISION_FILE, "abc123\n"),
    )
    (state / "last-known-good").symlink_to(copy.name)
    state.chmod(0o700)
    config = write_files(tmp_path / "config", ("a.yaml", "version: 1\nintegrations: [\n"))

    proc = start(config, state, env=ENV)
    try:
        assert sorted(names(proc)) == ["a", "b"]
        assert "started on the last-known-good set abc123" in proc.log, proc.log
        wait_for(
            lambda: (
                sorted(p.name for p in state.glob("last-known-good*"))
                == ["last-known-good", "last-known-good.store"]
            ),
            what="the copy converted and the old one gone",
        )
        assert os.readlink(state / "last-known-good") == "last-known-good.store"
        assert sorted(saved_files(state / "last-known-good")) == ["a.yaml", "team/b.yaml"]
    finally:
        assert terminate(proc) == 0, proc.log

    proc = start(config, state, env=ENV)
    try:
        assert sorted(names(proc)) == ["a", "b"]
        assert "started on the last-known-good set abc123" in proc.log, proc.log
    finally:
        assert terminate(proc) == 0, proc.log
