"""A request of invalid events is refused for about what a valid one of the
same size costs to check, however many problems it holds.

A 0.87 MB POST of 1,000 events with 99 bad classifiers each was answered 400
after 99,000 errors were built, 98,900 of them only to be counted: two to four
times the CPU of taking a valid request of that size. Now the first 100
problems are listed, each with its event's index and field path, and past them
only the events that have problems are counted, by the compiled check's
verdict, which builds no error. How many errors are built is counted here, not
timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema.exceptions
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import schemacheck
from syncd.events.validation import EVENT, MAX_LISTED, Problem, check_events, validate_events
from tests.support.events import event

pytestmark = pytest.mark.unit

LONE = "\ud800"  # a lone surrogate: the compiled side refuses the event, jsonschema decides


class Built:
    """Validation errors built by jsonschema and by jsonschema-rs."""

    def __init__(self) -> None:
        self.errors = 0


class Counting:
    """A jsonschema-rs validator whose errors are counted as they are built."""

    def __init__(self, inner: Any, built: Built) -> None:
        self.inner = inner
        self.built = built

    def is_valid(self, document: object) -> bool:
        return bool(self.inner.is_valid(document))

    def iter_errors(self, document: object) -> Iterator[Any]:
        for error in self.inner.iter_errors(document):
            self.built.errors += 1
            yield error

    def evaluate(self, document: object) -> Any:
        evaluation = self.inner.evaluate(document)
        self.built.errors += len(evaluation.errors())
        return evaluation

    def validate(self, document: object) -> None:
        try:
            self.inner.validate(document)
        except jsonschema_rs.ValidationError:
            self.built.errors += 1
            raise


def clear_schema_caches() -> None:
    for value in vars(schemacheck).values():
        clear = getattr(value, "cache_clear", None)
        if clear is not None:
            clear()


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    """Every error either library builds from here on, counted: the schemas are
    compiled again, through a counting jsonschema-rs validator."""
    found = Built()
    real_for = jsonschema_rs.validator_for
    real_init = jsonschema.exceptions._Error.__init__

    def counted_init(self: Any, *args: Any, **kwargs: Any) -> None:
        found.errors += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(
        jsonschema_rs, "validator_for", lambda *a, **k: Counting(real_for(*a, **k), found)
    )
    monkeypatch.setattr(jsonschema.exceptions._Error, "__init__", counted_init)
    clear_schema_caches()
    yield found
    clear_schema_caches()


def bad_events(count: int, bad: int = 99) -> list[dict[str, Any]]:
    return [event("shop", f"fp-{n}", classifiers=[1] * bad) for n in range(count)]


def test_past_the_listed_problems_no_error_is_built_to_be_counted(built: Built) -> None:
    checked = check_events(bad_events(1000))
    assert len(checked.problems) == MAX_LISTED
    # Was 99,000: every problem built, 98,900 of them to be counted.
    assert built.errors <= MAX_LISTED + 1, built.errors


def test_the_refusal_names_the_first_problems_and_counts_the_events_that_have_them() -> None:
    checked = check_events(bad_events(1000))
    assert checked.problems[0] == Problem("$[0].classifiers[0]", "1 is not of type 'string'")
    assert checked.problems[98] == Problem("$[0].classifiers[98]", "1 is not of type 'string'")
    assert checked.problems[99] == Problem("$[1].classifiers[0]", "1 is not of type 'string'")
    assert (checked.invalid, checked.complete) == (1000, False)
    assert checked.summary == (
        "invalid event: 1,000 of 1,000 event(s) have problems; the first 100 problems "
        "are listed, the others not counted"
    )


def test_events_with_problems_are_counted_exactly_among_valid_ones(built: Built) -> None:
    sent = [
        event("shop", f"fp-{n}", classifiers=[1] * 60) if n % 3 == 0 else event("shop", "ok")
        for n in range(300)
    ]
    checked = check_events(sent)
    assert [p.path for p in checked.problems[59:61]] == [
        "$[0].classifiers[59]",
        "$[3].classifiers[0]",
    ]
    assert (len(checked.problems), checked.invalid, checked.complete) == (MAX_LISTED, 100, False)
    assert built.errors <= MAX_LISTED + 1, built.errors


def test_what_the_compiled_side_does_not_judge_jsonschema_counts(built: Built) -> None:
    """Past the listed problems, an event the compiled side leaves to jsonschema
    (a lone surrogate, a number written as a float) is counted by jsonschema's
    verdict, which stops at its first problem."""
    sent = [
        *bad_events(2, bad=60),
        event("shop", "valid", attributes={"a": f"x{LONE}y"}),
        event("shop", "invalid", attributes={"a": f"x{LONE}y"}, classifiers=[1] * 99),
        event("shop", "float", new_group=1.0),
    ]
    checked = check_events(sent)
    assert (len(checked.problems), checked.invalid, checked.complete) == (MAX_LISTED, 4, False)
    assert built.errors <= MAX_LISTED + 1 + 2, built.errors


def test_a_control_character_is_judged_by_the_compiled_side(built: Built) -> None:
    """The event schema's one regex is plain text, so a control character is only
    a character to both sides: such events are judged without jsonschema, valid
    or not, and cost what plain ones do."""
    odd = {"attributes": {f"k{n}": f"v\x1c{n}" for n in range(60)}}
    assert EVENT.verdict(event("shop", "f", **odd)) is True
    assert EVENT.verdict(event("shop", "f", **odd, href="x")) is False
    checked = check_events([event("shop", f"f{n}", **odd, href="x") for n in range(300)])
    assert (len(checked.problems), checked.invalid, checked.complete) == (100, 300, False)
    assert built.errors <= MAX_LISTED + 1, built.errors


def test_a_request_of_at_most_100_problems_lists_them_all() -> None:
    checked = check_events([*bad_events(1, bad=60), *bad_events(1, bad=40)])
    assert (len(checked.problems), checked.invalid, checked.complete) == (100, 2, True)
    assert checked.summary == "invalid event"
    one_more = check_events([*bad_events(1, bad=60), *bad_events(1, bad=41)])
    assert (len(one_more.problems), one_more.invalid, one_more.complete) == (100, 2, False)


def test_one_event_of_many_problems_is_named_without_an_index() -> None:
    checked = check_events(event("shop", "f", classifiers=[1] * 150))
    assert checked.problems[0] == Problem("$.classifiers[0]", "1 is not of type 'string'")
    assert checked.problems[99].path == "$.classifiers[99]"
    assert (len(checked.problems), checked.invalid, checked.complete) == (100, 1, False)
    assert checked.summary.startswith("invalid event: 1 of 1 event(s) have problems;")


def test_a_hostile_value_is_not_echoed_raw_nor_whole() -> None:
    hostile = "\x1b[2J<script>" + "x" * 10_000
    checked = check_events([event("shop", "f", new_group=hostile), *bad_events(999)])
    first = checked.problems[0]
    assert first.path == "$[0].new_group"
    assert "\x1b" not in first.message and "\\x1b[2J<script>" in first.message
    assert len(first.message) == 300
    assert checked.invalid == 1000


def test_the_answer_is_the_same_every_time() -> None:
    sent = [*bad_events(500), event("shop", "ok"), *bad_events(499, bad=3)]
    first, second = check_events(sent), check_events(sent)
    assert (first.problems, first.invalid, first.complete) == (
        second.problems,
        second.invalid,
        second.complete,
    )
    assert first.invalid == 999


def test_validate_events_still_lists_every_problem() -> None:
    valid, problems = validate_events(bad_events(10))
    assert len(valid) == 10
    assert len(problems) == 990
    assert problems[-1] == Problem("$[9].classifiers[98]", "1 is not of type 'string'")


TEXTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["", "https://h", "http://h\n", "https:/", "\nhttps://h", "HTTPS://h", "٣", "x" * 201]
    ),
    st.sampled_from(["a\x1cb", "\x85", "\u2028", "\x00", "\ud800", "https://\x1f", "\x1b[2J"]),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Zl", "Zp"]), max_size=4),
)
SCALARS = st.one_of(TEXTS, st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none())
TIMES = st.sampled_from(
    ["2026-11-26T09:14:03Z", "2026-11-26T09:14:60+01:00", "2026-11-26T09:14:03", "٢٠٢٦"]
)


@settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.fixed_dictionaries(
        {"project": TEXTS, "fingerprint": TEXTS, "timestamp": st.one_of(TIMES, SCALARS)},
        optional={
            "classifiers": st.lists(SCALARS, max_size=3),
            "attributes": st.dictionaries(TEXTS, SCALARS, max_size=3),
            "href": TEXTS,
            "new_group": SCALARS,
            "extra": SCALARS,
        },
    )
)
def test_where_the_compiled_check_judges_an_event_jsonschema_agrees(event: dict[str, Any]) -> None:
    """Past the listed problems an event is counted by the compiled check's verdict,
    either way: it must be jsonschema's."""
    verdict = EVENT.verdict(event)
    if verdict is not None:
        assert verdict == EVENT.validator().is_valid(event), event
