"""One request, one project, one integration: none of them may hold up or break
the others' ingest.

- A request's routing (its events times its project's integrations) runs
  outside the store's write lock, so an event for another project is stored
  while it runs.
- A project has a bounded queue: one request more than its share is a 429
  with ``Retry-After``, at once, holding no thread.
- An exception while routing one integration skips that integration for that
  event, with a reason and a log line; the rest of the batch is stored.
- A disabled integration's actions are never run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import requests

from syncd.config.model import Integration, Trigger, integration_from_data
from syncd.events import ingest as ingest_module
from syncd.events import rules
from syncd.events.ingest import Busy, Ingest
from syncd.registry import Notifier, Registry, Snapshot
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.store.contract import WindowUpdate
from syncd.store.sqlite import Outbox
from tests.support.events import event
from tests.support.waiting import wait_for


def integration(uid: str, project: str, **extra: Any) -> Integration:
    return integration_from_data(
        {
            "uid": uid,
            "project": project,
            "name": uid,
            "trigger": {"event": "trace"},
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": "1", "token": {"env": "HIPCHAT_T"}}],
            },
            **extra,
        }
    )


def registry(*integrations: Integration) -> Registry:
    found = Registry()
    notifiers = {i.uid: Notifier(i, MappingProxyType({"1": "token"})) for i in integrations}
    found.snapshot = Snapshot(MappingProxyType(notifiers), "test")
    return found


class Gate:
    """Holds the routing of one project's events until released."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def wrap(self, route: Callable[..., Any]) -> Callable[..., Any]:
        def held(evt: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if evt["project"] == self.project:
                self.entered.release()
                assert self.release.wait(20), "the test never released the gate"
            return route(evt, *args, **kwargs)

        return held


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate("big")
    monkeypatch.setattr(ingest_module, "route_event", held.wrap(ingest_module.route_event))
    yield held
    held.release.set()


def test_an_event_of_another_project_is_stored_while_a_request_is_routed(
    tmp_path: Path, gate: Gate
) -> None:
    box = Outbox(tmp_path / "outbox.db")
    ingest = Ingest(box, registry(integration("big-a", "big"), integration("small-b", "small")))
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(ingest.submit, [event("big", "f")])
        assert gate.entered.acquire(timeout=10), "the big request never reached routing"
        small = pool.submit(ingest.submit, [event("small", "f")])
        try:
            # Routing the big request once held the store's write lock: this waited for it.
            assert small.result(timeout=5).notifications == 1
        finally:
            gate.release.set()
        assert big.result(timeout=10).notifications == 1
    assert sorted(i.uid for i in box.items()) == ["big-a", "small-b"]


def test_one_request_more_than_a_projects_share_is_busy_at_once(tmp_path: Path, gate: Gate) -> None:
    box = Outbox(tmp_path / "outbox.db")
    ingest = Ingest(box, registry(integration("big-a", "big"), integration("small-b", "small")))
    with ThreadPoolExecutor(3) as pool:
        inside = [pool.submit(ingest.submit, [event("big", f"f{n}")]) for n in range(2)]
        for _ in inside:
            assert gate.entered.acquire(timeout=10)
        began = time.monotonic()
        with pytest.raises(Busy) as busy:
            ingest.submit([event("small", "s"), event("big", "f3")])
        assert time.monotonic() - began < 1
        assert str(busy.value) == (
            "project 'big' already has 2 request(s) being taken in; retry shortly"
        )
        assert ingest.submit([event("small", "s")]).notifications == 1
        gate.release.set()
        assert [f.result(timeout=10).notifications for f in inside] == [1, 1]
    assert ingest.submit([event("big", "f4")]).notifications == 1


def test_a_busy_project_is_a_429_with_retry_after(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_T", "token")
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(
        "version: 1\nintegrations:\n"
        "  - uid: big-a\n    project: big\n    name: big\n    state: stopped\n"
        "    hipchat:\n      endpoint: https://hipchat.example.com\n"
        "      rooms: [{id: 1, token: {env: HIPCHAT_T}}]\n"
    )
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    assert daemon.start().ok
    url = daemon.server.url + "/v1/events"
    headers = {"Content-Type": "application/json"}
    body = json.dumps(event("big", "f"))
    try:
        with ThreadPoolExecutor(2) as pool:
            inside = [
                pool.submit(requests.post, url, data=body, headers=headers, timeout=30)
                for _ in range(2)
            ]
            for _ in inside:
                assert gate.entered.acquire(timeout=10)
            busy = requests.post(url, data=body, headers=headers, timeout=10)
            gate.release.set()
            assert [f.result(timeout=10).status_code for f in inside] == [202, 202]
        assert busy.status_code == 429
        assert busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["message"].startswith("project 'big' already has 2")
    finally:
        daemon.shutdown()


def throttled(uid: str, seconds: int) -> Integration:
    """Built past the schema, which bounds frequency now: routing must hold without it."""
    return replace(integration(uid, "shop"), trigger=Trigger("trace", seconds))


# Too large for a float: routing any of its events (a window's length) raises.
BROKEN = throttled("a-broken", 10**400)


def test_an_integration_that_fails_to_route_is_skipped_and_the_batch_is_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.db")
    fine = integration("b-fine", "shop")
    other = integration("c-other", "elsewhere")
    ingest = Ingest(box, registry(BROKEN, fine, other))
    with caplog.at_level(logging.ERROR, logger="syncd"):
        accepted = ingest.submit([event("shop", "f"), event("shop", "f"), event("elsewhere", "f")])
    assert accepted.notifications == 3
    assert [i.uid for i in box.items()] == ["b-fine", "b-fine", "c-other"]
    assert accepted.events[1].why == (
        "a-broken: skipped: routing failed (see the log)",
        "b-fine: queued for 1 room(s)",
    )
    assert accepted.integrations["a-broken"].events == {
        "skipped: routing failed (see the log)": 2,
    }
    (record,) = caplog.records
    assert record.getMessage() == (
        "a-broken: routing failed for 2 event(s) of a request, which skipped this "
        "integration and stored the rest: OverflowError: int too large to convert to float"
    )
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="syncd"):
        ingest.submit([event("shop", "f")])
    assert caplog.records == [], "a failing integration is logged once a minute at most"


def test_a_frequency_of_three_million_days_throttles_like_any_other(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    huge = throttled("huge", 3_000_000 * 86_400)
    ingest = Ingest(box, registry(huge), clock=lambda: 1_764_158_400.0)
    assert ingest.submit([event("shop", "f")]).notifications == 1
    held = ingest.submit([event("shop", "f"), event("shop", "f")])
    assert held.events[0].why == ("huge: throttled until 10239-08-17T12:00:00Z",)


def test_a_digest_that_fails_to_route_is_dropped_and_the_others_are_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.db")
    fine = throttled("b-fine", 60)
    ingest = Ingest(box, registry(BROKEN, fine), clock=lambda: 1000.0)
    waiting = rules.Window(last_sent=900.0, pending=2, pending_since=910.0)
    with box.batch() as batch:
        for uid in ("a-broken", "b-fine"):
            batch.save_window(WindowUpdate(f"{uid}\0f", uid, waiting, 960.0, event("shop", "f")))
    with caplog.at_level(logging.ERROR, logger="syncd"):
        assert ingest.flush_due() == 1
    assert [(i.uid, i.count) for i in box.items()] == [("b-fine", 2)]
    assert [r.getMessage() for r in caplog.records] == [
        "a-broken: the digest of 2 event(s) could not be routed and is dropped: "
        "OverflowError: int too large to convert to float"
    ]
    assert box.due_windows(2000.0) == []


def test_a_disabled_integrations_actions_are_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = [{"action": "filter", "attribute": "*", "regex": "x"}] * 50
    off = integration("off", "shop", state="disabled", actions=actions)
    on = integration("on", "shop", actions=actions[:1])
    runs: list[int] = []
    evaluate = rules.evaluate_actions

    def counted(evaluated: Any, attributes: Any) -> Any:
        runs.append(len(evaluated))
        return evaluate(evaluated, attributes)

    monkeypatch.setattr(rules, "evaluate_actions", counted)
    ingest = Ingest(Outbox(tmp_path / "outbox.db"), registry(off, on))
    accepted = ingest.submit([event("shop", f"f{n}", attributes={"a": "y"}) for n in range(20)])
    assert runs == [1] * 20, "the disabled integration's 50 actions were evaluated"
    assert accepted.events[0].why == (
        "off: disabled, nothing is queued",
        "on: queued for 1 room(s)",
    )
    assert "off" not in accepted.integrations


def test_an_unexpected_failure_is_a_500_that_says_nothing_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token")
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(
        "version: 1\nintegrations:\n  - uid: a\n    project: shop\n    name: a\n"
        "    hipchat:\n      endpoint: https://hipchat.example.com\n"
        "      rooms: [{id: 1, token: {env: HIPCHAT_TOKEN}}]\n"
    )
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0))
    assert daemon.start().ok

    def broken(events: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(daemon.ingest, "submit", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="syncd"):
            answer = requests.post(
                daemon.server.url + "/v1/events",
                data=json.dumps(event("shop", "f")),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
        assert answer.status_code == 500
        assert answer.json() == {
            "error": {"code": 500, "message": "internal error: nothing was stored; retry later"}
        }
        wait_for(lambda: any(r.exc_info for r in caplog.records), what="the traceback logged")
    finally:
        daemon.shutdown()
