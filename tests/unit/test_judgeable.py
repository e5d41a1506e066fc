"""Which documents the compiled check may judge: the same answer whether a
container's values are looked at one by one or, for a long container, together.

A request of a megabyte may hold half a million values (``[1, 1, ...]``), and
every one is looked at before the compiled check's verdict is trusted, so a
long container's values are judged as a set of types. That must not change
which documents are judged: checked here against the rule written plainly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.schemacheck import judgeable

pytestmark = pytest.mark.unit


class Text(str):
    """A subclass of str: not JSON to the compiled side."""


def plainly(value: Any, any_text: bool) -> bool:
    """The rule, one value at a time."""
    kind = type(value)
    if kind is dict:
        return all(plainly(k, any_text) and type(k) is str for k in value) and all(
            plainly(v, any_text) for v in value.values()
        )
    if kind is list:
        return all(plainly(v, any_text) for v in value)
    if kind is str:
        return any_text or all(c.isprintable() or c in "\t\n\r" for c in value)
    if kind is int:
        return -(2**63) <= value < 2**63
    return kind is bool or value is None


SCALARS = st.one_of(
    st.text(max_size=3),
    st.sampled_from(["a\x1cb", "\x85", "\t\n", "\ud800"]),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    st.floats(),
    st.booleans(),
    st.none(),
    st.builds(Text, st.text(max_size=2)),
    st.builds(tuple, st.lists(st.integers(), max_size=2)),
)
# Long containers (past the few judged one by one) with one odd value among many.
LONG = st.integers(9, 40)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=12),
        st.builds(lambda n, odd, at: [1] * n + [odd] + [2] * at, LONG, inner, st.integers(0, 3)),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=12),
        st.builds(lambda n, odd: {**{f"k{i}": "v" for i in range(n)}, "odd": odd}, LONG, inner),
    ),
    max_leaves=60,
)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(DOCUMENTS, st.booleans())
def test_judgeable_is_the_rule_written_plainly(document: Any, any_text: bool) -> None:
    assert judgeable(document, any_text=any_text) == plainly(document, any_text)


@pytest.mark.parametrize(
    ("odd", "judged"),
    [
        (1, True),
        (2**63, False),
        (1.0, False),
        ("x", True),
        ("a\x1cb", False),
        (Text("x"), False),
        (None, True),
        ([[1.5]], False),
        ({"k": 2**70}, False),
        ({1: "v"}, False),
    ],
)
def test_one_odd_value_among_thousands(odd: object, judged: bool) -> None:
    assert judgeable([1] * 5000 + [odd] + ["x"] * 5000) is judged
    assert judgeable({"a": [1] * 500, **{f"k{n}": "v" for n in range(500)}, "z": odd}) is judged
