"""The shipped schemas, and schema errors turned into positioned diagnostics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from syncd.config.configset import ConfigSet
from syncd.config.model import parse_duration
from syncd.config.patterns import compile_pattern
from syncd.config.schema import INTEGRATIONS
from syncd.events.validation import EVENT
from syncd.schemacheck import Schema
from tests.support.configs import errors, minimal
from tests.support.paths import ROOT
from tests.support.schemas import schema_properties


@pytest.mark.parametrize("schema", [INTEGRATIONS, EVENT])
def test_schema_is_valid_draft_2020_12(schema: Schema) -> None:
    document = json.loads((ROOT / "schemas" / schema.name).read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"]
    jsonschema.Draft202012Validator.check_schema(document)
    assert schema.document() == document


@pytest.mark.parametrize("schema", [INTEGRATIONS, EVENT])
def test_every_property_has_title_and_description(schema: Schema) -> None:
    props = list(schema_properties(schema.document()))
    assert len(props) >= 9
    missing = [p for p, sub in props if not (sub.get("title") and sub.get("description"))]
    assert missing == []


def one(config: ConfigSet) -> str:
    found = errors(config)
    assert len(found) == 1, [str(d) for d in found]
    return str(found[0])


def test_unknown_key_points_at_the_key_and_suggests(check: Callable[..., ConfigSet]) -> None:
    text = minimal().replace("      rooms:", "      colour: red\n      rooms:")
    assert one(check(("a.yaml", text))) == (
        "a.yaml:8:7: error: $.integrations[0].hipchat.colour: unknown key 'colour' "
        "(did you mean 'color'?)"
    )


def test_missing_key_points_at_the_mapping(check: Callable[..., ConfigSet]) -> None:
    text = minimal().replace("    name: checkout-ops\n", "")
    assert one(check(("a.yaml", text))) == (
        "a.yaml:3:5: error: $.integrations[0]: missing key 'name'"
    )


def test_mention_needs_target(check: Callable[..., ConfigSet]) -> None:
    text = minimal() + "    actions:\n      - {action: mention, attribute: team, regex: x}\n"
    assert one(check(("a.yaml", text))) == (
        "a.yaml:12:9: error: $.integrations[0].actions[0]: missing key 'target': "
        "a mention action needs a target, like @payments"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "https://hipchat.example.com",
            "hipchat.example.com",
            "a.yaml:7:17: error: $.integrations[0].hipchat.endpoint: 'hipchat.example.com' is "
            "not an http(s) URL without credentials, query or fragment, "
            "like https://hipchat.example.com",
        ),
        (
            "{env: HIPCHAT_TOKEN}",
            "{env: 1BAD}",
            "a.yaml:10:24: error: $.integrations[0].hipchat.rooms[0].token.env: '1BAD' is not "
            "an environment variable name (letters, digits, underscore)",
        ),
        (
            "{env: HIPCHAT_TOKEN}",
            "{env: A, file: /b}",
            "a.yaml:10:18: error: $.integrations[0].hipchat.rooms[0].token: must have exactly "
            "one key of: env, file, credential",
        ),
        (
            "{env: HIPCHAT_TOKEN}",
            "[a]",
            "a.yaml:10:18: error: $.integrations[0].hipchat.rooms[0].token: expected a mapping "
            'or a string, got a list (["a"])',
        ),
        (
            "- id: 1234567",
            '- id: ""',
            "a.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: must not be empty",
        ),
        (
            "uid: checkout-ops",
            "uid: checkout ops",
            "a.yaml:3:10: error: $.integrations[0].uid: 'checkout ops' is not 1-100 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit",
        ),
    ],
)
def test_value_errors(check: Callable[..., ConfigSet], old: str, new: str, expected: str) -> None:
    assert one(check(("a.yaml", minimal().replace(old, new, 1)))) == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    trigger:\n      frequency: 5 minutes\n",
            "a.yaml:12:18: error: $.integrations[0].trigger.frequency: '5 minutes' is not a "
            "duration like 30s, 5m, 1h30m, 1d or whole seconds",
        ),
        (
            "    trigger:\n      threshold: 0\n",
            "a.yaml:12:18: error: $.integrations[0].trigger.threshold: 0 is less than the "
            "minimum 1",
        ),
        (
            "    state: paused\n",
            "a.yaml:11:12: error: $.integrations[0].state: 'paused' is not one of: enabled, "
            "disabled, stopped",
        ),
        (
            "    display:\n      attribute_list: [a, a]\n",
            "a.yaml:12:23: error: $.integrations[0].display.attribute_list: has duplicate "
            'items: ["a", "a"]',
        ),
    ],
)
def test_more_value_errors(check: Callable[..., ConfigSet], extra: str, expected: str) -> None:
    assert one(check(("a.yaml", minimal() + extra))) == expected


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            "frequency: 3000000d",
            "'3000000d' is longer than 7 days (604800 seconds), the most allowed",
        ),
        ("frequency: 7d1s", "'7d1s' is longer than 7 days (604800 seconds), the most allowed"),
        ("frequency: 168h1m", "'168h1m' is longer than 7 days (604800 seconds), the most allowed"),
        (
            "frequency: " + "9" * 5000 + "s",
            "the duration is longer than 7 days (604800 seconds), the most allowed",
        ),
        (
            "frequency: 604801",
            "604801 is more than the maximum, 7 days (604800 seconds, 7d)",
        ),
        (
            "{frequency: 1m, threshold: 1000001}",
            "1000001 is more than the maximum, 1000000",
        ),
    ],
)
def test_frequency_and_threshold_are_bounded_at_the_value(
    check: Callable[..., ConfigSet], trigger: str, expected: str
) -> None:
    """A frequency of 3,000,000 days overflowed a date at ingest: at most a week, and a
    threshold at most a million, written as text or as a number."""
    flow = trigger.startswith("{")
    text = minimal() + (f"    trigger: {trigger}\n" if flow else f"    trigger:\n      {trigger}\n")
    out = one(check(("a.yaml", text)))
    assert out.split(": ", 3)[-1] == expected
    assert ".trigger." in out


@pytest.mark.parametrize("frequency", ["7d", "604800", "6d23h59m60s", "0", "10080m"])
def test_a_frequency_up_to_a_week_is_valid(check: Callable[..., ConfigSet], frequency: str) -> None:
    text = minimal() + f"    trigger: {{frequency: {frequency}, threshold: 1000000}}\n"
    config = check(("a.yaml", text))
    assert config.valid, [str(d) for d in config.diagnostics]
    written = int(frequency) if frequency.isdigit() else frequency
    assert config.integrations[0].trigger.frequency == parse_duration(written) <= 7 * 86400


def test_sender_label_is_0_to_64_characters(check: Callable[..., ConfigSet]) -> None:
    def with_from(value: str) -> str:
        return minimal().replace("      rooms:", f"      from: '{value}'\n      rooms:")

    assert check(("a.yaml", with_from(""))).valid
    assert check(("a.yaml", with_from("x" * 64))).valid
    assert one(check(("a.yaml", with_from("x" * 65)))) == (
        "a.yaml:8:13: error: $.integrations[0].hipchat.from: is 65 characters long; "
        "at most 64 allowed"
    )


def test_every_error_is_reported_at_once(check: Callable[..., ConfigSet]) -> None:
    text = (
        minimal()
        .replace("state", "x")
        .replace("https://hipchat.example.com", "ftp://x")
        .replace("1234567", "0")
        + "    colour: red\n    trigger: {event: sometimes}\n"
    )
    found = [(d.line, d.path) for d in errors(check(("a.yaml", text)))]
    assert found == [
        (7, "$.integrations[0].hipchat.endpoint"),
        (9, "$.integrations[0].hipchat.rooms[0].id"),
        (11, "$.integrations[0].colour"),
        (12, "$.integrations[0].trigger.event"),
    ]


def test_an_integration_has_at_most_100_rooms(check: Callable[..., ConfigSet]) -> None:
    rooms = "".join(f"        - {{id: {n}, token: {{env: HIPCHAT_T}}}}\n" for n in range(1, 102))
    text = minimal("a").split("      rooms:\n")[0] + "      rooms:\n" + rooms
    (problem,) = errors(check(("a.yaml", text)))
    assert problem.path == "$.integrations[0].hipchat.rooms"
    assert "100" in problem.message


def _action_property(name: str) -> dict[str, Any]:
    document = INTEGRATIONS.document()
    action = document["properties"]["integrations"]["items"]["properties"]["actions"]["items"]
    prop: dict[str, Any] = action["properties"][name]
    return prop


def test_the_schema_says_a_mention_never_decides_whether_to_notify() -> None:
    """submit and filter decide, the last match winning; a mention only adds a target."""
    said = _action_property("action")["description"]
    assert "notify and mention" not in said
    assert "never decides" in said and "last" in said


def test_the_schema_says_a_regex_is_searched_unanchored() -> None:
    said = _action_property("regex")["description"]
    assert "searched anywhere" in said and "^nyc$" in said
    assert compile_pattern("nyc").search("nyc2") is not None  # what the words promise
