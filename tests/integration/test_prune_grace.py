"""A removed integration that comes back unchanged within --prune-grace gets its
queued notifications back.

Removal cancels what an integration had queued; a checkout that flaps, or a
truncated file applied, used to lose it for good. For ``prune_grace``
(default 10 minutes, on the monotonic clock) the removal is remembered; an
integration with the same uid, endpoint and room ids, not disabled, is
"unchanged" and what its removal cancelled is queued again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.delivery.housekeeping import PRUNE_GRACE, Housekeeping
from syncd.events.ingest import Ingest
from syncd.registry import Registry
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.store.sqlite import Outbox
from tests.support.configs import minimal
from tests.support.events import event
from tests.support.waiting import wait_for


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


HELD = minimal("held") + "    state: stopped\n    trigger: {event: trace}\n"


class Rig:
    def __init__(self, tmp_path: Path, grace: float = PRUNE_GRACE) -> None:
        self.config = tmp_path / "config"
        self.config.mkdir()
        (self.config / "a.yaml").write_text(minimal("a"))
        self.wall, self.mono = Clock(1_764_158_400.0), Clock(10.0)
        self.outbox = Outbox(tmp_path / "outbox.db", clock=self.wall, monotonic=self.mono)
        self.registry = Registry(resolver=lambda ref: "token", clock=self.wall)
        self.ingest = Ingest(self.outbox, self.registry, clock=self.wall)
        self.woken: list[int] = []
        self.upkeep = Housekeeping(
            self.outbox,
            self.ingest,
            max_age=86_400,
            prune_grace=grace,
            clock=self.wall,
            monotonic=self.mono,
            wake=self.woken.append,
        )
        self.registry.add_listener(self.upkeep.on_applied)

    def apply(self, held: str | None) -> None:
        path = self.config / "held.yaml"
        if held is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(held)
        assert self.registry.apply(load_config_set([self.config]), "test").ok
        self.upkeep.tick()

    def states(self) -> list[tuple[str, str | None]]:
        return [(i.state, i.reason) for i in self.outbox.items(uid="held")]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path)
    rig.apply(HELD)
    assert rig.ingest.submit([event("checkout", "f")] * 3).notifications == 4  # a: once
    return rig


def test_back_unchanged_within_the_grace_its_notifications_are_queued_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.apply(None)
    assert rig.states() == [("cancelled", "integration removed")] * 3
    rig.mono.now += PRUNE_GRACE - 1
    rig.wall.now += PRUNE_GRACE - 1
    with caplog.at_level(logging.WARNING, logger="syncd"):
        rig.apply(HELD.replace("name: held", "name: renamed, rooms kept"))
    assert rig.states() == [("pending", None)] * 3
    assert rig.outbox.depth() == {"a": 1, "held": 3}
    assert rig.woken == [3]
    assert (
        "held came back unchanged within --prune-grace 600 s: 3 notification(s) its removal "
        "cancelled are queued again"
    ) in caplog.messages


def test_back_after_the_grace_they_stay_cancelled(rig: Rig) -> None:
    rig.apply(None)
    rig.mono.now += PRUNE_GRACE + 1
    rig.wall.now -= 3600  # the wall clock says nothing about the grace
    rig.apply(HELD)
    assert rig.states() == [("cancelled", "integration removed")] * 3


@pytest.mark.parametrize(
    "changed",
    [
        HELD.replace("id: 1234567", "id: 7654321"),
        HELD.replace("https://hipchat.example.com", "https://other.example.com"),
        HELD.replace("state: stopped", "state: disabled"),
    ],
    ids=["other room", "other endpoint", "disabled"],
)
def test_back_with_other_rooms_an_other_endpoint_or_disabled_they_stay_cancelled(
    rig: Rig, changed: str
) -> None:
    rig.apply(None)
    rig.apply(changed)
    assert rig.states() == [("cancelled", "integration removed")] * 3


def test_a_grace_of_zero_makes_removal_final(tmp_path: Path) -> None:
    rig = Rig(tmp_path, grace=0)
    rig.apply(HELD)
    rig.ingest.submit([event("checkout", "f")])
    rig.apply(None)
    rig.apply(HELD)
    assert rig.states() == [("cancelled", "integration removed")]


def test_only_what_the_last_removal_cancelled_comes_back(rig: Rig) -> None:
    rig.apply(None)
    rig.apply(HELD.replace("id: 1234567", "id: 7654321"))  # back, changed: stays cancelled
    rig.ingest.submit([event("checkout", "g")])
    rig.wall.now += 1
    rig.apply(None)
    rig.apply(HELD.replace("id: 1234567", "id: 7654321"))
    assert [s for s, _ in rig.states()] == ["cancelled"] * 3 + ["pending"]


def test_a_file_removed_and_restored_in_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "room-token")
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    (config / "held.yaml").write_text(HELD)
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, housekeeping_interval=0.05))
    assert daemon.start().ok
    try:
        daemon.ingest.submit([event("checkout", "f")] * 2)
        (config / "held.yaml").unlink()
        wait_for(lambda: "held" not in daemon.registry.snapshot.notifiers, what="the removal")
        (config / "held.yaml").write_text(HELD)
        wait_for(lambda: "held" in daemon.registry.snapshot.notifiers, what="the return")
        wait_for(
            lambda: [i.state for i in daemon.outbox.items(uid="held")] == ["pending"] * 2,
            what="the held notifications queued again",
        )
    finally:
        daemon.shutdown()
