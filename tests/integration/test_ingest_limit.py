"""A request over ``--max-notifications-per-request`` is refused for about what
parsing it costs, and a request under the limit is never refused.

A POST of 1,000 events for a project of 1,000 integrations was refused only
after routing its first eleven events: 11,000 notifications built to be thrown
away, twice the CPU of taking a request of the same size. Now each event's
part is bounded from its project's integrations, counted once per published
set, and a request is refused before any event is routed when even the least
it certainly queues is over the limit. What only routing can tell (actions
that may filter, throttle windows) is never counted against a request: such a
request is routed, as before, and refused only if routing goes over.

Routing is counted here by calls of ``route_event``, not timed.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config.model import Integration, integration_from_data
from syncd.events import ingest as ingest_module
from syncd.events.ingest import Ingest, TooMany
from syncd.registry import Notifier, Registry, Snapshot
from syncd.store.sqlite import Outbox
from tests.support.events import event

LIMIT = 10_000
MATCHES_ALL = {"action": "filter", "attribute": "*", "regex": ""}
MENTIONS_ALL = {"action": "mention", "attribute": "*", "regex": "", "target": "@ops"}


def integration(uid: str, project: str = "shop", rooms: int = 1, **extra: Any) -> Integration:
    return integration_from_data(
        {
            "uid": uid,
            "project": project,
            "name": uid,
            "state": "stopped",
            "trigger": {"event": "trace"},
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": str(n), "token": {"env": "HIPCHAT_T"}} for n in range(rooms)],
            },
            **extra,
        }
    )


def many(count: int, prefix: str = "fan", **extra: Any) -> list[Integration]:
    return [integration(f"{prefix}-{n}", **extra) for n in range(count)]


def registry(integrations: list[Integration]) -> Registry:
    found = Registry()
    notifiers = {i.uid: Notifier(i, MappingProxyType({"1": "token"})) for i in integrations}
    found.snapshot = Snapshot(MappingProxyType(notifiers), "test")
    return found


def events(count: int, project: str = "shop", **fields: Any) -> list[dict[str, Any]]:
    return [event(project, f"fp-{n}", **fields) for n in range(count)]


class Routed:
    """Calls of ``route_event``: how many events were routed, and the
    notifications that built."""

    def __init__(self, route: Callable[..., Any]) -> None:
        self.route = route
        self.events = 0
        self.items = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        routing = self.route(*args, **kwargs)
        self.events += 1
        self.items += len(routing.items)
        return routing


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Routed]:
    counting = Routed(ingest_module.route_event)
    monkeypatch.setattr(ingest_module, "route_event", counting)
    yield counting


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


def stored(box: Outbox) -> tuple[int, int]:
    """Notifications and fingerprints in the outbox's database."""
    with sqlite3.connect(box.path) as db:
        items = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        seen = db.execute("SELECT count(*) FROM fingerprints").fetchone()[0]
    return int(items), int(seen)


def refusal(box: Outbox, integrations: list[Integration], sent: list[dict[str, Any]]) -> TooMany:
    before = stored(box)
    with pytest.raises(TooMany) as refused:
        Ingest(box, registry(integrations), max_notifications=LIMIT).submit(sent)
    assert stored(box) == before
    return refused.value


def test_a_fan_out_past_the_limit_is_refused_before_any_event_is_routed(
    outbox: Outbox, routed: Routed
) -> None:
    refused = refusal(outbox, many(1000), events(1000))
    # Was 11 events routed, 11,000 notifications built.
    assert (routed.events, routed.items) == (0, 0)
    assert (refused.limit, refused.count, refused.events) == (LIMIT, 11_000, 11)
    assert str(refused).startswith(
        "over the limit of 10,000 notifications per request: the first 11 event(s) "
        "alone would store 11,000 (notifications queued, and throttle windows left "
        "holding events); nothing was stored."
    )
    assert "--max-notifications-per-request" in str(refused)


def test_rooms_are_counted_and_the_first_event_over_is_named_exactly(
    outbox: Outbox, routed: Routed
) -> None:
    three_rooms = integration("wide", rooms=3)
    refused = refusal(outbox, [three_rooms, *many(8)], events(1000))
    assert routed.events == 0
    # 11 notifications an event: 909 events make 9,999, the 910th 10,010.
    assert (refused.count, refused.events) == (10_010, 910)
    assert "the first 910 event(s) alone would store 10,010 (" in str(refused)


def test_new_groups_past_the_limit_are_refused_without_routing(
    outbox: Outbox, routed: Routed
) -> None:
    """The default trigger, group: each new fingerprint notifies every integration."""
    refused = refusal(outbox, many(1000, trigger={"event": "group"}), events(1000))
    assert routed.events == 0
    assert (refused.count, refused.events) == (11_000, 11)
    assert "would store 11,000 (" in str(refused)


def test_when_actions_may_add_more_the_refusal_says_at_least(
    outbox: Outbox, routed: Routed
) -> None:
    """Eleven integrations certainly notify; a twelfth may, as its actions say:
    only what is certain is counted, and the answer says so."""
    sure = many(11)
    maybe = integration("maybe", actions=[MENTIONS_ALL])
    refused = refusal(outbox, [*sure, maybe], events(1000))
    assert routed.events == 0
    assert (refused.count, refused.events) == (10_010, 910)
    assert "the first 910 event(s) alone would store at least 10,010 (" in str(refused)


def test_a_request_under_the_limit_once_filters_have_spoken_is_taken(
    outbox: Outbox, routed: Routed
) -> None:
    """Nine integrations notify for each event, five more could but filter every
    event out: 14,000 at most, 9,000 in fact. It is routed, and taken."""
    filtered = many(5, prefix="quiet", actions=[MATCHES_ALL])
    ingest = Ingest(outbox, registry([*many(9), *filtered]), max_notifications=LIMIT)
    accepted = ingest.submit(events(1000))
    assert accepted.notifications == 9000
    assert accepted.integrations["quiet-0"].events == {"filtered by actions[0]": 1000}
    assert routed.events == 1000
    assert stored(outbox) == (9000, 1000)


def test_a_throttled_fan_out_under_the_limit_is_taken(outbox: Outbox, routed: Routed) -> None:
    """Twenty throttled integrations: one send each, then one window each left
    holding the rest; 20,000 at most by the bound, 40 in fact."""
    throttled = many(20, trigger={"event": "trace", "frequency": "5m"})
    ingest = Ingest(outbox, registry(throttled), max_notifications=LIMIT)
    accepted = ingest.submit([event("shop", "same") for _ in range(1000)])
    assert accepted.notifications == 20
    assert routed.events == 1000


def test_a_throttled_fan_out_over_the_limit_is_still_refused_by_routing(
    outbox: Outbox, routed: Routed
) -> None:
    """1,000 throttled integrations: each event of a new fingerprint is sent at
    once by each, so routing goes over at the eleventh, as before."""
    throttled = many(1000, trigger={"event": "trace", "frequency": "5m"})
    refused = refusal(outbox, throttled, events(1000))
    assert (refused.count, refused.events) == (11_000, 11)
    assert "alone would store 11,000 (" in str(refused)
    assert routed.events == 11


def test_known_groups_under_the_limit_are_taken(outbox: Outbox, routed: Routed) -> None:
    """Twenty group integrations, 1,000 events of one fingerprint: 20,000 at most
    by the bound, but only the first is a new group."""
    groups = many(20, trigger={"event": "group"})
    ingest = Ingest(outbox, registry(groups), max_notifications=LIMIT)
    accepted = ingest.submit([event("shop", "same") for _ in range(1000)])
    assert accepted.notifications == 20
    again = ingest.submit(events(1000, new_group=False))
    assert again.notifications == 0
    assert stored(outbox)[0] == 20
    assert routed.events == 2000


def test_a_request_at_the_limit_exactly_is_taken(outbox: Outbox) -> None:
    ingest = Ingest(outbox, registry(many(10)), max_notifications=LIMIT)
    assert ingest.submit(events(1000)).notifications == LIMIT


def test_events_of_other_projects_count_only_their_own(outbox: Outbox, routed: Routed) -> None:
    """Events for a project nobody serves, or a small one, count nothing against
    the big project's: 9 of its events with 1,000 integrations (9,000) and 990
    of a one-integration project make 9,990."""
    small = integration("small", project="small")
    ingest = Ingest(outbox, registry([*many(1000), small]), max_notifications=LIMIT)
    sent = [*events(9), *events(990, project="small"), *events(1, project="nobody")]
    assert ingest.submit(sent).notifications == 9990
    refused = refusal(outbox, [*many(1000), small], [*events(990, project="small"), *events(10)])
    assert (refused.count, refused.events) == (10_990, 1000)
    assert routed.events == 999


ACTIONS = st.sampled_from(
    [
        [],
        [],
        [],
        [MATCHES_ALL],
        [MENTIONS_ALL],
        [{"action": "filter", "attribute": "team", "regex": "^a$"}],
    ]
)
TRIGGERS = st.sampled_from(
    [
        {"event": "trace"},
        {"event": "trace"},
        {"event": "group"},
        {"event": "group"},
        {"event": "trace", "frequency": "5m"},
        {"event": "group", "frequency": "5m", "threshold": 2},
    ]
)
INTEGRATIONS = st.lists(
    st.fixed_dictionaries(
        {
            "project": st.sampled_from(["shop", "shop", "desk"]),
            "state": st.sampled_from(["enabled", "stopped", "disabled"]),
            "trigger": TRIGGERS,
            "actions": ACTIONS,
            "rooms": st.integers(1, 3),
        }
    ),
    min_size=1,
    max_size=6,
)
REQUESTS = st.lists(
    st.lists(
        st.fixed_dictionaries(
            {
                "project": st.sampled_from(["shop", "shop", "desk", "nobody"]),
                "fingerprint": st.sampled_from(["f1", "f2", "f3"]),
                "attributes": st.fixed_dictionaries({"team": st.sampled_from(["a", "b"])}),
            },
            optional={"new_group": st.booleans()},
        ),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=3,
)


def outcome(ingest: Ingest, sent: list[dict[str, Any]]) -> tuple[Any, ...]:
    try:
        accepted = ingest.submit(sent)
    except TooMany as exc:
        return ("refused", exc.count, exc.events, exc.exact)
    return ("taken", accepted.notifications, tuple(accepted.integrations.items()))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(INTEGRATIONS, REQUESTS, st.integers(1, 10))
def test_refusing_before_routing_decides_as_routing_would(
    configs: list[dict[str, Any]], requests: list[list[dict[str, Any]]], limit: int
) -> None:
    """Random sets and requests, each request taken in turn by two stores: one
    refusing before routing where it can, one routing every request. Each request
    is taken by both, with the same answer, or refused by both; an exact refusal
    names the same event and count as routing's, one that says "at least" an
    event no earlier than routing's first over the limit."""
    integrations = [
        integration(
            f"i{n}",
            str(c["project"]),
            rooms=int(c["rooms"]),
            **{k: v for k, v in c.items() if k not in ("project", "rooms")},
        )
        for n, c in enumerate(configs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        early = Ingest(
            Outbox(Path(tmp) / "early.db"),
            registry(integrations),
            clock=lambda: 1e9,
            max_notifications=limit,
        )
        routed = Ingest(
            Outbox(Path(tmp) / "routed.db"),
            registry(integrations),
            clock=lambda: 1e9,
            max_notifications=limit,
        )
        for sent in requests:
            full = [{**event(e["project"], e["fingerprint"]), **e} for e in sent]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ingest_module._Plan, "refuse_early", lambda self, request: None)
                expected = outcome(routed, full)
            found = outcome(early, full)
            if found[0] == "taken" or found[3]:
                assert found == expected
            else:
                assert expected[0] == "refused" and expected[3]
                assert found[2] >= expected[2] and found[1] > limit
