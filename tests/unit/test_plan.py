"""The planner: pure, keyed by uid, unchanged integrations untouched."""

from __future__ import annotations

from dataclasses import replace

from syncd.config.model import Integration, Source, integration_from_data, integration_to_data
from syncd.config.plan import active_from_data, plan, render_plan


def make(uid: str, **changes: object) -> Integration:
    data = {
        "uid": uid,
        "project": "checkout",
        "name": uid,
        "hipchat": {
            "endpoint": "https://hipchat.example.com",
            "rooms": [{"id": 1, "token": {"env": "T"}}],
        },
    }
    data.update(changes)
    return integration_from_data(data)


def test_create_update_delete_keep() -> None:
    a, b, c = make("a"), make("b"), make("c")
    b2 = make("b", state="disabled")
    result = plan([a, b2, make("d")], {"a": a, "b": b, "c": c})
    assert [i.uid for i in result.create] == ["d"]
    assert [(u.before, u.after) for u in result.update] == [(b, b2)]
    assert [i.uid for i in result.delete] == ["c"]
    assert result.keep == (a,)
    assert result.changed
    assert result.summary() == "1 to create, 1 to update, 1 to delete, 1 unchanged"
    assert result.done() == "created d; updated b; removed c"


def test_what_was_done_names_ten_uids_then_counts() -> None:
    many = [make(f"u{n:02}") for n in range(12)]
    assert plan(many, {}).done() == (
        "created u00, u01, u02, u03, u04, u05, u06, u07, u08, u09 and 2 more"
    )
    assert plan(many, {i.uid: i for i in many}).done() == "no changes"


def test_keep_returns_the_active_object_itself() -> None:
    active = make("a")
    same_but_new_object = make("a")
    assert active is not same_but_new_object
    result = plan([same_but_new_object], {"a": active})
    assert result.keep[0] is active
    assert not result.changed


def test_source_position_is_not_a_change() -> None:
    from syncd.config.model import Source

    moved = replace(make("a"), source=Source("other.yaml", 40, 5))
    assert not plan([moved], {"a": make("a")}).changed


def test_update_lists_changed_fields() -> None:
    before = make("a")
    after = make("a", trigger={"frequency": "5m"}, display={"callstack": False})
    (upd,) = plan([after], {"a": before}).update
    assert upd.changes() == [
        ("display.callstack", True, False),
        ("trigger.frequency", None, 300),
    ]


def test_render_shows_no_secret() -> None:
    secret = "literal-token-value-123"
    after = make(
        "a",
        hipchat={
            "endpoint": "https://hipchat.example.com",
            "rooms": [{"id": 1, "token": secret}],
        },
    )
    out = render_plan(plan([after.public()], {"a": make("a")}), against="x")
    assert secret not in out
    assert "~ update a" in out
    assert "hipchat.rooms[0].token" in out
    assert out.endswith("Plan: 0 to create, 1 to update, 0 to delete, 0 unchanged.\n")


def test_round_trip_through_the_registry_form() -> None:
    original = make(
        "a",
        actions=[{"action": "mention", "attribute": "t", "regex": "x", "target": "@ops"}],
        trigger={"frequency": 60, "threshold": 3},
    )
    (back,) = active_from_data([integration_to_data(original)]).values()
    assert back == original
    assert not plan([original], {"a": back}).changed


def test_empty_plan_renders_no_changes() -> None:
    a = make("a")
    assert render_plan(plan([a], {"a": a}), against="http://d") == (
        "No changes against http://d.\nPlan: 0 to create, 0 to update, 0 to delete, 1 unchanged.\n"
    )


def test_an_update_of_an_integration_with_actions_renders_what_changed() -> None:
    source = Source("a.yaml", 12, 9, "$.integrations[0].actions[0]")
    before = make("a", actions=[{"action": "submit", "attribute": "dc", "regex": "^nyc$"}])
    action = replace(before.actions[0], regex="^sfo$", source=source)
    after = replace(before, actions=(action,))
    result = plan([after], {"a": before})
    assert [u.uid for u in result.update] == ["a"]
    assert 'actions[0].regex: "^nyc$" -> "^sfo$"' in render_plan(result, against="x")
    assert "source" not in integration_to_data(after)["actions"][0]
