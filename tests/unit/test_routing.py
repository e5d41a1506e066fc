"""The event flow's decision, without a store: what one event causes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from syncd.config.model import Integration, Trigger, integration_from_data
from syncd.events.routing import (
    Judged,
    Routing,
    Why,
    judge,
    route_event,
    route_flush,
    window_keys,
)
from syncd.store.contract import StoredWindow, Window


def integration(uid: str = "ops", rooms: int = 2, **extra: Any) -> Integration:
    return integration_from_data(
        {
            "uid": uid,
            "project": "shop",
            "name": uid,
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": str(n), "token": {"env": "HIPCHAT_T"}} for n in range(rooms)],
            },
            **extra,
        }
    )


def event(**fields: Any) -> dict[str, Any]:
    return {"project": "shop", "fingerprint": "fp", "timestamp": "t", **fields}


def route(
    integrations: list[Integration],
    *,
    new_group: bool = True,
    windows: dict[str, Window] | None = None,
    now: float = 1000.0,
    **fields: Any,
) -> Routing:
    evt = event(**fields)
    judged = judge(evt, integrations)
    return route_event(evt, judged, new_group=new_group, windows=windows or {}, now=now)


def test_a_new_group_queues_one_item_per_room() -> None:
    result = route([integration(rooms=3)])
    assert [(i.uid, i.room_id, i.count) for i in result.items] == [
        ("ops", "0", 1),
        ("ops", "1", 1),
        ("ops", "2", 1),
    ]
    assert result.windows == ()


def test_the_new_group_decision_is_kept_on_the_event_queued_and_aggregated() -> None:
    """The message is rendered from the stored event, so syncd's own decision (from
    its fingerprint store) must be on it, as a sender's ``new_group`` would be."""
    assert {i.event["new_group"] for i in route([integration()]).items} == {True}
    trace = integration(trigger={"event": "trace", "frequency": "5m"})
    (sent,) = {i.event["new_group"] for i in route([trace], new_group=False).items}
    assert sent is False
    (key,) = window_keys([Judged(trace)], "fp", new_group=True)
    held = route([trace], windows={key: Window(last_sent=900.0)})
    (update,) = held.windows
    assert update.last_event is not None and update.last_event["new_group"] is True


def test_a_known_group_queues_nothing_unless_the_trigger_is_trace() -> None:
    assert route([integration()], new_group=False).items == ()
    trace = integration(trigger={"event": "trace"})
    assert len(route([trace], new_group=False).items) == 2


def test_a_filtered_event_neither_queues_nor_touches_a_window() -> None:
    filtered = integration(
        actions=[{"action": "filter", "attribute": "env", "regex": "^staging$"}],
        trigger={"event": "group", "frequency": "5m"},
    )
    assert route([filtered], attributes={"env": "staging"}) == Routing(
        whys=(Why("ops", "filtered by actions[0]"),)
    )


def test_each_integration_says_why_it_queued_or_not() -> None:
    throttled = integration("slow", trigger={"event": "trace", "frequency": "5m"})
    window = {"slow\0fp": Window(last_sent=900.0)}
    stopped = integration("off", state="disabled")
    group = integration("groups")
    result = route([integration("ops"), throttled, stopped, group], new_group=False, windows=window)
    assert result.notes == (
        "ops: not a new error group (trigger: group)",
        "slow: throttled until 1970-01-01T00:20:00Z",
        "off: disabled, nothing is queued",
        "groups: not a new error group (trigger: group)",
    )
    assert route([integration(rooms=2)]).notes == ("ops: queued for 2 room(s)",)
    assert route([]).notes == ("no integration for project shop",)


def test_a_mention_rides_on_every_item() -> None:
    mention = integration(
        actions=[{"action": "mention", "attribute": "team", "regex": "^pay$", "target": "@pay"}]
    )
    result = route([mention], attributes={"team": "pay"})
    assert {i.mentions for i in result.items} == {("@pay",)}


def test_inside_the_frequency_window_events_aggregate_and_the_window_is_stored() -> None:
    throttled = integration(trigger={"event": "trace", "frequency": "5m"})
    (key,) = window_keys([Judged(throttled)], "fp", new_group=False)
    result = route([throttled], new_group=False, windows={key: Window(last_sent=900.0)}, now=1000.0)
    assert result.items == ()
    (update,) = result.windows
    assert (update.key, update.window.pending, update.due_at) == (key, 1, 1200.0)
    assert update.last_event is not None and update.last_event["fingerprint"] == "fp"


def test_reaching_the_threshold_sends_with_the_count_at_once() -> None:
    throttled = integration(rooms=1, trigger={"event": "trace", "frequency": "1h", "threshold": 3})
    (key,) = window_keys([Judged(throttled)], "fp", new_group=False)
    window = Window(last_sent=900.0, pending=2, pending_since=950.0)
    result = route([throttled], new_group=False, windows={key: window}, now=1000.0)
    assert [i.count for i in result.items] == [3]
    assert result.windows[0].window == Window(last_sent=1000.0)


def test_only_throttled_candidates_need_a_stored_window() -> None:
    plain = integration("plain")
    group = integration("group", trigger={"event": "group", "frequency": "5m"})
    assert window_keys([Judged(plain), Judged(group)], "fp", new_group=False) == []
    assert window_keys([Judged(plain), Judged(group)], "fp", new_group=True) == ["group\0"]


def test_a_due_window_sends_what_aggregated_with_every_mention_it_earned() -> None:
    throttled = integration(rooms=1, trigger={"event": "trace", "frequency": "5m"})
    due = StoredWindow("k", "ops", Window(700.0, 4, 710.0, ("@ops", "@pay")), event())
    result = route_flush(due, throttled, now=1000.0)
    assert [(i.count, i.mentions) for i in result.items] == [(4, ("@ops", "@pay"))]
    assert result.windows[0].window == Window(last_sent=1000.0)


PAY = {"action": "mention", "attribute": "team", "regex": "^pay$", "target": "@pay"}
OPS = {"action": "mention", "attribute": "env", "regex": "^prod$", "target": "@ops"}


def test_a_digest_carries_every_mention_its_events_earned_once_in_first_earned_order() -> None:
    throttled = integration(
        rooms=1, actions=[PAY, OPS], trigger={"event": "trace", "frequency": "5m"}
    )
    (key,) = window_keys([Judged(throttled)], "fp", new_group=False)
    windows = {key: Window(last_sent=900.0)}
    earned = ({"env": "prod"}, {"team": "pay"}, {}, {"team": "pay", "env": "prod"})
    for now, attributes in enumerate(earned, start=1000):
        result = route(
            [throttled], new_group=False, windows=windows, now=now, attributes=attributes
        )
        assert result.items == ()
        (update,) = result.windows
        windows = {key: update.window}
    assert update.last_event is not None
    due = StoredWindow(key, "ops", windows[key], update.last_event)
    (digest,) = route_flush(due, throttled, now=1200.0).items
    # The last event earned @pay then @ops; the digest keeps the order they were first earned.
    assert (digest.count, digest.mentions) == (4, ("@ops", "@pay"))


def test_a_send_that_ends_a_window_carries_its_pending_mentions_then_its_own() -> None:
    throttled = integration(
        rooms=1, actions=[PAY, OPS], trigger={"event": "trace", "frequency": "5m"}
    )
    (key,) = window_keys([Judged(throttled)], "fp", new_group=False)
    missed = Window(last_sent=0.0, pending=2, pending_since=10.0, mentions=("@ops",))
    result = route(
        [throttled],
        new_group=False,
        windows={key: missed},
        now=5000.0,
        attributes={"team": "pay", "env": "prod"},
    )
    assert [(i.count, i.mentions) for i in result.items] == [(3, ("@ops", "@pay"))]
    assert result.windows[0].window == Window(last_sent=5000.0)


def test_two_integrations_never_share_a_window_or_its_mentions() -> None:
    group = {"event": "group", "frequency": "5m"}
    loud = integration("loud", rooms=1, actions=[PAY], trigger=group)
    quiet = integration("quiet", rooms=1, trigger=group)
    evt = event(attributes={"team": "pay"})
    keys = window_keys(judge(evt, [loud, quiet]), "fp", new_group=True)
    assert len(set(keys)) == 2
    windows = {key: Window(last_sent=900.0) for key in keys}
    result = route([loud, quiet], windows=windows, attributes={"team": "pay"})
    assert [(u.key, u.uid, u.window.mentions) for u in result.windows] == [
        (keys[0], "loud", ("@pay",)),
        (keys[1], "quiet", ()),
    ]


def test_a_window_of_a_removed_or_unthrottled_integration_is_dropped() -> None:
    due = StoredWindow("k", "ops", Window(700.0, 4, 710.0), event())
    assert route_flush(due, None, now=1000.0) == Routing(drop=("k",))
    assert route_flush(due, integration(), now=1000.0) == Routing(drop=("k",))


def test_judging_says_which_integrations_actions_let_the_event_notify() -> None:
    quiet = integration(
        "quiet", actions=[{"action": "filter", "attribute": "env", "regex": "^staging$"}]
    )
    loud = integration("loud")
    judged = judge(event(attributes={"env": "staging"}), [quiet, loud])
    assert [(j.integration.uid, j.notify, j.rule) for j in judged] == [
        ("quiet", False, 0),
        ("loud", True, None),
    ]


def test_a_pattern_that_backtracks_exponentially_elsewhere_is_judged_at_once() -> None:
    # With a backtracking engine this pair takes about 2**40 steps.
    hostile = integration(actions=[{"action": "filter", "attribute": "x", "regex": "^(a+)+$"}])
    judged = judge(event(attributes={"x": "a" * 40 + "!"}), [hostile])
    assert [(j.integration.uid, j.notify) for j in judged] == [("ops", True)]


def test_a_disabled_integrations_actions_are_not_judged() -> None:
    off = integration(
        "off", state="disabled", actions=[{"action": "filter", "attribute": "*", "regex": "x"}]
    )
    (judged,) = judge(event(attributes={"a": "x"}), [off])
    assert judged == Judged(off)
    assert route([off], attributes={"a": "x"}).notes == ("off: disabled, nothing is queued",)


def test_an_integration_whose_routing_raises_is_skipped_and_the_others_route() -> None:
    broken = replace(integration("broken"), trigger=Trigger("trace", 10**400))
    result = route([broken, integration("fine", rooms=1)])
    assert [i.uid for i in result.items] == ["fine"]
    assert result.notes == (
        "broken: skipped: routing failed (see the log)",
        "fine: queued for 1 room(s)",
    )
    assert result.whys[0].failed == "OverflowError: int too large to convert to float"


def test_a_due_time_no_calendar_holds_is_still_said() -> None:
    huge = replace(integration(), trigger=Trigger("trace", 10**17))
    held = route([huge], windows={"ops\0fp": Window(last_sent=900.0)})
    assert held.notes == ("ops: throttled until 100000000000000896 s after 1970",)
