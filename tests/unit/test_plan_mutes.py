"""The plan of a change to the mutes: what a reviewer must see of a pull request
that mutes a room, each mute paired across the two sets by whom it mutes, not
by its index."""

from __future__ import annotations

import json
from dataclasses import replace

from syncd.config.mutes import Mute, MuteMatch
from syncd.config.plan import (
    MutePlan,
    mute_to_data,
    mutes_from_data,
    plan,
    plan_mutes,
    render_plan,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0


def mute(index: int = 0, *, file: str = "teams/pay.yaml", **fields: object) -> Mute:
    values: dict[str, object] = {
        "until": NOW + 2 * DAY,
        "reason": "deploy freeze",
        "uid": "pay-ops",
        "rooms": ("pay-war-room",),
    }
    values.update(fields)
    return Mute(file, index, **values)  # type: ignore[arg-type]


def text(mutes: MutePlan) -> str:
    return render_plan(plan([], {}), against="the old set", mutes=mutes, now=NOW)


def test_an_added_mute_is_a_change_named_by_file_and_index() -> None:
    added = mute(0, match=(MuteMatch("environment", "^canary$"),))
    result = plan_mutes([added], [])
    assert result.add == (added,) and result.changed
    assert text(result).splitlines() == [
        "+ mute teams/pay.yaml mutes[0]: integration pay-ops, rooms [pay-war-room], "
        'match environment ~ "^canary$", until 2027-01-17T08:00:00Z (in 2 days), '
        "reason: deploy freeze",
        "Plan: 0 to create, 0 to update, 0 to delete, 0 unchanged; "
        "mutes: 1 to add, 0 to change, 0 to remove, 0 unchanged.",
    ]


def test_a_removed_mute_is_a_change_even_one_past_its_time() -> None:
    ended = mute(0, until=NOW - 3 * 3600)
    result = plan_mutes([], [ended])
    assert result.remove == (ended,) and result.changed
    first = text(result).splitlines()[0]
    assert first == (
        "- unmute teams/pay.yaml mutes[0]: integration pay-ops, rooms [pay-war-room], "
        "until 2027-01-15T05:00:00Z (ended 3 hours ago), reason: deploy freeze"
    )


def test_a_later_until_is_one_change_of_until() -> None:
    before, after = mute(0), mute(0, until=NOW + 5 * DAY)
    result = plan_mutes([after], [before])
    assert not result.add and not result.remove
    (change,) = result.change
    assert change.changes() == [("until", "2027-01-17T08:00:00Z", "2027-01-20T08:00:00Z")]
    lines = text(result).splitlines()
    assert lines[0].startswith("~ mute teams/pay.yaml mutes[0]: integration pay-ops")
    assert lines[1] == '    until: "2027-01-17T08:00:00Z" -> "2027-01-20T08:00:00Z"'


def test_a_mute_inserted_above_another_changes_only_itself() -> None:
    """The old mute moves from index 0 to 1: the same mute, not a changed one."""
    kept = mute(0, uid=None, project="billing", rooms=None, reason="ledger migration")
    inserted = mute(0, rooms=("pay-war-room",), reason="incident 42")
    result = plan_mutes([inserted, replace(kept, index=1)], [kept])
    assert result.add == (inserted,)
    assert not result.change and not result.remove
    assert result.unchanged == 1
    assert result.summary() == "1 to add, 0 to change, 0 to remove, 1 unchanged"


def test_a_mute_inserted_above_one_muting_the_same_rooms_is_still_one_addition() -> None:
    old = mute(0)
    inserted = mute(0, until=NOW + 1 * DAY, reason="incident 42")
    result = plan_mutes([inserted, replace(old, index=1)], [old])
    assert result.add == (inserted,) and not result.change and result.unchanged == 1


def test_other_rooms_or_match_for_the_same_integration_read_as_a_change() -> None:
    before = mute(0)
    after = mute(0, rooms=None, match=(MuteMatch("env", "^prod$"),))
    (change,) = plan_mutes([after], [before]).change
    assert change.changes() == [
        ("match", [], [{"attribute": "env", "regex": "^prod$"}]),
        ("rooms", ["pay-war-room"], None),
    ]


def test_a_mute_moved_to_another_file_is_removed_there_and_added_here() -> None:
    result = plan_mutes([mute(0, file="teams/ops.yaml")], [mute(0)])
    assert len(result.add) == 1 and len(result.remove) == 1 and not result.change


def test_a_project_mute_names_its_project_and_every_room() -> None:
    billing = mute(3, uid=None, project="billing", rooms=None, reason="ledger migration")
    line = text(plan_mutes([billing], [])).splitlines()[0]
    assert line == (
        "+ mute teams/pay.yaml mutes[3]: project billing, every room, "
        "until 2027-01-17T08:00:00Z (in 2 days), reason: ledger migration"
    )


def test_a_reason_with_escape_sequences_and_line_breaks_is_printed_escaped() -> None:
    hostile = "freeze\x1b[2J\rdone\u2028+ create evil\x85"
    before, after = mute(0), mute(0, reason=hostile)
    output = text(plan_mutes([after], [before])) + text(plan_mutes([after], []))
    for raw in ("\x1b", "\r", "\u2028", "\x85"):
        assert raw not in output
    assert "reason: freeze\\x1b[2J\\rdone\\u2028+ create evil\\x85\n" in output
    assert '    reason: "deploy freeze" -> "freeze\\u001b[2J\\rdone\\u2028+ create evil\\x85"' in (
        output
    )
    as_json = render_plan(plan([], {}), against="x", mutes=plan_mutes([after], []), fmt="json")
    assert json.loads(as_json)["mutes"]["add"][0]["reason"] == (
        "freeze\\x1b[2J\\rdone\\u2028+ create evil\\x85"
    )
    markdown = render_plan(plan([], {}), against="x", mutes=plan_mutes([after], []), fmt="markdown")
    assert "\x1b" not in markdown and "\u2028" not in markdown


def test_no_mutes_on_either_side_prints_the_plan_as_before() -> None:
    output = render_plan(plan([], {}), against="an empty registry", mutes=MutePlan(), now=NOW)
    assert output == (
        "No changes against an empty registry.\n"
        "Plan: 0 to create, 0 to update, 0 to delete, 0 unchanged.\n"
    )


def test_only_unchanged_mutes_is_no_change() -> None:
    result = plan_mutes([mute(0)], [mute(0)])
    assert not result.changed and result.unchanged == 1
    assert text(result).startswith("No changes against the old set.\n")


def test_json_lists_each_kind_of_mute_change() -> None:
    added, removed = mute(1, uid=None, project="billing", rooms=None), mute(0, uid="other")
    before, after = mute(0), mute(0, reason="incident 42")
    result = plan_mutes([after, added], [before, removed])
    document = json.loads(render_plan(plan([], {}), against="x", mutes=result, fmt="json"))
    assert document["changed"] is True
    mutes = document["mutes"]
    assert [m["mute"] for m in mutes["add"]] == ["teams/pay.yaml mutes[1]"]
    assert mutes["add"][0]["project"] == "billing" and mutes["add"][0]["rooms"] is None
    assert [m["uid"] for m in mutes["remove"]] == ["other"]
    (changed,) = mutes["change"]
    assert changed["was"] == "teams/pay.yaml mutes[0]"
    assert changed["changes"] == [
        {"field": "reason", "before": "deploy freeze", "after": "incident 42"}
    ]


def test_markdown_is_the_plan_in_a_diff_block_a_backtick_cannot_close() -> None:
    sneaky = mute(0, reason="```\n# injected heading")
    output = render_plan(plan([], {}), against="x", mutes=plan_mutes([sneaky], []), fmt="markdown")
    lines = output.splitlines()
    assert lines[0] == "### syncd plan against x"
    fence = lines[2]
    assert fence.startswith("````") and fence.endswith("diff")
    assert "+ mute teams/pay.yaml mutes[0]:" in output
    assert "\n# injected heading" not in output
    assert lines[-1] == fence.removesuffix("diff")


def test_the_registry_form_round_trips_exactly() -> None:
    precise = mute(2, until=NOW + 0.25, match=(MuteMatch("*", "x"),), reason="a\x1bb")
    project = mute(3, uid=None, project="billing", rooms=None)
    data = json.loads(json.dumps([mute_to_data(m) for m in (precise, project)]))
    assert mutes_from_data(data) == (precise, project)
    assert not plan_mutes([precise, project], mutes_from_data(data)).changed


def test_a_changed_mute_that_moved_says_where_it_was() -> None:
    before = mute(0, file="a:b.yaml")
    after = mute(1, file="a:b.yaml", reason="incident 42")
    first = text(plan_mutes([mute(0, file="a:b.yaml", uid="other"), after], [before]))
    assert "~ mute a:b.yaml mutes[1] (was mutes[0]): integration pay-ops," in first
