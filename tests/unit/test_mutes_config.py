"""Mutes as a config declares them: the schema's errors, the times judged against
an injected clock, what a mute names checked across the files, and the bounds
that keep a hostile file's cost linear."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.diagnostics import printable
from syncd.config.filecache import ConfigLoader
from syncd.config.mutes import Mute, MuteMatch, parse_until
from syncd.config.reach import Reach
from syncd.config.semantics import Options
from tests.support.configs import minimal, write_files
from tests.support.filetimes import later_wall

NOW = parse_until("2026-12-03T12:00:00Z")
REACH = Reach(clock=lambda: NOW)

TWO = (
    minimal("pay").replace("project: checkout", "project: pay")
    + """\
  - uid: ops
    project: ops
    name: ops
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - {id: 7654321, token: {env: HIPCHAT_TOKEN}}
        - {id: war-room, token: {env: HIPCHAT_TOKEN}}
"""
)


def load(tmp_path: Path, mutes: str, reach: Reach = REACH, *files: tuple[str, str]) -> ConfigSet:
    """``TWO``'s integrations in ``teams/pay.yaml`` with ``mutes`` (YAML list items)
    appended under ``mutes:``, read from ``tmp_path`` as the daemon names files."""
    text = TWO + ("mutes:\n" + mutes if mutes else "")
    root = write_files(tmp_path / "config", ("teams/pay.yaml", text), *files)
    return load_config_set([root], Options(reach=reach))


def said(config: ConfigSet) -> list[str]:
    return [str(d).split("teams/pay.yaml:", 1)[1] for d in config.diagnostics]


def test_a_valid_mute_is_in_the_set_named_by_its_file_and_index(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '  - uid: ops\n    rooms: [war-room]\n    match: [{attribute: env, regex: "^prod$"}]\n'
        '    until: "2026-12-10T10:00:00+01:00"\n    reason: deploy freeze\n'
        '  - {project: pay, until: "2026-12-04T00:00:00Z", reason: migration}\n',
    )
    assert config.valid, said(config)
    first, second = config.mutes
    assert first.name.endswith("teams/pay.yaml mutes[0]")
    assert (first.uid, first.rooms, first.match) == (
        "ops",
        ("war-room",),
        (MuteMatch("env", "^prod$"),),
    )
    assert first.until_text == "2026-12-10T09:00:00Z"
    assert (second.project, second.rooms, second.index) == ("pay", None, 1)


@pytest.mark.parametrize(
    ("mute", "message"),
    [
        ("{reason: x}", "$.mutes[0]: missing key 'until'"),
        ('{uid: pay, until: "2026-12-10T09:00:00Z"}', "$.mutes[0]: missing key 'reason'"),
        (
            '{uid: pay, project: pay, until: "2026-12-10T09:00:00Z", reason: x}',
            "$.mutes[0]: both 'uid' and 'project'",
        ),
        (
            '{until: "2026-12-10T09:00:00Z", reason: x}',
            "$.mutes[0]: missing key 'uid' or 'project'",
        ),
        (
            '{uid: pay, until: "2026-12-10T09:00:00", reason: x}',
            "$.mutes[0].until: '2026-12-10T09:00:00' is not an RFC 3339 time with its offset",
        ),
        ('{uid: pay, until: "2026-12-10T09:00:00Z", reason: ""}', "$.mutes[0].reason: "),
        ('{uid: pay, until: "2026-12-10T09:00:00Z", reason: "a\\nb"}', "$.mutes[0].reason: "),
        ('{uid: pay, until: "2026-12-10T09:00:00Z", reason: x, room: [1]}', "unknown key 'room'"),
    ],
)
def test_what_the_schema_refuses_is_placed_at_the_mute(
    tmp_path: Path, mute: str, message: str
) -> None:
    config = load(tmp_path, f"  - {mute}\n")
    assert not config.valid and config.mutes == ()
    assert {d.line for d in config.diagnostics} == {20}
    assert any(message in str(d) for d in config.diagnostics), config.diagnostics


@pytest.mark.parametrize("until", ["2026-02-30T00:00:00Z", "2026-12-10T24:00:00Z"])
def test_an_until_no_calendar_holds_is_an_error_not_a_crash(tmp_path: Path, until: str) -> None:
    config = load(tmp_path, f'  - {{uid: pay, until: "{until}", reason: x}}\n')
    (diagnostic,) = config.diagnostics
    assert f"$.mutes[0].until: {until} is no time a calendar holds:" in str(diagnostic)


def test_an_unquoted_until_is_the_yaml_trap_told_with_the_fix(tmp_path: Path) -> None:
    config = load(tmp_path, "  - {uid: pay, until: 2026-12-10T09:00:00Z, reason: x}\n")
    assert 'quote it ("2026-12-10T09:00:00Z")' in str(config.diagnostics[0])


def test_a_past_mute_is_an_error_or_with_leave_a_warning(tmp_path: Path) -> None:
    mute = '  - {uid: pay, until: "2026-12-03T11:59:59Z", reason: x}\n'
    refused = load(tmp_path / "a", mute)
    assert said(refused) == [
        "20:23: error: $.mutes[0].until: 2026-12-03T11:59:59Z is past (now "
        "2026-12-03T12:00:00Z): this mute has ended and mutes nothing; remove it "
        "(check an old commit with --allow-expired-mutes)"
    ]
    allowed = load(tmp_path / "b", mute, replace(REACH, expired_mutes="warning"))
    assert allowed.valid
    assert [d.severity for d in allowed.diagnostics] == ["warning"]
    assert allowed.mutes[0].active(NOW) is False


def test_a_mute_past_max_mute_is_an_error_even_where_expired_ones_warn(tmp_path: Path) -> None:
    reach = replace(REACH, expired_mutes="warning", max_mute=12 * 3600)
    config = load(tmp_path, '  - {uid: pay, until: "2026-12-04T00:00:01Z", reason: x}\n', reach)
    assert said(config) == [
        "20:23: error: $.mutes[0].until: 2026-12-04T00:00:01Z is 12 hours from now; a mute "
        "may last at most 12 hours (the operator's --max-mute), so that a forgotten one "
        "cannot hide a room for ever"
    ]
    assert load(
        tmp_path / "b", '  - {uid: pay, until: "2026-12-04T00:00:00Z", reason: x}\n', reach
    ).valid


def test_the_default_bound_is_thirty_days_on_the_wall_clock(tmp_path: Path) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 29 * 86400))
    late = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 31 * 86400))
    assert load(tmp_path / "a", f'  - {{uid: pay, until: "{soon}", reason: x}}\n', Reach()).valid
    assert not load(
        tmp_path / "b", f'  - {{uid: pay, until: "{late}", reason: x}}\n', Reach()
    ).valid


def test_what_a_mute_names_must_be_in_the_set(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '  - {uid: nope, until: "2026-12-10T09:00:00Z", reason: x}\n'
        '  - {project: nope, until: "2026-12-10T09:00:00Z", reason: x}\n'
        '  - {uid: pay, rooms: [1234567, war-room], until: "2026-12-10T09:00:00Z", reason: x}\n'
        '  - {project: ops, rooms: [7654321, "1234567"], until: "2026-12-10T09:00:00Z",'
        " reason: x}\n",
    )
    assert said(config) == [
        "20:11: error: $.mutes[0].uid: no integration has uid 'nope'",
        "21:15: error: $.mutes[1].project: no integration serves project 'nope'",
        "22:33: error: $.mutes[2].rooms[1]: room war-room is not a room of integration 'pay'",
        "23:37: error: $.mutes[3].rooms[1]: room 1234567 is not a room of the integrations "
        "of project 'ops'",
    ]
    assert config.mutes == ()


def test_a_mute_may_name_an_integration_of_another_file(tmp_path: Path) -> None:
    other = ("teams/other.yaml", minimal("far"))
    config = load(
        tmp_path, '  - {uid: far, until: "2026-12-10T09:00:00Z", reason: x}\n', REACH, other
    )
    assert config.valid, said(config)


def test_a_regex_that_needs_backtracking_is_refused_as_an_actions_is(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '  - {uid: pay, until: "2026-12-10T09:00:00Z", reason: x,\n'
        '     match: [{attribute: a, regex: "^(a+)+$"}, {attribute: b, regex: "(x)\\\\1"}]}\n',
    )
    (diagnostic,) = config.diagnostics
    assert "$.mutes[0].match[1].regex: invalid regex:" in str(diagnostic)
    assert "backreferences" in str(diagnostic)


def test_ten_thousand_mutes_are_one_bound_and_cost_a_linear_check(tmp_path: Path) -> None:
    mute = (
        '  - {uid: pay, until: "2026-12-10T09:00:00Z", reason: x,'
        ' match: [{attribute: a, regex: "(?=x)"}]}\n'
    )
    started = time.process_time()
    config = load(tmp_path, mute * 10_000)
    spent = time.process_time() - started
    messages = [d.message for d in config.diagnostics]
    assert not config.valid and config.mutes == ()
    assert messages == [messages[0]] and "100" in messages[0], messages
    assert not any("invalid regex" in m for m in messages)  # each regex is spared
    assert spent < 5.0


def test_a_reason_with_escapes_is_kept_and_shown_escaped(tmp_path: Path) -> None:
    config = load(
        tmp_path, '  - {uid: pay, until: "2026-12-10T09:00:00Z", reason: "a\\e[2Jb\\x9b"}\n'
    )
    assert config.valid, said(config)
    (mute,) = config.mutes
    assert mute.reason == "a\x1b[2Jb\x9b"
    assert mute.describe().endswith(" until 2026-12-10T09:00:00Z (a\\x1b[2Jb\\x9b)")
    assert printable(mute.describe()) == mute.describe()


def test_activity_is_now_before_until() -> None:
    mute = Mute("f.yaml", 0, NOW, "x", uid="pay")
    assert mute.active(NOW - 0.001) and not mute.active(NOW)


def test_the_daemons_loader_keeps_the_mutes_of_the_files_it_reads_again(tmp_path: Path) -> None:
    """One file changed among others: its mutes come and go, and what they name is
    judged against every file, read or kept."""
    root = write_files(tmp_path / "config", ("a.yaml", minimal("a")), ("b.yaml", minimal("b")))
    loader = ConfigLoader(Options(reach=REACH), wall=later_wall)
    assert loader.load([root]).mutes == ()
    mute = 'mutes:\n  - {uid: c, until: "2026-12-10T09:00:00Z", reason: x}\n'
    write_files(root, ("a.yaml", minimal("a") + mute))
    refused = loader.load([root], changed=["a.yaml"])
    assert [d.message for d in refused.diagnostics] == ["no integration has uid 'c'"]
    write_files(root, ("b.yaml", minimal("b") + minimal("c").split("integrations:\n")[1]))
    (kept,) = loader.load([root], changed=["b.yaml"]).mutes
    assert (kept.name, kept.uid) == ("a.yaml mutes[0]", "c")
    write_files(root, ("a.yaml", minimal("a")))
    assert loader.load([root], changed=["a.yaml"]).mutes == ()
