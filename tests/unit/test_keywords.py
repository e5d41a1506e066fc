"""``keywords.check`` fails exactly the keywords jsonschema fails.

syncd judges a failing value's own keywords in Python (``keywords.check``) to
keep a hostile file's cost linear, and asks jsonschema only where ``check``
answers None. That is sound only if, wherever ``check`` answers, its verdict
and its failing keywords are jsonschema's, as syncd configures jsonschema
(the integrations schema's draft, integers that are neither bools nor floats,
no format checked). Checked here on every subschema of the integrations
schema, whole and as its own keywords (its children's subschemas left out, as
the schema walk asks), against the values YAML makes and values at the
schema's limits: lengths, bounds, enum members and near-misses, texts at the
edges of the patterns, duplicates that are and are not equal in JSON terms.

A check that cannot fail proves nothing, so each judge is planted wrong in
turn and the same check must catch it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema._utils import equal
from jsonschema.exceptions import ValidationError

from syncd.config import keywords
from syncd.config.schema import INTEGRATIONS

pytestmark = pytest.mark.unit

# Values per subschema: EXAMPLES_PER_SUBSCHEMA batches of BATCH values each.
EXAMPLES_PER_SUBSCHEMA, BATCH = 10, 8


# Keywords whose value is one subschema, a mapping of them, or a list of them.
_ONE = (
    "items", "additionalProperties", "if", "then", "else", "not", "contains",
    "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_MANY = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def subschemas(schema: Mapping[str, Any], where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every subschema, by its JSON pointer; a boolean one (``false``) is not
    walked further and never handed to ``check``."""
    yield where, schema
    for key, value in schema.items():
        below: list[tuple[str, Any]] = []
        if key in _ONE:
            below = [(key, value)]
        elif key in _MANY and isinstance(value, Mapping):
            below = [(f"{key}/{name}", sub) for name, sub in value.items()]
        elif key in _LISTS and isinstance(value, list):
            below = [(f"{key}/{index}", sub) for index, sub in enumerate(value)]
        for step, sub in below:
            if isinstance(sub, Mapping):
                yield from subschemas(sub, f"{where}/{step}")


def own_keywords(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that judge the value itself: the children's subschemas left out,
    the property names kept (they tell a known key from an unknown one)."""
    own = {key: value for key, value in schema.items() if key != "items"}
    if isinstance(own.get("properties"), Mapping):
        own["properties"] = dict.fromkeys(own["properties"], True)
    if isinstance(own.get("additionalProperties"), Mapping):
        own["additionalProperties"] = True
    return own


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """jsonschema's uniqueItems without its shortcut. Once the items sort, it
    compares only neighbours, and Python sorts [true] as equal to [1] and NaN
    anywhere: it passes [[1], [true], [1]] and [1.0, NaN, 1.0]. JSON Schema
    asks that no two items be equal: every pair, by jsonschema's own equality."""
    pairs = itertools.combinations(instance, 2) if validator.is_type(instance, "array") else ()
    if unique and any(equal(one, two) for one, two in pairs):
        yield ValidationError(f"{instance!r} has non-unique elements")


def _oracle_class() -> Any:
    """The class of syncd's own validator of the integrations schema (its draft, its
    integer type, its format checker), with uniqueItems judged pair by pair."""
    base = type(INTEGRATIONS.validator())
    mine = {"uniqueItems": _unique_items}
    return jsonschema.validators.extend(base, validators=mine)  # type: ignore[no-untyped-call]


ORACLE = _oracle_class()
FORMATS = getattr(INTEGRATIONS.validator(), "format_checker", None)


@dataclass(frozen=True)
class Case:
    """One subschema as ``check`` is handed it: whole, or its own keywords; with
    jsonschema's validator of it, built once."""

    where: str
    schema: Mapping[str, Any]
    reference: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", ORACLE(self.schema, format_checker=FORMATS))

    def jsonschema_failures(self, value: object) -> set[str]:
        """The keywords of this subschema that jsonschema fails (a failure found
        below, through ``properties`` or ``items``, counts as that keyword's)."""
        return {error.relative_schema_path[0] for error in self.reference.iter_errors(value)}


@dataclass(frozen=True)
class Subschema:
    """A subschema of the integrations schema, whole and, where they differ, as its
    own keywords: the values drawn for it are checked against both."""

    where: str
    schema: Mapping[str, Any]
    cases: tuple[Case, ...]


def _subschemas() -> list[Subschema]:
    found = []
    for where, schema in subschemas(INTEGRATIONS.document()):
        own = own_keywords(schema)
        cases = [Case(where, schema)] + ([Case(f"{where} (own)", own)] if own != schema else [])
        found.append(Subschema(where, schema, tuple(cases)))
    return found


SUBSCHEMAS = _subschemas()
CASES = [case for subschema in SUBSCHEMAS for case in subschema.cases]


def disagreement(case: Case, value: object) -> str | None:
    """What ``check`` and jsonschema disagree on, when ``check`` answers."""
    found = keywords.check(case.schema, value)
    if found is None:
        return None
    ours = {error.validator for error in found}
    theirs = case.jsonschema_failures(value)
    if ours == theirs:  # the verdict too: no keyword failing on either side
        return None
    return f"check and jsonschema disagree at {case.where} on {value!r}: {ours} vs {theirs}"


# Values as YAML makes them, and more: texts YAML 1.1 would read otherwise, big
# integers, floats that are integers in JSON terms, NaN; keys that are not text.
YAML11 = ["yes", "no", "on", "off", "y", "~", "null", "0o17", "017", "0x1F", "1_000", "1:30"]
# A line break, which ``$`` lets through; what Python's \s and \d take beyond
# ASCII; the characters that end a URL's host or path.
TRICKY = [
    "\n", "\x1c", "\x00", " ", "\t", "/", "@", "?", "#", "é", "\u0661", "\u2028", "\U0001f600",
]  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "a", "x" * 100, *YAML11, *TRICKY]),
)
SCALARS = st.one_of(
    TEXTS,
    st.integers(-2, 3),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.integers(-2, 10**6).map(float),
    st.booleans(),
    st.none(),
)
KEYS = st.one_of(TEXTS, st.sampled_from([0, 1, True, False, None, 1.0, 1.5]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=3),
    ),
    max_leaves=5,
)


def json_twin(value: Any) -> Any:
    """A value JSON Schema calls equal to ``value`` that Python spells otherwise:
    1 as 1.0, 2.0 as 2, a mapping's keys in another order."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) < 2**53 else value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [json_twin(item) for item in value]
    if isinstance(value, dict):
        return {key: json_twin(item) for key, item in reversed(value.items())}
    return value


def python_twin(value: Any) -> Any:
    """A value Python calls equal to ``value`` that JSON Schema does not: true for 1,
    0 for false."""
    if isinstance(value, bool):
        return int(value)
    if value in (0, 1) and isinstance(value, int | float):
        return bool(value)
    if isinstance(value, list):
        return [python_twin(item) for item in value]
    if isinstance(value, dict):
        return {key: python_twin(item) for key, item in value.items()}
    return value


def near_misses(member: Any) -> list[Any]:
    """Values an enum or const member is close to, and the member spelled another way."""
    out = [member, json_twin(member), python_twin(member), [member], {"k": member}]
    if isinstance(member, str):
        out += [member.upper(), member.title(), f"{member} ", f" {member}", f"{member}\n"]
        out += [member[:-1], f"{member}s", f"{member}\x00"]
    elif isinstance(member, int):
        out += [member - 1, member + 1, str(member), member + 0.5]
    return out


# Pairs jsonschema calls equal though Python spells them apart, and pairs that
# Python calls (or sorts as) equal, or that look alike, which jsonschema does not.
JSON_EQUAL = [
    (1, 1.0), (0, -0.0), ([1], [1.0]), ({"a": 1, "b": [2]}, {"b": [2.0], "a": 1}),
    ({1: "a"}, {1.0: "a"}), ("a", "a"), (None, None), ([], []), ({}, {}),
]  # fmt: skip
PYTHON_EQUAL = [
    (1, True), (0, False), (1.0, True), ([1], [True]), ({"a": 0}, {"a": False}),
    ([None], [False]), ("1", 1), ([], {}), ([1, 2], [2, 1]), ({"a": 1}, {"a": 1, "b": 1}),
]  # fmt: skip


def duplicates(pairs: list[tuple[Any, Any]]) -> list[list[Any]]:
    """Lists holding each pair: side by side, apart, and apart with the first again
    between them (jsonschema's own uniqueItems compares only sorted neighbours)."""
    return [shape for one, two in pairs for shape in ([one, two], [one, "x", two], [one, two, one])]


def edges(schema: Mapping[str, Any]) -> list[Any]:
    """Values at the limits ``schema`` sets, and around them."""
    out: list[Any] = [None, True, False, 0, 1, -1, 1.0, 0.0, -0.0, 0.5, float("nan")]
    out += [float("inf"), "", " ", "\n", [], {}, [None], {1: 1}, {"": None}, 2**63, 2**64]
    for key in ("minLength", "maxLength"):
        if key in schema:
            sizes = [size for size in range(schema[key] - 1, schema[key] + 2) if size >= 0]
            out += [char * size for size in sizes for char in ("x", "é", "\U0001f600", "\n")]
    for key in ("minimum", "maximum"):
        if key in schema:
            limit = schema[key]
            out += [limit - 1, limit, limit + 1, float(limit), limit - 0.5, limit + 0.5]
            out += [float(limit + 1), str(limit), -limit, limit == 1, limit == 0]
    for member in [*schema.get("enum", []), *([schema["const"]] if "const" in schema else [])]:
        out += near_misses(member)
    names = [*schema.get("properties", {}), *schema.get("required", [])]
    out += [dict.fromkeys(names), dict.fromkeys(names[1:]), dict.fromkeys([*names, "x"])]
    out += [{**dict.fromkeys(names), key: None} for key in (0, 1, True, None, 1.5)]
    for key in ("minItems", "maxItems"):
        if key in schema:
            out += [[f"r{i}" for i in range(size)] for size in (schema[key] - 1, schema[key] + 1)]
    if "uniqueItems" in schema:
        out += duplicates(JSON_EQUAL + PYTHON_EQUAL)
    return out


def _inserted(text: str, at: int, char: str) -> str:
    at %= len(text) + 1
    return text[:at] + char + text[at:]


def texts_for(pattern: str) -> st.SearchStrategy[str]:
    """Texts that match, and texts one character from matching: one put in, one taken
    out, one changed; a final line break, which ``$`` lets through."""
    matching = st.from_regex(pattern)
    tricky = st.one_of(st.sampled_from(TRICKY), st.characters())
    return st.one_of(
        matching,
        st.builds(_inserted, matching, st.integers(0, 200), tricky),
        st.builds(lambda text, at: text[:at] + text[at + 1 :], matching, st.integers(0, 100)),
        st.builds(lambda text, char: text + char, matching, tricky),
    )


def mappings_for(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[Any, Any]]:
    """Mappings of the keys the schema names, unknown ones and keys that are not text."""
    names = [*schema.get("properties", {}), *schema.get("required", [])]
    keys = st.one_of(st.sampled_from(names), KEYS) if names else KEYS
    return st.dictionaries(keys, VALUES, max_size=4)


@st.composite
def duplicated(draw: st.DrawFn) -> list[Any]:
    """A list with one item repeated: as it is, as its JSON twin (equal), or as its
    Python twin (not equal)."""
    items = draw(st.lists(VALUES, min_size=1, max_size=3))
    item = draw(st.sampled_from(items))
    twin = draw(st.sampled_from([item, json_twin(item), python_twin(item)]))
    at = draw(st.integers(0, len(items)))
    return [*items[:at], twin, *items[at:]]


def lists_for(schema: Mapping[str, Any]) -> st.SearchStrategy[list[Any]]:
    limits = [schema[key] for key in ("minItems", "maxItems") if key in schema]
    sizes = [limit + step for limit in limits for step in (-1, 0, 1)]
    sized = st.builds(lambda item, size: [item] * size, SCALARS, st.sampled_from(sizes or [2]))
    return st.one_of(st.lists(VALUES, max_size=4), duplicated(), sized)


def values_for(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values drawn for ``schema``; its edges are all checked, by another test."""
    choices: list[st.SearchStrategy[Any]] = [VALUES]
    if isinstance(schema.get("pattern"), str):
        choices.append(texts_for(schema["pattern"]))
    if {"properties", "required", "additionalProperties", "minProperties"} & set(schema):
        choices.append(mappings_for(schema))
    if {"items", "minItems", "maxItems", "uniqueItems"} & set(schema):
        choices.append(lists_for(schema))
    if schema.get("uniqueItems"):
        choices.append(duplicated())
    return st.one_of(choices)


AGREE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_agreement(subschema: Subschema, examples: int, **options: Any) -> None:
    """Raises AssertionError on the first value ``check`` and jsonschema disagree on.
    Values are drawn a batch at a time: a draw costs far less than an example."""

    @settings(AGREE, max_examples=examples, **options)
    @given(st.lists(values_for(subschema.schema), min_size=BATCH, max_size=BATCH))
    def agree(values: list[Any]) -> None:
        for value in values:
            for case in subschema.cases:
                found = disagreement(case, value)
                assert found is None, found

    agree()


@pytest.mark.parametrize("subschema", SUBSCHEMAS, ids=[s.where for s in SUBSCHEMAS])
def test_check_fails_the_keywords_jsonschema_fails(subschema: Subschema) -> None:
    run_agreement(subschema, EXAMPLES_PER_SUBSCHEMA)


def test_check_fails_the_keywords_jsonschema_fails_at_every_limit() -> None:
    """Every subschema's edges, every one of them: a sampled one may be missed."""
    compared = [
        disagreement(case, value)
        for subschema in SUBSCHEMAS
        for value in edges(subschema.schema)
        for case in subschema.cases
    ]
    assert [found for found in compared if found is not None] == []
    assert len(compared) > 2000


def test_every_subschema_is_checked_and_judged_but_where_a_keyword_is_not_judged() -> None:
    """The agreement above is not empty: the walk finds every subschema, and ``check``
    answers on each one's own keywords, but an action's and a mute's, which hold an
    ``if``, and a mute's ``then``, a ``not``."""
    document = INTEGRATIONS.document()
    wheres = [case.where for case in CASES]
    assert "#/properties/integrations/items/properties/actions/items/then" in wheres
    assert "#/properties/integrations/items/properties/actions/items/if/properties/action" in wheres
    assert len([w for w in wheres if not w.endswith("(own)")]) == len(_every_mapping(document))
    unjudged = [
        case.where
        for case in CASES
        if case.schema == own_keywords(case.schema) and keywords.check(case.schema, None) is None
    ]
    assert unjudged == [
        "#/properties/integrations/items/properties/actions/items (own)",
        "#/properties/mutes/items (own)",
        "#/properties/mutes/items/then",
    ]


def _every_mapping(node: Any, by_name: bool = False) -> list[Any]:
    """Every subschema, found apart from the walk: every mapping in the schema but
    data (``default``, ``enum``...) and the mappings of subschemas by name."""
    if isinstance(node, list):
        return [found for item in node for found in _every_mapping(item)]
    if not isinstance(node, Mapping):
        return []
    if by_name:
        return [found for sub in node.values() for found in _every_mapping(sub)]
    found = [node]
    for key, value in node.items():
        if key not in ("default", "examples", "const", "enum"):
            found += _every_mapping(value, by_name=key in _MANY)
    return found


ALWAYS_FAILS = {"const": "never"}


# A keyword ``check`` does not judge, or one reaching below the value it stands on.
NOT_JUDGED = [
    pytest.param({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, {"a": 1}, id="if"),
    pytest.param({"multipleOf": 2}, 3, id="multipleOf"),
    pytest.param({"not": {"type": "string"}}, "x", id="not"),
    pytest.param({"allOf": [{"type": "string"}]}, 1, id="allOf"),
    pytest.param({"anyOf": [{"type": "string"}]}, 1, id="anyOf"),
    pytest.param({"$ref": "#/$defs/t", "$defs": {"t": {"type": "string"}}}, 1, id="$ref"),
    pytest.param({"type": "decimal"}, 1, id="unknown type"),
    pytest.param({"type": ["string", "decimal"]}, 1, id="unknown type in a list"),
    pytest.param({"additionalProperties": {"type": "string"}}, {"a": 1}, id="extra keys schema"),
    pytest.param(
        {"additionalProperties": False, "patternProperties": {"^a": {}}}, {"b": 1}, id="patterns"
    ),
    pytest.param({"properties": {"a": {"type": "string"}}}, {"a": 1}, id="property schema"),
    pytest.param({"items": {"type": "string"}}, [1], id="items schema"),
    pytest.param({"prefixItems": [{"type": "string"}]}, [1], id="prefixItems"),
    pytest.param({"dependentRequired": {"a": ["b"]}}, {"a": 1}, id="dependentRequired"),
    pytest.param({"readOnly": True}, 1, id="readOnly"),
]


@pytest.mark.parametrize(("schema", "value"), NOT_JUDGED)
def test_check_answers_none_where_a_keyword_is_not_judged(
    schema: dict[str, Any], value: object
) -> None:
    """None, not the errors of the keywords it does judge: a partial list would hide
    the unjudged keyword's errors from the walk."""
    assert keywords.check({**ALWAYS_FAILS, **schema}, value) is None
    assert keywords.check(ALWAYS_FAILS, value)  # the const alone is judged, and fails


def test_check_answers_none_on_the_shipped_action_with_its_if() -> None:
    integration = INTEGRATIONS.document()["properties"]["integrations"]["items"]
    action = integration["properties"]["actions"]["items"]
    assert keywords.check(own_keywords(action), {"action": "mention"}) is None


def test_unique_items_follows_json_schema_where_jsonschema_sorts_past_a_duplicate() -> None:
    """Why the reference judges uniqueItems pair by pair: jsonschema's own passes a
    list whose duplicates Python sorts apart."""
    value: Any = [[1], [True], [1]]
    plain = type(INTEGRATIONS.validator())({"uniqueItems": True}, format_checker=FORMATS)
    assert plain.is_valid(value), "jsonschema's uniqueItems now sees it: use it as it is"
    case = Case("uniqueItems", {"uniqueItems": True})
    assert case.jsonschema_failures(value) == {"uniqueItems"}
    assert disagreement(case, value) is None


def _inverted(judge: Callable[..., object]) -> Callable[..., object]:
    def planted(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        answer = judge(expected, value, schema)
        if answer is keywords._UNJUDGED:
            return answer
        return "" if answer else "planted failure"

    return planted


@pytest.mark.parametrize("keyword", sorted(keywords._JUDGES))
def test_a_judge_planted_wrong_is_caught(keyword: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each judge inverted in turn: the agreement check must fail on a subschema of
    the shipped schema that uses it (and one must)."""
    using = [s for s in SUBSCHEMAS if any(keyword in case.schema for case in s.cases)]
    assert using, f"no subschema uses {keyword}: its judge is never compared"
    planted = {**keywords._JUDGES, keyword: _inverted(keywords._JUDGES[keyword])}
    monkeypatch.setattr(keywords, "_JUDGES", planted)
    quick = {"phases": [Phase.generate], "report_multiple_bugs": False}
    with pytest.raises(AssertionError, match="disagree"):
        for subschema in using:
            run_agreement(subschema, EXAMPLES_PER_SUBSCHEMA, **quick)
