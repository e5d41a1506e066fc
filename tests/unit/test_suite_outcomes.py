"""What a rule suite calls an outcome: ingest's reasons read as kinds, an
expectation matched in the details it gives, and a timeline's rows."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from syncd.events.routing import DISABLED, NOT_NEW, Why
from syncd.events.suite import SUITE, clock_text, describe, matches
from syncd.events.timeline import KINDS, Outcome, kind_of
from tests.support.paths import ROOT
from tests.support.schemas import schema_properties


def test_the_schema_offers_exactly_the_kinds_a_timeline_reports() -> None:
    """A new kind (a mute's) is added to both, or a suite could not expect it."""
    expect = SUITE.document()["properties"]["cases"]["items"]["properties"]["timeline"]["items"]
    outcome = expect["properties"]["expect"]["additionalProperties"]
    for node in (outcome, outcome["items"]):
        written = re.fullmatch(r"\^\((.*)\)\$", node["pattern"])
        assert written is not None
        assert tuple(written[1].split("|")) == KINDS
    assert set(outcome["properties"]) <= set(KINDS)


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("queued for 2 room(s)", Outcome("send")),
        ("queued for 1 room(s), held while stopped", Outcome("send")),
        (str(Why("u", "throttled", 1_800_000_000.0)).split(": ", 1)[1], Outcome("throttled")),
        ("throttled", Outcome("throttled")),  # as a request of many events counts it
        ("filtered by actions[12]", Outcome("filtered", rule=12)),
        (NOT_NEW, Outcome("seen_before")),
        (DISABLED, Outcome("disabled")),
        ("skipped: its actions failed (see the log)", Outcome("skipped")),
        ("skipped: routing failed (see the log)", Outcome("skipped")),
        ("muted by teams/pay.yaml mutes[0]", Outcome("muted")),  # as a request counts it
        ("queued for 1 room(s), 1 muted by teams/pay.yaml mutes[0]", Outcome("send")),
        ("a reason not known", Outcome("a reason not known")),
    ],
)
def test_each_reason_ingest_gives_is_a_kind(reason: str, outcome: Outcome) -> None:
    assert kind_of(reason) == outcome


SENT = Outcome(
    "send",
    rooms=("1", "war-room"),
    title="New error in shop: KeyError at 2026-01-01T00:00:45Z",
    mentions=("@payments",),
    more="and 2 more new error groups since 2026-01-01T00:00:10Z",
)


@pytest.mark.parametrize(
    "expected",
    [
        Outcome("send"),
        Outcome("send", rooms=("war-room", "1")),
        Outcome("send", title="New error in shop: KeyError"),
        Outcome("send", title="New error in shop: KeyError at 2026-01-01T00:00:45Z"),
        Outcome("send", mentions=("@payments",)),
        Outcome("send", more="and 2 more new error groups"),
    ],
)
def test_an_expectation_checks_only_the_details_it_gives(expected: Outcome) -> None:
    assert matches(expected, SENT)


@pytest.mark.parametrize(
    "expected",
    [
        Outcome("digest"),
        Outcome("send", rooms=("1",)),
        Outcome("send", title="New error in shop: Key"),  # not up to a space
        Outcome("send", title="New error in shop: KeyError at 2026-01-01T00:00:46Z"),
        Outcome("send", mentions=()),
        Outcome("send", mentions=("@payments", "@all")),
        Outcome("send", more="and 2 more new error group"),
        Outcome("send", more="and 3 more"),
    ],
)
def test_a_detail_that_differs_fails(expected: Outcome) -> None:
    assert not matches(expected, SENT)


def test_a_filter_is_matched_by_its_action_when_one_is_given() -> None:
    found = Outcome("filtered", rule=1)
    assert matches(Outcome("filtered"), found)
    assert matches(Outcome("filtered", rule=1), found)
    assert not matches(Outcome("filtered", rule=0), found)
    assert not matches(Outcome("send", more="x"), Outcome("send"))


def test_rows_name_the_details_json_quoted_and_escaped() -> None:
    assert describe(Outcome("filtered", rule=3)) == "filtered by actions[3]"
    assert describe(Outcome("send", rooms=(), mentions=())) == "send"
    wanted = Outcome("send", mentions=())
    assert describe(wanted, wanted) == "send mentions=[]"
    assert describe(SENT, Outcome("send", rooms=("1",))) == 'send rooms=["1", "war-room"]'
    assert describe(Outcome("send"), Outcome("send", more="x")) == "send more=null"
    hostile = describe(Outcome("send", title='a\x1b[2J"\u2028b'))
    assert hostile == 'send title="a\\u001b[2J\\"\\u2028b"'


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (90, "1m30s"),
        (300, "5m"),
        (5400, "1h30m"),
        (86401, "1d1s"),
        (1.5, "1.5s"),
    ],
)
def test_times_read_as_a_step_writes_them(seconds: float, text: str) -> None:
    assert clock_text(seconds) == text


def test_the_suite_schema_is_draft_2020_12_and_says_what_each_key_is() -> None:
    document = json.loads((ROOT / "schemas" / SUITE.name).read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == "urn:syncd:schema:suite:1"
    jsonschema.Draft202012Validator.check_schema(document)
    assert SUITE.document() == document
    props = list(schema_properties(document))
    assert len(props) >= 20
    assert [p for p, sub in props if not (sub.get("title") and sub.get("description"))] == []


def test_the_shipped_suite_is_valid_to_jsonschema_too() -> None:
    """An editor or another checker reads the file as syncd does."""
    data = yaml.safe_load((ROOT / "suites" / "integrations.suite.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(SUITE.document()).iter_errors(data)) == []
    assert SUITE.certainly_valid(data)
