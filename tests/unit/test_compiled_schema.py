"""The compiled schema and jsonschema give the same verdict on every document.

The compiled side only ever says "valid"; a document it does not accept goes
to jsonschema, which decides. So the property that matters is that it never
calls a document valid that jsonschema rejects, checked here on generated
and mutated documents: integers written as floats, what YAML 1.1 makes of
plain values, unicode and control characters, keys that are not text. The
compiled side must also decide the valid documents it is meant for, or the
fast path would be a slow path with extra steps.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config.loader import load_bytes
from syncd.config.schema import INTEGRATIONS
from syncd.events.validation import EVENT
from syncd.schemacheck import Schema

pytestmark = pytest.mark.unit

EXAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "examples" / "integrations.yaml").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)
SETTINGS = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What YAML 1.1 reads from plain values that YAML 1.2 takes as text, and values
# near the schema's limits.
YAML11 = ["yes", "no", "on", "off", "y", "n", "0o17", "017", "0x1F", "1_000", "1:30", "~", "1e3"]
TEXTS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "a", "ops", "@here", "@all", "/run/x", "https://h", "1d", "x\n", "a\x1cb"]
    ),
    st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=8),
)
SCALARS = st.one_of(
    TEXTS,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=200_000),
    st.floats(allow_nan=True),
    st.integers(min_value=0, max_value=10**6).map(float),  # 300.0: an integer in JSON terms
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(TEXTS, st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a value can be put or taken away."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


EXAMPLE_PATHS = _paths(EXAMPLE)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """The example document with one to three places replaced, removed, or given an
    extra key."""
    document = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(EXAMPLE_PATHS))
        parent = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            kind = draw(st.sampled_from(["kin", "replace", "remove", "extra"]))
            if kind == "kin":
                parent[path[-1]] = draw(_kin(parent[path[-1]]))
            elif kind == "replace":
                parent[path[-1]] = draw(VALUES)
            elif kind == "remove":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(TEXTS)] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change took that place away
    return document


def _kin(value: Any) -> st.SearchStrategy[Any]:
    """A value close to the one there: the same integer as a float or far larger, the
    same text with one character put in."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return VALUES
    if isinstance(value, int):
        return st.sampled_from([float(value), value + 2**64, -value, value + 0.5])
    return st.builds(
        lambda at, char: value[:at] + char + value[at:],
        st.integers(0, len(value)),
        st.one_of(st.characters(), st.sampled_from("\x1c\x1f\x85\xa0\u2028\ufeff\n")),
    )


def jsonschema_valid(schema: Schema, document: Any) -> bool:
    return not any(True for _ in schema.validator().iter_errors(document))


def assert_agree(schema: Schema, document: Any) -> None:
    if schema.certainly_valid(document):
        errors = [e.message for e in schema.validator().iter_errors(document)]
        assert not errors, f"compiled says valid, jsonschema says {errors}: {document!r}"


@SETTINGS
@given(mutated())
def test_mutated_documents_never_valid_only_to_the_compiled_schema(document: Any) -> None:
    assert_agree(INTEGRATIONS, document)


@SETTINGS
@given(st.sampled_from(EXAMPLE_PATHS), st.sampled_from(YAML11))
def test_yaml_11_values_read_from_the_file_agree(path: tuple[Any, ...], plain: str) -> None:
    """A value written in the file, read by the loader as syncd reads it."""
    document = copy.deepcopy(EXAMPLE)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = "__PLACE__"
    text = yaml.safe_dump(document, sort_keys=False).replace("__PLACE__", plain)
    loaded = load_bytes(text.encode(), "mutated.yaml")
    if loaded.ok:
        assert_agree(INTEGRATIONS, loaded.data)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"project": TEXTS, "fingerprint": TEXTS, "timestamp": st.one_of(TEXTS, SCALARS)},
        optional={
            "classifiers": st.lists(SCALARS, max_size=3),
            "attributes": st.dictionaries(TEXTS, SCALARS, max_size=3),
            "href": TEXTS,
            "new_group": SCALARS,
            "extra": SCALARS,
        },
    )
)
def test_events_agree(event: dict[str, Any]) -> None:
    assert_agree(EVENT, event)


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-26T09:14:03Z", "2026-11-26T09:14:60+01:00", "2026-11-26 09:14:03.5z"],
)
def test_the_compiled_schema_takes_valid_timestamps(timestamp: str) -> None:
    event = {"project": "p", "fingerprint": "f", "timestamp": timestamp}
    assert jsonschema_valid(EVENT, event)
    assert EVENT.certainly_valid(event)


@pytest.mark.parametrize(
    "timestamp", ["2026-11-26T09:14:03", "2026-02-30T09:14:03Z", "2026-11-26T25:14:03Z"]
)
def test_the_compiled_schema_refuses_bad_timestamps(timestamp: str) -> None:
    event = {"project": "p", "fingerprint": "f", "timestamp": timestamp}
    assert not jsonschema_valid(EVENT, event)
    assert not EVENT.certainly_valid(event)


def test_the_example_is_decided_by_the_compiled_schema() -> None:
    assert INTEGRATIONS.certainly_valid(EXAMPLE)


@SETTINGS
@given(mutated())
def test_valid_plain_documents_are_decided_by_the_compiled_schema(document: Any) -> None:
    """Where jsonschema accepts a document of plain values, the compiled side does
    too: printable ASCII texts, no float, integers of 64 bits."""
    if jsonschema_valid(INTEGRATIONS, document) and _plain(document):
        assert INTEGRATIONS.certainly_valid(document), document


def _plain(node: Any) -> bool:
    if isinstance(node, dict):
        return all(isinstance(k, str) and _plain(k) and _plain(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_plain(v) for v in node)
    if isinstance(node, str):
        return node.isascii() and node.isprintable()
    if isinstance(node, int):
        return -(2**63) <= node < 2**63
    return not isinstance(node, float)


@pytest.mark.parametrize(
    "value", [300.0, 2**64, "a\x1cb", "\ud800", b"bytes"], ids=["float", "big", "fs", "lone", "b"]
)
def test_values_the_compiled_side_could_misjudge_go_to_jsonschema(value: object) -> None:
    document = copy.deepcopy(EXAMPLE)
    document["integrations"][0]["hipchat"]["rooms"][0]["id"] = value
    assert not INTEGRATIONS.certainly_valid(document)
