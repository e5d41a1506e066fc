"""Routing with mutes: a mute hides a room's notification at the moment it would be
queued, and changes nothing else routing decides (windows, digests, reasons of the
others); it is active while ``now`` is before its ``until``."""

from __future__ import annotations

from typing import Any

from syncd.config.model import Integration, integration_from_data
from syncd.config.mutes import Mute, MuteMatch, parse_until
from syncd.events.muting import Mutes
from syncd.events.routing import Routing, judge, route_event, route_flush
from syncd.store.contract import StoredWindow, Window

UNTIL = parse_until("2026-12-10T09:00:00Z")
BEFORE, AFTER = UNTIL - 1, UNTIL


def integration(uid: str = "pay", project: str = "shop", **extra: Any) -> Integration:
    return integration_from_data(
        {
            "uid": uid,
            "project": project,
            "name": uid,
            "hipchat": {
                "endpoint": "https://hipchat.example.com",
                "rooms": [{"id": room, "token": {"env": "HIPCHAT_T"}} for room in ("1", "2")],
            },
            **extra,
        }
    )


def mute(index: int = 0, **fields: Any) -> Mute:
    fields.setdefault("uid", "pay")
    return Mute("teams/pay.yaml", index, UNTIL, "deploy freeze", **fields)


def route(
    integrations: list[Integration], mutes: list[Mute], now: float = BEFORE, **attributes: str
) -> Routing:
    event = {"project": "shop", "fingerprint": "fp", "timestamp": "t", "attributes": attributes}
    judged = judge(event, integrations)
    return route_event(event, judged, new_group=True, windows={}, now=now, mutes=Mutes.of(mutes))


def test_a_mute_holds_back_every_room_and_says_which_mute_until_when() -> None:
    routing = route([integration()], [mute()])
    assert routing.items == ()
    assert [(item.uid, item.room_id) for item in routing.muted] == [("pay", "1"), ("pay", "2")]
    assert routing.notes == (
        "pay: muted by teams/pay.yaml mutes[0] until 2026-12-10T09:00:00Z (deploy freeze)",
    )


def test_the_same_event_at_until_is_queued() -> None:
    routing = route([integration()], [mute()], now=AFTER)
    assert len(routing.items) == 2 and routing.muted == ()
    assert routing.notes == ("pay: queued for 2 room(s)",)


def test_rooms_narrow_a_mute_and_the_rest_are_queued() -> None:
    routing = route([integration()], [mute(rooms=("2",))])
    assert [item.room_id for item in routing.items] == ["1"]
    assert [item.room_id for item in routing.muted] == ["2"]
    assert routing.notes == (
        "pay: queued for 1 room(s), 1 muted by teams/pay.yaml mutes[0] until "
        "2026-12-10T09:00:00Z (deploy freeze)",
    )


def test_match_uses_the_actions_matcher_and_every_entry_must_match() -> None:
    both = (MuteMatch("env", "prod"), MuteMatch("*", "^eu-"))
    muted = [mute(match=both)]
    assert route([integration()], muted, env="preprod", dc="eu-1").items == ()  # searched
    assert len(route([integration()], muted, env="prod", dc="us-1").items) == 2
    assert len(route([integration()], muted, dc="eu-1").items) == 2


def test_a_project_mute_covers_its_integrations_only() -> None:
    other = integration("ops", project="other")
    routing = route([integration(), integration("b")], [mute(uid=None, project="shop")])
    assert routing.items == () and len(routing.muted) == 4
    assert route([other], [mute(uid=None, project="shop")]).muted == ()


def test_a_muted_event_still_counts_in_the_throttle_window() -> None:
    trigger = {"trigger": {"event": "trace", "frequency": "5m"}}
    routing = route([integration(**trigger)], [mute()])
    (update,) = routing.windows
    assert update.window.last_sent == BEFORE  # the window opened as if it had been sent
    assert routing.items == () and len(routing.muted) == 2


def test_an_event_held_in_a_window_is_throttled_not_muted() -> None:
    trace = integration(trigger={"event": "trace", "frequency": "5m"})
    event = {"project": "shop", "fingerprint": "fp", "timestamp": "t"}
    windows = {"pay\0fp": Window(last_sent=BEFORE - 10)}
    routing = route_event(
        event, judge(event, [trace]), new_group=True, windows=windows, now=BEFORE,
        mutes=Mutes.of([mute()]),
    )  # fmt: skip
    assert routing.muted == () and routing.notes[0].startswith("pay: throttled until")


def test_a_digest_is_muted_only_by_a_mute_without_match() -> None:
    trace = integration(trigger={"event": "trace", "frequency": "5m"})
    window = Window(last_sent=BEFORE - 400, pending=3, pending_since=BEFORE - 300)
    due = StoredWindow("pay\0fp", "pay", window, {"project": "shop", "fingerprint": "fp"})
    plain = route_flush(due, trace, BEFORE, Mutes.of([mute(rooms=("1",))]))
    assert [i.room_id for i in plain.items] == ["2"] and len(plain.muted) == 1
    matching = route_flush(due, trace, BEFORE, Mutes.of([mute(match=(MuteMatch("*", ""),))]))
    assert len(matching.items) == 2 and matching.muted == ()
    assert plain.windows == matching.windows  # settled the same either way
    lifted = route_flush(due, trace, AFTER, Mutes.of([mute()]))
    assert len(lifted.items) == 2


def test_a_reason_with_terminal_escapes_is_escaped_in_the_outcome() -> None:
    hostile = Mute("teams/pay.yaml", 0, UNTIL, "\x1b]0;pwned\x07\u2028", uid="pay")
    (note,) = route([integration()], [hostile]).notes
    assert note.endswith("(\\x1b]0;pwned\\x07\\u2028)") and note.isprintable()
