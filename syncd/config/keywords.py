"""The JSON Schema keywords syncd's integrations schema uses, checked in Python
on one value, without jsonschema.

A hostile file holds tens of thousands of values that fail the schema, and
jsonschema costs some tens of microseconds to explain each (and a tenth of a
second to import): so the keywords that judge a value by itself (``type``,
``enum``, ``pattern``, ``required``, unknown keys, sizes...) are checked here,
as jsonschema checks them as syncd configures it (an integer is never a bool
or a float; ``true`` is not ``1``; patterns are Python's, searched). A
subschema with any other keyword, or one that reaches below the value (a
``properties`` or ``items`` that is not ``true``, an ``if``), is not judged
here: :func:`check` answers None and jsonschema explains it. A test checks the
two agree on thousands of values for every subschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Keywords that never fail: annotations, and formats, which syncd checks only
# when a schema names them (none of the integrations schema's).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format"}
)


@dataclass(frozen=True)
class KeywordError:
    """One keyword's failure, with what syncd's wording reads of jsonschema's
    ValidationError."""

    validator: str
    validator_value: Any
    instance: Any
    schema: Mapping[str, Any]
    message: str
    context: tuple[()] = ()
    absolute_path: tuple[()] = ()


def check(schema: Mapping[str, Any], value: object) -> list[KeywordError] | None:
    """The errors of ``value`` against ``schema``'s own keywords; None when a keyword
    is not judged here."""
    out: list[KeywordError] = []
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        judge = _JUDGES.get(keyword)
        if judge is None:
            return None
        failed = judge(expected, value, schema)
        if failed is _UNJUDGED:
            return None
        if failed:
            out.append(KeywordError(keyword, expected, value, schema, str(failed)))
    return out


_UNJUDGED = object()
# A judge returns what failed (a truthy message), "" when nothing did, or _UNJUDGED.
Judge = Callable[[Any, Any, Mapping[str, Any]], object]


def is_type(value: object, kind: str) -> bool:
    """jsonschema's types as syncd configures them: an integer is an int that is not
    a bool (3.0 is not one)."""
    if kind in ("integer", "number"):
        number = (int,) if kind == "integer" else (int, float)
        return isinstance(value, number) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


_TYPES: Mapping[str, type] = {
    "string": str,
    "object": dict,
    "array": list,
    "boolean": bool,
    "null": type(None),
}
_KINDS = frozenset({"integer", "number", *_TYPES})


def comparable(value: object) -> object:
    """A hashable stand-in, equal where JSON Schema calls two values equal: true is
    not 1, 1.0 is 1, a mapping's key order does not count."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, list):
        return ("list", tuple(comparable(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, comparable(v)) for k, v in value.items()))
    return value


def _type(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    kinds = expected if isinstance(expected, list) else [expected]
    if not _KINDS.issuperset(kinds):
        return _UNJUDGED
    return "" if any(is_type(value, k) for k in kinds) else f"not of type {kinds}"


def _enum(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    found = comparable(value)
    return "" if any(comparable(o) == found for o in expected) else "not one of the enum"


def _const(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    return "" if comparable(value) == comparable(expected) else "not the const"


def _pattern(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    if not isinstance(value, str) or re.search(expected, value):
        return ""
    return f"{value!r} does not match {expected!r}"


def _length(least: bool) -> Judge:
    def judge(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        if not isinstance(value, str):
            return ""
        beyond = len(value) < expected if least else len(value) > expected
        return "too short or too long" if beyond else ""

    return judge


def _bound(least: bool) -> Judge:
    def judge(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        if not is_type(value, "number"):
            return ""
        beyond = value < expected if least else value > expected
        return "out of bounds" if beyond else ""

    return judge


def _count(kind: str, least: bool) -> Judge:
    def judge(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        if not is_type(value, kind):
            return ""
        beyond = len(value) < expected if least else len(value) > expected
        return "too few or too many" if beyond else ""

    return judge


def _unique(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    if not expected or not isinstance(value, list):
        return ""
    seen: set[object] = set()
    for item in value:
        key = comparable(item)
        if key in seen:
            return "has non-unique elements"
        seen.add(key)
    return ""


def _required(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    if not isinstance(value, dict):
        return ""
    missing = [key for key in expected if key not in value]
    return f"{missing[0]!r} is a required property" if missing else ""


def _additional(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    if not isinstance(value, dict) or expected is True:
        return ""
    if expected is not False or "patternProperties" in schema:
        return _UNJUDGED
    known = schema.get("properties", {})
    return "unknown keys" if any(key not in known for key in value) else ""


def _properties(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    if isinstance(value, dict) and any(expected[k] is not True for k in value if k in expected):
        return _UNJUDGED  # a subschema below: not this value's own
    return ""


def _items(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
    return _UNJUDGED if isinstance(value, list) and value and expected is not True else ""


_JUDGES: Mapping[str, Judge] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minLength": _length(least=True),
    "maxLength": _length(least=False),
    "minimum": _bound(least=True),
    "maximum": _bound(least=False),
    "minItems": _count("array", least=True),
    "maxItems": _count("array", least=False),
    "minProperties": _count("object", least=True),
    "maxProperties": _count("object", least=False),
    "uniqueItems": _unique,
    "required": _required,
    "additionalProperties": _additional,
    "properties": _properties,
    "items": _items,
}
