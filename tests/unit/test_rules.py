"""Common Settings rules: actions, group/trace, frequency and threshold."""

from __future__ import annotations

import time

from freezegun import freeze_time

from syncd.config.model import Action, Integration, Trigger, integration_from_data
from syncd.events.rules import (
    EMPTY,
    Match,
    due_at,
    evaluate_actions,
    find_match,
    flush,
    is_candidate,
    on_event,
    window_key,
    within_clock,
)
from syncd.store.contract import Window

F = Action("filter", "*", ".*")
NYC = Action("submit", "datacenter", "^nyc$")
PAY = Action("mention", "team", "^payments$", "@payments")


def test_no_actions_means_every_event_may_notify() -> None:
    assert evaluate_actions([], {"a": "b"}).notify
    assert evaluate_actions([], {}).notify


def test_the_last_matching_submit_or_filter_decides() -> None:
    rules = [F, NYC, PAY]
    assert not evaluate_actions(rules, {"datacenter": "sfo"}).notify
    nyc = evaluate_actions(rules, {"datacenter": "nyc"})
    assert nyc.notify and nyc.mentions == () and nyc.rule == 1
    assert not evaluate_actions([NYC, F], {"datacenter": "nyc"}).notify


def test_a_mention_adds_its_target_and_never_decides() -> None:
    # "A mention adds text mentioning a user": it rides on a notification that is sent.
    both = evaluate_actions([F, NYC, PAY], {"datacenter": "nyc", "team": "payments"})
    assert (both.notify, both.mentions, both.rule) == (True, ("@payments",), 1)
    # A mention after a filter does not turn the filtered event into a notification.
    dropped = evaluate_actions([F, PAY], {"team": "payments"})
    assert (dropped.notify, dropped.mentions) == (False, ())
    # With no submit or filter matching, the event may notify, with its mention.
    alone = evaluate_actions([NYC, PAY], {"team": "payments"})
    assert (alone.notify, alone.mentions, alone.rule) == (True, ("@payments",), None)


def test_every_matching_mention_adds_its_target_in_order_each_once() -> None:
    ops = Action("mention", "env", "^prod$", "@ops")
    rules = [PAY, ops, Action("mention", "*", ".", "@payments")]
    verdict = evaluate_actions(rules, {"team": "payments", "env": "prod"})
    assert verdict.mentions == ("@payments", "@ops")


def test_regex_is_searched_not_anchored() -> None:
    rule = [Action("filter", "env", "stag")]
    assert not evaluate_actions(rule, {"env": "pre-staging"}).notify
    assert evaluate_actions(rule, {"other": "staging"}).notify


def test_a_match_says_which_attribute_and_which_part_of_its_value() -> None:
    attributes = {"env": "prod", "datacenter": "nyc2"}
    assert find_match(Action("submit", "datacenter", "nyc"), attributes) == Match(
        "datacenter", "nyc2", 0, 3
    )
    assert find_match(Action("submit", "datacenter", "^nyc$"), attributes) is None
    assert find_match(Action("submit", "missing", ""), attributes) is None
    # "*": the first attribute, in the event's order, whose value matches.
    assert find_match(Action("filter", "*", "[0-9]"), attributes) == Match(
        "datacenter", "nyc2", 3, 4
    )
    # "*" on an event without attributes searches one empty value.
    assert find_match(F, {}) == Match(None, "", 0, 0)


def test_any_attribute_on_an_event_without_attributes() -> None:
    assert not evaluate_actions([F], {}).notify
    assert evaluate_actions([Action("filter", "*", "x")], {}).notify


def test_group_counts_only_new_fingerprints() -> None:
    assert is_candidate(Trigger("group"), new_group=True)
    assert not is_candidate(Trigger("group"), new_group=False)
    assert is_candidate(Trigger("trace"), new_group=False)


def test_without_frequency_every_candidate_sends() -> None:
    trigger = Trigger("trace")
    window = EMPTY
    for now in (0.0, 0.1, 0.2):
        decision = on_event(trigger, window, now, candidate=True)
        assert (decision.kind, decision.count) == ("send", 1)
        window = decision.window
    assert on_event(trigger, window, 1.0, candidate=False).kind == "ignore"


def test_frequency_aggregates_and_the_window_end_flushes_the_count() -> None:
    trigger = Trigger("trace", frequency=300)
    with freeze_time("2026-11-26 12:00:00") as clock:
        first = on_event(trigger, EMPTY, time.time(), candidate=True)
        assert (first.kind, first.count) == ("send", 1)
        window = first.window
        for _ in range(3):
            clock.tick(60)
            decision = on_event(trigger, window, time.time(), candidate=True)
            assert decision.kind == "aggregate"
            window = decision.window
        assert window.pending == 3
        assert due_at(trigger, window) == first.window.last_sent + 300
        clock.tick(100)  # 280 s after the first message: not yet
        assert flush(trigger, window, time.time()).kind == "ignore"
        clock.tick(20)
        flushed = flush(trigger, window, time.time())
        assert (flushed.kind, flushed.count) == ("send", 3)
        assert flushed.window == Window(last_sent=time.time())
        assert due_at(trigger, flushed.window) is None


def test_threshold_sends_at_once_inside_the_window() -> None:
    trigger = Trigger("trace", frequency=3600, threshold=3)
    window = on_event(trigger, EMPTY, 0.0, candidate=True).window
    kinds = []
    for now in (1.0, 2.0, 3.0, 4.0):
        decision = on_event(trigger, window, now, candidate=True)
        kinds.append((decision.kind, decision.count))
        window = decision.window
    assert kinds == [("aggregate", 0), ("aggregate", 0), ("send", 3), ("aggregate", 0)]


def test_an_event_after_a_missed_flush_carries_the_aggregated_count() -> None:
    trigger = Trigger("trace", frequency=60)
    window = Window(last_sent=0.0, pending=4, pending_since=10.0)
    decision = on_event(trigger, window, 500.0, candidate=True)
    assert (decision.kind, decision.count) == ("send", 5)


def test_a_window_keeps_every_mention_its_events_earned_until_it_sends() -> None:
    trigger = Trigger("trace", frequency=60, threshold=4)
    window = on_event(trigger, EMPTY, 0.0, candidate=True, mentions=("@first",)).window
    assert window.mentions == ()  # the first event was sent with its own mention
    for now, earned in ((1.0, ("@ops",)), (2.0, ()), (3.0, ("@pay", "@ops"))):
        window = on_event(trigger, window, now, candidate=True, mentions=earned).window
    assert window.mentions == ("@ops", "@pay")
    sent = on_event(trigger, window, 4.0, candidate=True, mentions=("@db", "@pay"))
    assert (sent.kind, sent.count, sent.mentions) == ("send", 4, ("@ops", "@pay", "@db"))
    assert sent.window == Window(last_sent=4.0)


def test_a_flush_sends_the_mentions_of_what_aggregated() -> None:
    trigger = Trigger("group", frequency=60)
    window = Window(last_sent=0.0, pending=2, pending_since=10.0, mentions=("@ops", "@pay"))
    flushed = flush(trigger, window, 60.0)
    assert (flushed.kind, flushed.count, flushed.mentions) == ("send", 2, ("@ops", "@pay"))
    assert flushed.window.mentions == ()


def test_window_keys() -> None:
    def make(event: str) -> Integration:
        return integration_from_data(
            {
                "uid": "u",
                "project": "p",
                "name": "n",
                "trigger": {"event": event},
                "hipchat": {"endpoint": "https://h", "rooms": [{"id": 1, "token": {"env": "T"}}]},
            }
        )

    trace, group = make("trace"), make("group")
    assert window_key(trace, "fp1") != window_key(trace, "fp2")
    assert window_key(group, "fp1") == window_key(group, "fp2")


def test_a_window_last_sent_after_now_starts_again_now() -> None:
    """The wall clock stepped back: the window lasts its frequency from now, not the
    step and its frequency."""
    trigger = Trigger(event="trace", frequency=300)
    sent_tomorrow = Window(last_sent=1000.0 + 86_400)
    decision = on_event(trigger, sent_tomorrow, 1000.0, candidate=True)
    assert decision.kind == "aggregate"
    assert decision.window.last_sent == 1000.0
    assert due_at(trigger, decision.window) == 1300.0
    waiting = Window(last_sent=1000.0 + 86_400, pending=2, pending_since=1010.0 + 86_400)
    assert flush(trigger, waiting, 1000.0).window == Window(1000.0, 2, 1000.0)
    assert within_clock(Window(last_sent=900.0), 1000.0) == Window(last_sent=900.0)
