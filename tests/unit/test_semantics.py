"""Rules beyond the schema: uniqueness across files, regexes, rooms, tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.diagnostics import MAX_FILE_DIAGNOSTICS
from syncd.config.reach import Reach
from syncd.config.semantics import Options
from tests.support.configs import errors, minimal, write_files


def test_a_duplicate_uid_is_reported_in_every_file_naming_the_others(
    check: Callable[..., ConfigSet],
) -> None:
    config = check(
        ("a.yaml", minimal("ops")),
        ("sub/b.yaml", minimal("ops").replace("name: ops", "name: other")),
        ("sub/c.yaml", minimal("ops").replace("name: ops", "name: third")),
    )
    assert [str(d) for d in errors(config)] == [
        "a.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'ops'; "
        "also defined at sub/b.yaml:3:10, sub/c.yaml:3:10",
        "sub/b.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'ops'; "
        "also defined at a.yaml:3:10, sub/c.yaml:3:10",
        "sub/c.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'ops'; "
        "also defined at a.yaml:3:10, sub/b.yaml:3:10",
    ]


def test_duplicate_name_within_a_project(check: Callable[..., ConfigSet]) -> None:
    second = minimal("two").replace("name: two", "name: one")
    config = check(("a.yaml", minimal("one") + "\n".join(second.splitlines()[2:]) + "\n"))
    assert [str(d) for d in errors(config)] == [
        "a.yaml:5:11: error: $.integrations[0].name: duplicate name 'one' in project "
        "'checkout'; also defined at a.yaml:13:11",
        "a.yaml:13:11: error: $.integrations[1].name: duplicate name 'one' in project "
        "'checkout'; also defined at a.yaml:5:11",
    ]


def test_same_name_in_another_project_is_fine(check: Callable[..., ConfigSet]) -> None:
    other = minimal("two").replace("name: two", "name: one").replace("checkout", "search")
    assert check(("a.yaml", minimal("one")), ("b.yaml", other)).valid


def test_regex_must_compile(check: Callable[..., ConfigSet]) -> None:
    text = minimal() + '    actions:\n      - {action: filter, attribute: "*", regex: "[a-"}\n'
    assert [str(d) for d in errors(check(("a.yaml", text)))] == [
        "a.yaml:12:49: error: $.integrations[0].actions[0].regex: invalid regex: missing ]: [a-"
    ]


def test_room_listed_twice(check: Callable[..., ConfigSet]) -> None:
    text = minimal() + "        - id: '1234567'\n          token: {env: HIPCHAT_OTHER}\n"
    assert [str(d) for d in errors(check(("a.yaml", text)))] == [
        "a.yaml:11:15: error: $.integrations[0].hipchat.rooms[1].id: room 1234567 is listed "
        "twice (first as rooms[0])"
    ]


def test_plaintext_token_is_a_warning_without_the_token(check: Callable[..., ConfigSet]) -> None:
    secret = "s3cr3t-room-token-value"
    config = check(("a.yaml", minimal().replace("{env: HIPCHAT_TOKEN}", secret)))
    assert config.valid
    (warning,) = config.diagnostics
    assert warning.severity == "warning"
    assert (warning.line, warning.col) == (10, 18)
    assert "plaintext token" in warning.message
    assert secret not in str(warning)
    assert secret not in repr(config.integrations)


def test_plain_http_endpoint_is_an_error_loopback_included(
    check: Callable[..., ConfigSet],
) -> None:
    remote = minimal("a").replace("https://hipchat.example.com", "http://hipchat.example.com")
    local = minimal("b").replace("https://hipchat.example.com", "http://127.0.0.1:8080")
    config = check(("a.yaml", remote), ("b.yaml", local))
    assert [(d.file, d.severity, d.line, d.col) for d in config.diagnostics] == [
        ("a.yaml", "error", 7, 17),
        ("b.yaml", "error", 7, 17),
    ]
    assert "--allow-http-endpoint" in config.diagnostics[0].message


def test_allowed_plain_http_endpoint_warns_unless_local(tmp_path: Path) -> None:
    remote = minimal("a").replace("https://hipchat.example.com", "http://hipchat.example.com")
    local = minimal("b").replace("https://hipchat.example.com", "http://127.0.0.1:8080")
    write_files(tmp_path, ("a.yaml", remote), ("b.yaml", local))
    config = load_config_set([tmp_path], Options(reach=Reach(allow_http=True)))
    assert config.valid
    assert [(Path(d.file).name, d.severity, d.line) for d in config.diagnostics] == [
        ("a.yaml", "warning", 7)
    ]


def test_valid_set_builds_the_model(check: Callable[..., ConfigSet]) -> None:
    config = check(("a.yaml", minimal("a") + "    trigger: {frequency: 1h30m}\n"))
    (integration,) = config.integrations
    assert integration.uid == "a"
    assert integration.trigger.frequency == 5400
    assert integration.hipchat.rooms[0].id == "1234567"
    assert str(integration.hipchat.rooms[0].token) == "{env: HIPCHAT_TOKEN}"
    assert str(integration.source) == "a.yaml:3:5"


def test_invalid_set_builds_nothing(check: Callable[..., ConfigSet]) -> None:
    config = check(("a.yaml", minimal("a")), ("b.yaml", "version: 1\nintegrations: [{}]\n"))
    assert not config.valid
    assert config.integrations == ()


@pytest.mark.parametrize(
    "written", ["https://hipchat.example.com/v2", "https://hipchat.example.com/v2/"]
)
def test_an_endpoint_with_the_api_version_is_normalised_with_a_warning(
    check: Callable[..., ConfigSet], written: str
) -> None:
    config = check(("a.yaml", minimal().replace("https://hipchat.example.com", written)))
    assert config.valid
    (warning,) = config.diagnostics
    assert str(warning) == (
        "a.yaml:7:17: warning: $.integrations[0].hipchat.endpoint: the API version is added "
        "by syncd; https://hipchat.example.com is used"
    )
    assert config.integrations[0].hipchat.endpoint == "https://hipchat.example.com"


def test_an_endpoint_written_with_an_upper_case_v2_is_normalised_like_v2(
    check: Callable[..., ConfigSet],
) -> None:
    written = "https://hipchat.example.com/V2"
    config = check(("a.yaml", minimal().replace("https://hipchat.example.com", written)))
    assert config.valid
    assert [str(d) for d in config.diagnostics] == [
        "a.yaml:7:17: warning: $.integrations[0].hipchat.endpoint: the API version is added "
        "by syncd; https://hipchat.example.com is used"
    ]
    assert config.integrations[0].hipchat.endpoint == "https://hipchat.example.com"


@pytest.mark.parametrize(
    ("written", "root"),
    [
        ("https://hipchat.example.com/v1", "https://hipchat.example.com"),
        ("https://hipchat.example.com/v2/room", "https://hipchat.example.com"),
        ("https://hipchat.example.com/v2/v2", "https://hipchat.example.com"),
        ("https://hipchat.example.com/V2/room/", "https://hipchat.example.com"),
        ("https://hipchat.example.com/v2/room/123/notification", "https://hipchat.example.com"),
        ("https://hipchat.example.com/hipchat/v2/room", "https://hipchat.example.com/hipchat"),
    ],
)
def test_an_endpoint_that_names_part_of_the_api_is_an_error_with_the_fix(
    check: Callable[..., ConfigSet], written: str, root: str
) -> None:
    config = check(("a.yaml", minimal().replace("https://hipchat.example.com", written)))
    (error,) = config.diagnostics
    assert (error.severity, error.line, error.col) == ("error", 7, 17)
    assert error.message.endswith(f"did you mean {root}?")
    assert "syncd adds /v2" in error.message


@pytest.mark.parametrize(
    "written", ["https://[hipchat.example.com", "https://hipchat.example.com:99999", "https://h:x"]
)
def test_an_endpoint_no_client_can_parse_is_an_error_not_a_crash(
    check: Callable[..., ConfigSet], written: str
) -> None:
    config = check(("a.yaml", minimal().replace("https://hipchat.example.com", written)))
    (error,) = config.diagnostics
    assert (error.severity, error.line, error.col) == ("error", 7, 17)
    assert "is not a URL a client can send to" in error.message


@pytest.mark.parametrize("frequency", ["", "      frequency: 0s\n"])
def test_a_threshold_without_a_frequency_is_a_warning_at_the_threshold(
    check: Callable[..., ConfigSet], frequency: str
) -> None:
    text = minimal() + "    trigger:\n      event: trace\n" + frequency + "      threshold: 5\n"
    line = 13 + bool(frequency)
    config = check(("a.yaml", text))
    assert config.valid
    assert [str(d) for d in config.diagnostics] == [
        f"a.yaml:{line}:18: warning: $.integrations[0].trigger.threshold: threshold has no effect "
        "without frequency: it counts the events aggregated within a frequency window, and "
        "without one every event that may notify does so at once; add a frequency or "
        "remove the threshold"
    ]


def test_a_threshold_with_a_frequency_is_fine(check: Callable[..., ConfigSet]) -> None:
    text = minimal() + "    trigger: {frequency: 5m, threshold: 5}\n"
    assert check(("a.yaml", text)).diagnostics == ()


def test_a_card_with_mentions_is_a_warning_naming_both_lines(
    check: Callable[..., ConfigSet],
) -> None:
    text = (
        minimal().replace("      rooms:", "      card: true\n      rooms:")
        + "    actions:\n"
        + '      - {action: submit, attribute: "*", regex: ".*"}\n'
        + '      - {action: mention, attribute: team, regex: "^pay$", target: "@pay"}\n'
        + '      - {action: mention, attribute: team, regex: "^ops$", target: "@ops"}\n'
    )
    config = check(("a.yaml", text))
    assert config.valid
    assert [str(d) for d in config.diagnostics] == [
        "a.yaml:8:13: warning: $.integrations[0].hipchat.card: clients that show cards show "
        "the card instead of the message, and so none of its mentions (the first from the "
        "mention action at line 14); set card: false where mentions must be seen"
    ]


def test_a_card_without_mentions_or_mentions_without_a_card_are_fine(
    check: Callable[..., ConfigSet],
) -> None:
    mention = '    actions:\n      - {action: mention, attribute: t, regex: x, target: "@a"}\n'
    card = minimal("a").replace("      rooms:", "      card: true\n      rooms:")
    unset = minimal("b").replace("      rooms:", "      card: false\n      rooms:") + mention
    config = check(("a.yaml", card), ("b.yaml", unset), ("c.yaml", minimal("c") + mention))
    assert config.diagnostics == ()


def test_many_copies_name_a_few_others_each_so_the_output_grows_linearly(
    check: Callable[..., ConfigSet],
) -> None:
    config = check(
        *((f"f{n}.yaml", minimal("ops").replace("name: ops", f"name: n{n}")) for n in range(6))
    )
    assert [str(d) for d in errors(config)][:2] == [
        "f0.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'ops' (6 places); also "
        "defined at f1.yaml:3:10, f2.yaml:3:10, f3.yaml:3:10 and 2 more",
        "f1.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'ops' (6 places); also "
        "defined at f0.yaml:3:10, f2.yaml:3:10, f3.yaml:3:10 and 2 more",
    ]
    assert len(errors(config)) == 6


def test_a_thousand_copies_in_one_file_cost_a_short_line_each_up_to_the_file_cap(
    check: Callable[..., ConfigSet],
) -> None:
    item = "\n".join(minimal("ops").splitlines()[2:]) + "\n"
    items = [item.replace("name: ops", f"name: n{n}") for n in range(1000)]
    config = check(("a.yaml", "version: 1\nintegrations:\n" + "".join(items)))
    found = errors(config)
    assert len(found) == MAX_FILE_DIAGNOSTICS + 1
    assert max(len(str(d)) for d in found) < 200
    assert config.found.errors == 1000
    assert found[-1].message.startswith("and 900 more problems in this file (900 errors)")


def _with_actions(count: int, regex: str = "^x$") -> str:
    action = f'      - {{action: submit, attribute: env, regex: "{regex}"}}\n'
    return minimal() + "    state: disabled\n    actions:\n" + action * count


def test_an_integrations_actions_are_bounded_in_number(check: Callable[..., ConfigSet]) -> None:
    """Every event is matched against every action: a disabled integration's 133 KB of
    actions cut ingest from 14,191 to 38 events a second."""
    assert check(("a.yaml", _with_actions(100))).valid
    out = [str(d) for d in errors(check(("a.yaml", _with_actions(101))))]
    assert out == [
        "a.yaml:12:5: error: $.integrations[0].actions: 101 actions; an integration may "
        "have at most 100 (the operator's --max-actions)"
    ]


def test_an_integrations_regexes_are_bounded_in_size(check: Callable[..., ConfigSet]) -> None:
    regex = "a" * 1024
    assert check(("a.yaml", _with_actions(64, regex))).valid
    out = [str(d) for d in errors(check(("a.yaml", _with_actions(65, regex))))]
    assert out == [
        "a.yaml:12:5: error: $.integrations[0].actions: the regexes of these actions total "
        "66,560 bytes; an integration may have at most 65,536 (the operator's "
        "--max-pattern-bytes)"
    ]


def test_the_operator_sets_the_action_bounds(tmp_path: Path) -> None:
    write_files(tmp_path, ("a.yaml", _with_actions(3, "abcd")))
    assert load_config_set(
        [tmp_path], Options(reach=Reach(max_actions=3, max_pattern_bytes=12))
    ).valid
    tight = load_config_set([tmp_path], Options(reach=Reach(max_actions=2, max_pattern_bytes=11)))
    assert [d.message for d in errors(tight)] == [
        "3 actions; an integration may have at most 2 (the operator's --max-actions)",
        "the regexes of these actions total 12 bytes; an integration may have at most 11 "
        "(the operator's --max-pattern-bytes)",
    ]
