"""Ingest, rules, outbox and delivery together, in this process, against the
HipChat test server over real HTTP, with a real SQLite outbox."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.delivery.dispatch import DispatchConfig, Dispatcher
from syncd.delivery.servers import server_of
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.hipchat.client import HipChatClient
from syncd.registry import Registry
from syncd.store.contract import Item, Settle, StoreError
from syncd.store.sqlite import Outbox
from syncd.testing import Fault, HipChatServer
from tests.support.daemons import TEST_REACH
from tests.support.stores import claim
from tests.support.waiting import wait_for

HIPCHAT_TOKEN_A, HIPCHAT_TOKEN_B = "room-a-token-0001", "room-b-token-0002"


def integration(uid: str, endpoint: str, extra: str = "", rooms: str = "") -> str:
    rooms = rooms or "        - {id: 1001, token: {env: HIPCHAT_TOKEN_A}}\n"
    return (
        f"  - uid: {uid}\n    project: shop\n    name: {uid}\n"
        f"    hipchat:\n      endpoint: {endpoint}\n      rooms:\n{rooms}{extra}"
    )


def event(fingerprint: str = "fp", **fields: Any) -> dict[str, Any]:
    return {
        "project": "shop",
        "fingerprint": fingerprint,
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": ["KeyError"],
        "attributes": {"team": "core"},
        **fields,
    }


@dataclass
class Rig:
    server: HipChatServer
    registry: Registry
    outbox: Outbox
    ingest: Ingest
    dispatcher: Dispatcher
    config_dir: Path

    def apply(self, *integrations: str) -> None:
        path = self.config_dir / "integrations.yaml"
        path.write_text("version: 1\nintegrations:\n" + "".join(integrations))
        config = load_config_set([self.config_dir], Options(reach=TEST_REACH))
        assert config.valid, [str(d) for d in config.diagnostics]
        assert self.registry.apply(config, "test").ok

    def send(self, *events: dict[str, Any]) -> int:
        valid, problems = validate_events(list(events))
        assert problems == []
        return self.ingest.submit(valid).notifications

    def count_looks(self) -> list[object]:
        """The looks for the next due head the outbox is asked from now on, each
        as the integrations it passes over."""
        looked: list[object] = []
        real = self.outbox.next_due

        def counted(skip: Any = ()) -> float | None:
            looked.append(skip)
            return real(skip)

        self.outbox.next_due = counted  # type: ignore[method-assign]
        return looked

    def texts(self, room: str = "1001") -> list[str]:
        return [str(m.body["message"]) for m in self.server.messages_for(room)]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("HIPCHAT_TOKEN_A", HIPCHAT_TOKEN_A)
    monkeypatch.setenv("HIPCHAT_TOKEN_B", HIPCHAT_TOKEN_B)
    server = HipChatServer({"1001": HIPCHAT_TOKEN_A, "1002": HIPCHAT_TOKEN_B}, limits=None).start()
    registry = Registry()
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: time.time())
    client = HipChatClient(backoff_base=0.01, backoff_cap=0.05)
    dispatcher = Dispatcher(outbox, registry, client, DispatchConfig(workers=2, idle_poll=0.05))
    ingest = Ingest(outbox, registry, clock=lambda: time.time(), on_enqueued=dispatcher.wake)
    (tmp_path / "config").mkdir()
    rig = Rig(server, registry, outbox, ingest, dispatcher, tmp_path / "config")
    yield rig
    dispatcher.stop(timeout=5)
    client.close()
    outbox.close()
    server.close()


def test_group_notifies_once_per_fingerprint(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url))
    rig.dispatcher.start()
    assert rig.send(event("fp1"), event("fp1"), event("fp2")) == 2
    assert rig.send(event("fp1")) == 0
    rig.server.wait_for_messages(2)
    texts = rig.texts()
    assert len(texts) == 2 and all("KeyError" in t for t in texts)


def test_a_group_syncd_finds_new_is_titled_new_error(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n"))
    rig.dispatcher.start()
    assert rig.send(event("fp1"), event("fp1"), event("fp2", new_group=False)) == 3
    rig.server.wait_for_messages(3)
    assert [t.split(" in shop")[0] for t in rig.texts()] == [
        "<b>New error",  # no flag: syncd's fingerprint store found it new
        "<b>Error",  # seen before
        "<b>Error",  # the sender said it was not new
    ]


def test_new_group_flag_overrides_the_store(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url))
    assert rig.send(event("fp", new_group=False)) == 0
    assert rig.send(event("fp", new_group=True)) == 1


def test_actions_filter_and_mention(rig: Rig) -> None:
    actions = (
        "    actions:\n"
        '      - {action: filter, attribute: "*", regex: ".*"}\n'
        '      - {action: submit, attribute: dc, regex: "^nyc$"}\n'
        '      - {action: mention, attribute: team, regex: "^payments$", target: "@payments"}\n'
    )
    rig.apply(integration("a", rig.server.url, actions + "    trigger: {event: trace}\n"))
    rig.dispatcher.start()
    assert rig.send(event(attributes={"dc": "sfo"})) == 0
    assert rig.send(event(attributes={"dc": "nyc"})) == 1
    assert rig.send(event(attributes={"dc": "nyc", "team": "payments"})) == 1
    first, second = (m.body for m in rig.server.wait_for_messages(2))
    assert first["message_format"] == "html"
    assert second["message_format"] == "text"
    assert str(second["message"]).startswith("@payments")


def test_frequency_aggregates_and_flushes_with_the_count(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace, frequency: 5m}\n"))
    with freeze_time("2026-11-26 12:00:00") as clock:
        assert rig.send(event()) == 1
        for _ in range(4):
            clock.tick(30)
            assert rig.send(event()) == 0
        assert rig.ingest.flush_due() == 0
        clock.tick(181)
        assert rig.ingest.flush_due() == 1
    rig.dispatcher.start()
    first, digest = rig.server.wait_for_messages(2)
    assert "more " not in str(first.body["message"])
    # Four events aggregated from 12:00:30: the last one is shown, with the rest counted.
    assert str(digest.body["message"]).endswith(
        "and 3 more occurrences of this error since 2026-11-26T12:00:30Z"
    )


def test_a_digest_mentions_everyone_its_events_earned(rig: Rig) -> None:
    actions = (
        "    actions:\n"
        '      - {action: mention, attribute: team, regex: "^payments$", target: "@payments"}\n'
        '      - {action: mention, attribute: env, regex: "^prod$", target: "@ops"}\n'
    )
    rig.apply(
        integration("a", rig.server.url, actions + "    trigger: {event: trace, frequency: 5m}\n")
    )
    with freeze_time("2026-11-26 12:00:00") as clock:
        assert rig.send(event()) == 1
        for attributes in ({"env": "prod"}, {"team": "payments"}, {"team": "core"}):
            clock.tick(30)
            assert rig.send(event(attributes=attributes)) == 0
        clock.tick(300)
        assert rig.ingest.flush_due() == 1
    rig.dispatcher.start()
    first, digest = rig.server.wait_for_messages(2)
    assert first.body["message_format"] == "html"
    # The last event earned nothing; the digest carries what the others earned.
    assert str(digest.body["message"]).splitlines()[0] == "@ops @payments"


def test_threshold_fires_inside_the_window(rig: Rig) -> None:
    rig.apply(
        integration(
            "a", rig.server.url, "    trigger: {event: trace, frequency: 1h, threshold: 3}\n"
        )
    )
    with freeze_time("2026-11-26 12:00:00"):
        sent = [rig.send(event()) for _ in range(7)]
    assert sent == [1, 0, 0, 1, 0, 0, 1]


def test_aggregation_survives_a_restart(rig: Rig, tmp_path: Path) -> None:
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace, frequency: 1m}\n"))
    with freeze_time("2026-11-26 12:00:00") as clock:
        rig.send(event(), event(), event())
        rig.outbox.close()
        reopened = Outbox(tmp_path / "outbox.db", clock=lambda: time.time())
        again = Ingest(reopened, rig.registry, clock=lambda: time.time())
        clock.tick(61)
        assert again.flush_due() == 1
        reopened.close()


def test_stopped_pauses_delivery_and_disabled_queues_nothing(rig: Rig) -> None:
    trace = "    trigger: {event: trace}\n"
    off = integration("dark", rig.server.url, "    state: disabled\n" + trace)
    rig.apply(integration("held", rig.server.url, "    state: stopped\n" + trace), off)
    rig.dispatcher.start()
    numbered = [event(attributes={"n": str(n)}) for n in range(3)]
    assert rig.send(*numbered) == 3  # the disabled one queues nothing
    # Woken by the new items, the workers pass the stopped integration's rooms over:
    # nothing is claimed, held or counted (a hold was an attempt every 30 s).
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        assert all(i.state == "pending" and i.attempts == 0 for i in rig.outbox.items())
        time.sleep(0.01)
    assert rig.server.messages == []
    started = time.monotonic()
    rig.apply(integration("held", rig.server.url, trace), off)
    # Enabled again: sent at once, not after a hold (it was up to 30 s).
    rig.server.wait_for_messages(3, timeout=5)
    assert time.monotonic() - started < 5
    assert [t.split("<b>n</b>: ")[1][:1] for t in rig.texts()] == ["0", "1", "2"]
    # The pause was never an attempt.
    assert [i.attempts for i in rig.outbox.items()] == [1, 1, 1]


def test_a_disabled_integrations_pending_notifications_are_cancelled(rig: Rig) -> None:
    trace = "    trigger: {event: trace}\n"
    rig.apply(integration("held", rig.server.url, "    state: stopped\n" + trace))
    assert rig.send(event()) == 1
    rig.apply(integration("held", rig.server.url, "    state: disabled\n" + trace))
    rig.dispatcher.start()
    wait_for(lambda: rig.outbox.items()[0].state == "cancelled")
    assert rig.outbox.items()[0].reason == "integration disabled"
    assert rig.server.messages == []


def test_retries_keep_the_order_of_each_room(rig: Rig) -> None:
    rooms = (
        "        - {id: 1001, token: {env: HIPCHAT_TOKEN_A}}\n"
        "        - {id: 1002, token: {env: HIPCHAT_TOKEN_B}}\n"
    )
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n", rooms))
    rig.server.inject(Fault.server_error(500), times=3, room="1001")
    rig.server.inject(Fault.reset(), times=2, room="1001")
    for n in range(10):
        rig.send(event(attributes={"n": str(n)}))
    rig.dispatcher.start()
    rig.server.wait_for_messages(10, room="1001", timeout=20)
    rig.server.wait_for_messages(10, room="1002", timeout=20)
    for room in ("1001", "1002"):
        order = [t.split("<b>n</b>: ")[1][:1] for t in rig.texts(room)]
        assert order == [str(n) for n in range(10)]
    wait_for(lambda: [i.state for i in rig.outbox.items()] == ["delivered"] * 20)


def test_permanent_failure_is_dead_lettered_and_marks_the_room(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n"))
    rig.server.inject(Fault.status(404, "Room not found"), room="1001")
    rig.send(event())
    rig.dispatcher.start()
    wait_for(lambda: rig.outbox.items()[0].state == "dead")
    item = rig.outbox.items()[0]
    assert item.reason is not None and "404" in item.reason
    health = rig.dispatcher.health.of("a", "1001")
    assert not health.healthy
    assert HIPCHAT_TOKEN_A not in str(item) and HIPCHAT_TOKEN_A not in str(health)


def test_updated_integration_sends_pending_items_with_the_new_settings(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n"))
    rig.send(event())
    rotated = "room-a-token-rotated"
    rig.server.close()
    server = HipChatServer({"1001": rotated}, limits=None).start()
    rig.server = server
    monkeypatch.setenv("HIPCHAT_TOKEN_A", rotated)
    rig.apply(integration("a", server.url, "      color: red\n    trigger: {event: trace}\n"))
    rig.dispatcher.start()
    (message,) = server.wait_for_messages(1)
    assert message.body["color"] == "red"
    assert message.headers["Authorization"] == f"Bearer {rotated}"


def test_a_restart_does_not_renotify_old_groups(rig: Rig, tmp_path: Path) -> None:
    rig.apply(integration("a", rig.server.url))
    assert rig.send(event("seen-before")) == 1
    rig.outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    again = Ingest(reopened, rig.registry)
    valid, _ = validate_events([event("seen-before"), event("brand-new")])
    assert again.submit(valid).notifications == 1
    reopened.close()


@pytest.mark.parametrize(
    ("timestamp", "ok"),
    [
        ("2026-11-26T12:00:00Z", True),
        ("2026-11-26t12:00:00.250+05:30", True),
        ("2016-12-31T23:59:60Z", True),
        ("2026-11-26T12:00:00", False),
        ("2026-11-26", False),
        ("2026-13-01T00:00:00Z", False),
        ("not a time", False),
    ],
)
def test_event_timestamps_are_rfc3339_with_an_offset(timestamp: str, ok: bool) -> None:
    _, problems = validate_events({"project": "p", "fingerprint": "f", "timestamp": timestamp})
    assert [p.path for p in problems] == ([] if ok else ["$.timestamp"])


def test_an_endpoint_written_with_its_api_version_is_not_doubled(rig: Rig) -> None:
    rig.apply(integration("a", rig.server.url + "/v2/", "    trigger: {event: trace}\n"))
    rig.dispatcher.start()
    assert rig.send(event()) == 1
    (received,) = rig.server.wait_for_messages(1)
    assert received.path == "/v2/room/1001/notification"


def test_a_card_is_sent_with_the_message_as_its_fallback(rig: Rig) -> None:
    rig.apply(
        integration("a", rig.server.url, "    trigger: {event: trace}\n").replace(
            "      rooms:\n", "      card: true\n      rooms:\n"
        )
    )
    rig.dispatcher.start()
    assert rig.send(event(callstack=["charge() at pay.py:42"])) == 1
    (received,) = rig.server.wait_for_messages(1)
    card = received.body["card"]
    assert (card["style"], card["title"]) == ("application", "KeyError in shop: fp")
    assert card["description"] == {"value": "charge() at pay.py:42", "format": "text"}
    assert card["attributes"] == [{"label": "team", "value": {"label": "core"}}]
    assert "KeyError" in str(received.body["message"])


def test_an_item_whose_server_has_no_free_slot_goes_back_in_its_place(rig: Rig) -> None:
    """Between a claim and the send, other workers may fill the server's slots: the
    item goes back unsent, with its own due time, and the claim is no attempt."""
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n"))
    assert rig.send(event()) == 1
    (item,) = claim(rig.outbox, limit=1, lease=30)
    servers = rig.dispatcher._servers
    while servers.take(server_of(rig.server.url), time.time()):
        pass  # every slot held, as by workers sending
    settle = asyncio.run(rig.dispatcher.process(item))
    assert (settle.state, settle.retry_at, settle.attempted) == (
        "pending",
        item.next_attempt_at,
        False,
    )
    assert rig.server.messages == []


def test_a_worker_its_server_turned_away_puts_the_head_back_without_claiming_another(
    rig: Rig,
) -> None:
    """A worker whose server filled between its claim and its send hands the head
    back and asks for no other: it would only hand that back too, a claim and a
    settle each, for as long as the server stays full (at 1,000 rooms, a thousand
    a second). It waits to be woken, and the head is still delivered, once."""
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n"))
    servers = rig.dispatcher._servers
    real_take = servers.take
    refused: list[str] = []

    def take(server: str, now: float) -> bool:
        if not refused:
            refused.append(server)  # other workers filled it since the claim
            return False
        return real_take(server, now)

    servers.take = take  # type: ignore[method-assign]
    calls: list[tuple[Settle | None, int]] = []
    real_calls = rig.outbox.settle_and_claim_all

    def recorded(
        asked: Sequence[tuple[Settle | None, int]], lease: float, skip: Any = ()
    ) -> list[list[Item] | StoreError]:
        calls.extend(asked)
        return real_calls(asked, lease, skip)

    rig.outbox.settle_and_claim_all = recorded  # type: ignore[method-assign]
    assert rig.send(event()) == 1
    rig.dispatcher.start()
    rig.server.wait_for_messages(1)
    put_back = [(done, wanted) for done, wanted in calls if done and not done.attempted]
    assert [wanted for _, wanted in put_back] == [0]
    wait_for(lambda: not rig.outbox.undelivered_uids(), what="the send settled")
    assert len(rig.server.messages) == 1


def test_workers_are_woken_for_rooms_with_something_claimable_only(rig: Rig) -> None:
    """Items queued behind a room's head wake no one (the worker that settles the
    head claims them); still every one is delivered, in order."""
    rooms = "        - {id: 1001, token: {env: HIPCHAT_TOKEN_A}}\n" + (
        "        - {id: 1002, token: {env: HIPCHAT_TOKEN_B}}\n"
    )
    rig.apply(integration("a", rig.server.url, "    trigger: {event: trace}\n", rooms))
    woken: list[int] = []
    rig.ingest.on_enqueued = lambda count: (woken.append(count), rig.dispatcher.wake(count))

    def numbered(*numbers: int) -> int:
        return rig.send(*(event(f"fp{n}", classifiers=[f"E{n}"]) for n in numbers))

    assert numbered(1, 2, 3) == 6
    assert numbered(4) == 2
    assert woken == [2]
    rig.dispatcher.start()
    rig.server.wait_for_messages(8)
    wait_for(lambda: not rig.outbox.undelivered_uids(), what="every send settled")
    assert numbered(5) == 2
    rig.server.wait_for_messages(10)
    assert woken == [2, 2]
    for room in ("1001", "1002"):
        titles = [t.split("</b>")[0].rsplit(": ", 1)[-1] for t in rig.texts(room)]
        assert titles == ["E1", "E2", "E3", "E4", "E5"]


def test_a_name_whose_look_up_hangs_holds_no_send_to_other_servers(rig: Rig) -> None:
    """The sends share one event loop: a DNS look-up made on it would stop every
    send while it waits. The look-up runs beside the loop, so the other servers'
    rooms are delivered while it hangs."""
    asked, release = threading.Event(), threading.Event()

    def resolve(host: str, port: int) -> Sequence[str]:
        if host == "hangs.example":
            asked.set()
            release.wait(30)
        return ["127.0.0.1"]

    rig.apply(
        integration("a", rig.server.url.replace("127.0.0.1", "hangs.example")),
        integration("b", rig.server.url).replace("project: shop", "project: other"),
    )
    client = HipChatClient(backoff_base=0.01, backoff_cap=0.05)
    dispatcher = Dispatcher(
        rig.outbox, rig.registry, client, DispatchConfig(workers=4), resolve=resolve
    )
    rig.ingest.on_enqueued = dispatcher.wake
    dispatcher.start()
    try:
        assert rig.send(event("fp1")) == 1
        wait_for(asked.is_set, what="the look-up of the hanging name began")
        assert rig.send(event("fp2", project="other")) == 1
        rig.server.wait_for_messages(1)
        assert release.is_set() is False
    finally:
        release.set()
        dispatcher.stop(timeout=5)
        client.close()


def test_with_every_integration_passed_over_nothing_is_looked_for(rig: Rig) -> None:
    """One full server passes over every integration of the set: a claim, or a look
    for the next due head, would walk every room's head (10,000 at 10,000 rooms)
    to find nothing. Workers then claim nothing and wait for a freed slot."""
    rig.apply(
        integration("a", rig.server.url),
        integration("b", rig.server.url).replace("project: shop", "project: other"),
    )
    snapshot = rig.registry.snapshot
    passed_over = rig.dispatcher._all_passed_over
    assert passed_over(snapshot, frozenset({"a", "b"}))
    assert passed_over(snapshot, frozenset({"a", "b", "gone"}))
    assert not passed_over(snapshot, frozenset({"a", "gone"}))
    assert not passed_over(snapshot, frozenset())
    while rig.dispatcher._servers.take(server_of(rig.server.url), time.time()):
        pass  # every slot held, as by workers sending
    looked: list[object] = []
    rig.outbox.next_due = lambda skip=(): looked.append(skip)  # type: ignore[method-assign]
    now = time.time()
    # Its heads fall due as a slot frees, at a time the store cannot tell: the
    # worker keeping the timer looks again within idle_poll. "Nothing due" had
    # it sleep idle_wait, and a head its freed slots' workers found not yet due
    # (paced) waited for it: 30 s where the test's clock jumped past the pacing.
    assert asyncio.run(rig.dispatcher._next_due(now)) == now + rig.dispatcher.config.idle_poll
    assert looked == []


def test_an_idle_worker_looks_for_the_next_due_head_only_if_its_settle_may_be_sooner(
    rig: Rig,
) -> None:
    """While one idle worker keeps the timer, another whose settle falls due no
    sooner (or makes nothing due) does not ask the store again: at 1,000 rooms
    those looks were more than one per notification. One whose retry falls due
    before the timer must look, or the retry waits for the timer."""
    rig.apply(integration("a", rig.server.url))
    looked = rig.count_looks()
    now = time.time()

    def idle_with_timer_kept(settled_due: float | None) -> int:
        async def go() -> None:
            dispatcher = rig.dispatcher
            dispatcher._timer = now + 20  # another worker sleeps until then
            idle = asyncio.create_task(dispatcher._idle(settled_due, dispatcher._lots_answered))
            await asyncio.sleep(0.05)
            dispatcher._notify(None)
            await idle

        before = len(looked)
        asyncio.run(go())
        return len(looked) - before

    assert idle_with_timer_kept(None) == 0  # delivered: nothing due later
    assert idle_with_timer_kept(now + 30) == 0  # the room rests past the timer
    assert idle_with_timer_kept(now + 1) == 1  # a retry due before it


def test_idle_workers_with_nothing_due_leave_the_looking_to_one(rig: Rig) -> None:
    """With nothing queued, only the worker keeping the timer wakes (every
    ``idle_wait``) to claim and look; the others sleep until woken. Each waking
    on its own, 1,024 workers were 34 claims and looks a second, doing nothing."""
    rig.apply(integration("a", rig.server.url))
    asked: list[int] = []
    real = rig.outbox.settle_and_claim_all

    def counted(calls: Any, lease: float, skip: Any = ()) -> Any:
        asked.append(len(calls))
        return real(calls, lease, skip)

    rig.outbox.settle_and_claim_all = counted  # type: ignore[method-assign]
    client = HipChatClient()
    dispatcher = Dispatcher(
        rig.outbox, rig.registry, client, DispatchConfig(workers=64, idle_wait=0.05)
    )
    dispatcher.start()
    try:
        wait_for(lambda: sum(asked) >= 64, what="every worker's first claim")
        began, first = time.monotonic(), sum(asked)
        wait_for(lambda: time.monotonic() - began >= 1.0, what="a second of idling")
        # The keeper's wakes, about twenty; each of 64 workers waking was about 1,280.
        assert sum(asked) - first < 100
        # A lost wake costs a delay: what is queued without a wake is still sent.
        rig.ingest.on_enqueued = lambda _count: None
        assert rig.send(event("fp1")) == 1
        rig.server.wait_for_messages(1, timeout=10)
    finally:
        dispatcher.stop(timeout=5)
        client.close()


def test_workers_going_idle_together_share_one_look_at_the_next_due_time(rig: Rig) -> None:
    """Workers that go idle together (between two keepers of the timer) each asked
    the store when the next head falls due: at 10,000 rooms 0.8 looks per
    notification, a tenth of the event loop's time. Those whose settles were
    recorded before a look began wait for its answer."""
    rig.apply(integration("a", rig.server.url))
    looked = rig.count_looks()

    async def fifty_go_idle() -> list[float | None]:
        dispatcher = rig.dispatcher
        answered = dispatcher._lots_answered
        return await asyncio.gather(
            *(dispatcher._looked_up_due(time.time(), answered) for _ in range(50))
        )

    assert asyncio.run(fifty_go_idle()) == [None] * 50
    assert len(looked) == 1
    assert asyncio.run(fifty_go_idle()) == [None] * 50
    assert len(looked) == 2  # a look that ended is not asked again


def test_a_look_begun_before_a_workers_settle_was_recorded_is_not_its_answer(rig: Rig) -> None:
    """A look that began before a worker's settle was recorded may not have seen
    it: the retry the settle set would wait for the keeper's next look, or, with
    nothing else due, for the next wake (up to 12 s under load, where 4 s was
    the most without sharing looks). That worker looks again."""
    rig.apply(integration("a", rig.server.url))
    assert rig.send(event("fp1")) == 1
    (item,) = claim(rig.outbox, limit=1, lease=30)
    lease_ends = item.lease_until
    started, release = threading.Event(), threading.Event()
    seen: list[float | None] = []
    real = rig.outbox.next_due

    def first_held(skip: Any = ()) -> float | None:
        due = real(skip)
        seen.append(due)
        if len(seen) == 1:  # read before the settle; answered after it
            started.set()
            release.wait(10)
        return due

    rig.outbox.next_due = first_held  # type: ignore[method-assign]
    retry_at = time.time() + 2

    async def go() -> tuple[float | None, float | None]:
        dispatcher = rig.dispatcher
        look = dispatcher._looked_up_due
        first = asyncio.create_task(look(time.time(), dispatcher._lots_answered))
        await asyncio.to_thread(started.wait, 10)
        settled: asyncio.Future[list[Item]] = asyncio.get_running_loop().create_future()
        await dispatcher._serve_lot(
            [(Settle(item.id, "pending", "busy", retry_at), False, settled)]
        )
        assert settled.result() == []
        second = asyncio.create_task(look(time.time(), dispatcher._lots_answered))
        await asyncio.sleep(0)  # the second worker goes idle while the first look runs
        release.set()
        return await first, await second

    assert asyncio.run(go()) == (lease_ends, retry_at)
    assert len(seen) == 2


def test_a_wake_while_a_look_runs_with_no_worker_asleep_is_not_lost(rig: Rig) -> None:
    """New items wake workers asleep; the workers sharing a look are not asleep
    yet, and what the look read may be from before the items. Told "nothing
    due", they slept until the timer's keeper looked again: idle_wait, 30 s."""
    rig.apply(integration("a", rig.server.url))
    started, release = threading.Event(), threading.Event()
    real = rig.outbox.next_due

    def held(skip: Any = ()) -> float | None:
        due = real(skip)  # read before the items below
        started.set()
        release.wait(10)
        return due

    rig.outbox.next_due = held  # type: ignore[method-assign]
    now = time.time()

    async def go() -> list[float | None]:
        dispatcher = rig.dispatcher
        answered = dispatcher._lots_answered
        looks = [asyncio.create_task(dispatcher._looked_up_due(now, answered)) for _ in range(3)]
        await asyncio.to_thread(started.wait, 10)
        assert rig.send(event("fp1")) == 1
        dispatcher._notify(1)  # the new item's wake, with no worker asleep to take it
        release.set()
        return list(await asyncio.gather(*looks))

    assert asyncio.run(go()) == [now] * 3  # claim again now


def test_a_spread_wakes_two_more_only_for_the_slots_no_worker_heads_for(rig: Rig) -> None:
    """A worker that claims after a wake for heads falling due together wakes two
    more, so a thousand rooms reopening are taken in a few rounds. With items
    coming in as fast as they go out (10,000 rooms), each of those woke two more
    whatever the free slots: 200,000 wakes a run, half of them claiming nothing.
    Workers woken already, or asking the store for a head, count against them."""

    dispatcher = rig.dispatcher
    dispatcher._servers.room = lambda now, server=None: 3  # type: ignore[method-assign]
    rig.apply(integration("a", rig.server.url))
    rig.send(event("fp1"))
    (claimed,) = claim(rig.outbox, limit=1, lease=30)

    async def woken_by_a_spread(heading: int) -> int:
        sleepers = [asyncio.create_task(dispatcher._sleep(None)) for _ in range(5)]
        await asyncio.sleep(0)
        dispatcher._heading += heading  # woken or asking for a head
        dispatcher._spread(claimed)
        await asyncio.sleep(0)
        woken = sum(1 for task in sleepers if task.done())
        dispatcher._heading -= heading
        dispatcher._notify(None)
        await asyncio.gather(*sleepers)
        return woken

    assert [asyncio.run(woken_by_a_spread(heading)) for heading in range(5)] == [2, 2, 1, 0, 0]
    assert dispatcher._heading == 0


def test_a_spread_counts_a_server_not_sent_to_yet_by_its_first_limit(rig: Rig) -> None:
    """A daemon started on a backlog: its first claim's server, not sent to yet,
    counted as one free slot, which the worker the backlog's wake had handed the
    timer to was already heading for. No spread followed, and 480 notifications
    to 160 rooms went out two at a time (5 a second at 0.4 s an answer)."""
    rig.apply(integration("a", rig.server.url))
    client = HipChatClient()
    dispatcher = Dispatcher(rig.outbox, rig.registry, client, DispatchConfig(workers=64))
    rig.send(event("fp1"))
    (claimed,) = claim(rig.outbox, limit=1, lease=30)

    async def woken_by_the_first_spread() -> int:
        sleepers = [asyncio.create_task(dispatcher._sleep(None)) for _ in range(5)]
        await asyncio.sleep(0)
        dispatcher._heading += 1  # the worker handed the timer, asking for a head
        dispatcher._spread(claimed)
        await asyncio.sleep(0)
        woken = sum(1 for task in sleepers if task.done())
        dispatcher._heading -= 1
        dispatcher._notify(None)
        await asyncio.gather(*sleepers)
        return woken

    try:
        assert asyncio.run(woken_by_the_first_spread()) == 2
    finally:
        client.close()


def test_a_freed_slot_wakes_only_for_the_slots_no_woken_worker_heads_for(rig: Rig) -> None:
    """Each answer of a server that had been full tells how many slots are free:
    woken for all of them at every answer, the same slots woke the whole pool
    (a worker per slot per answer), which claimed heads only to hand them back.
    Workers woken already, or asking the store for a head, count against them."""

    async def go() -> int:
        dispatcher = rig.dispatcher
        sleepers = [asyncio.create_task(dispatcher._sleep(None)) for _ in range(20)]
        await asyncio.sleep(0)
        dispatcher._pass_on_freed_slot(("server", 5), [])
        dispatcher._pass_on_freed_slot(("server", 6), [])  # before the five ran
        await asyncio.sleep(0)
        woken = sum(1 for task in sleepers if task.done())
        dispatcher._notify(None)
        await asyncio.gather(*sleepers)
        return woken

    assert asyncio.run(go()) == 6
    assert rig.dispatcher._heading == 0
