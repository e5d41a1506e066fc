"""What ingest costs per event may shrink, never what it decides: the ids a
caller asks for, the reasons as ``Why`` rather than lines (the same reasons),
and, when asked (a replay), a project's judgements kept per set of attributes
(the same judgement, with what the events can make it keep bounded)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, cast

from syncd.config.configset import load_config_set
from syncd.events.ingest import JUDGED_SETS, Ingest
from syncd.events.timeline import MemoryStore
from syncd.registry import Registry
from syncd.store.contract import Store
from tests.support.configs import write_files

CONFIG = """\
version: 1
integrations:
  - uid: filtered
    project: shop
    name: filtered
    trigger: {event: trace, frequency: 60s}
    actions:
      - {action: filter, attribute: env, regex: "^staging$"}
      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 1, token: {env: HIPCHAT_T}}, {id: 2, token: {env: HIPCHAT_T}}]
  - uid: switched-off
    project: shop
    name: switched off
    state: disabled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{id: 3, token: {env: HIPCHAT_T}}]
"""


def _ingest(tmp_path: Path, **options: Any) -> tuple[Ingest, MemoryStore]:
    write_files(tmp_path / "config", ("shop.yaml", CONFIG))
    registry = Registry(resolver=lambda _ref: "")
    assert registry.apply(load_config_set([tmp_path / "config"]), "test").ok
    store = MemoryStore()
    return Ingest(cast(Store, store), registry, clock=lambda: 1_800_000_000.0, **options), store


def _event(fingerprint: str, **attributes: str) -> dict[str, Any]:
    return {
        "project": "shop",
        "fingerprint": fingerprint,
        "timestamp": "2026-11-26T09:00:00Z",
        "attributes": attributes,
    }


def test_ids_come_from_the_factory_given_and_are_random_by_default(tmp_path: Path) -> None:
    counted, store = _ingest(tmp_path / "a", new_id=map(str, itertools.count(7)).__next__)
    accepted = counted.submit([_event("f1"), _event("f2")])
    assert accepted.ids == ("7", "8")
    assert [item.event["id"] for batch in store.take() for item in batch] == ["7", "7", "8", "8"]
    drawn, _ = _ingest(tmp_path / "b")
    ids = drawn.submit([_event("f1"), _event("f2")]).ids
    assert len(set(ids)) == 2 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)


def test_the_reasons_without_notes_are_those_the_notes_write(tmp_path: Path) -> None:
    events = [
        _event("f1", env="prod", team="pay"),
        _event("f1", env="prod", team="pay"),  # throttled: its line names a time
        _event("f2", env="staging"),
    ]
    noted, _ = _ingest(tmp_path / "a")
    plain, _ = _ingest(tmp_path / "b")
    for event in events:
        lines = noted.submit([event]).events[0]
        whys = plain.submit([event], notes=False).events[0]
        assert whys.why == () and lines.whys == ()
        assert tuple(str(why) for why in whys.whys) == lines.why
    assert [why.reason for why in whys.whys] == [
        "filtered by actions[0]",
        "disabled, nothing is queued",
    ]


def test_judgements_are_kept_per_attributes_within_bounds(tmp_path: Path) -> None:
    daemon, _ = _ingest(tmp_path / "daemon")
    daemon.submit([_event(f"f{n}", env="prod", team="pay") for n in range(5)])
    assert daemon._table()["shop"].verdicts == {}  # a daemon judges each event afresh
    ingest, store = _ingest(tmp_path / "replay", judged_sets=JUDGED_SETS)
    project = ingest._table()["shop"]  # what a project keeps is the point
    ingest.submit([_event(f"f{n}", env="prod", team="pay") for n in range(5)])
    assert len(project.verdicts) == 1
    ingest.submit([_event("f9", env="prod", team="x" * 600)])  # too long to keep
    ingest.submit([_event(f"g{n}", env="prod", team=f"t{n}") for n in range(JUDGED_SETS + 10)])
    assert len(project.verdicts) == JUDGED_SETS
    mentions = [item.mentions for batch in store.take() for item in batch]
    assert mentions[:2] == [("@pay",), ("@pay",)]  # the same judgement, kept or not
    assert all(m == () for m in mentions[10:])
