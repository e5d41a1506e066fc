"""Rules beyond the schema: uniqueness across files, regexes, rooms, tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncd.config.configset import ConfigSet
from tests.support.configs import errors, minimal


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


def test_plain_http_endpoint_warns_unless_local(check: Callable[..., ConfigSet]) -> None:
    remote = minimal("a").replace("https://hipchat.example.com", "http://hipchat.example.com")
    local = minimal("b").replace("https://hipchat.example.com", "http://127.0.0.1:8080")
    config = check(("a.yaml", remote), ("b.yaml", local))
    assert config.valid
    assert [(d.file, d.severity, d.line) for d in config.diagnostics] == [("a.yaml", "warning", 7)]


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
