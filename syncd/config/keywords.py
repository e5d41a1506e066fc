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
from typing import Any, ClassVar

# Keywords that never fail: annotations, and formats, which syncd checks only
# when a schema names them (none of the integrations schema's).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format"}
)


@dataclass(frozen=True)
class KeywordError:
    """One keyword's failure, with what syncd's wording reads of jsonschema's
    ValidationError. One is made for each value of a hostile file that fails (10,000
    integrations): what is the same for all is the class's, not a field."""

    validator: str
    validator_value: Any
    instance: Any
    schema: Mapping[str, Any]
    message: str
    context: ClassVar[tuple[()]] = ()
    absolute_path: ClassVar[tuple[()]] = ()


def check(schema: Mapping[str, Any], value: object) -> list[KeywordError] | None:
    """The errors of ``value`` against ``schema``'s own keywords; None when a keyword
    is not judged here."""
    found = judges(schema)
    return None if found is None else found.check(value)


@dataclass(frozen=True)
class Judges:
    """A schema's keywords paired with their judges once, for the many values a
    hostile file fails it with (each integration of 10,000)."""

    schema: Mapping[str, Any]
    judges: tuple[tuple[str, Any, Judge], ...]

    def check(self, value: object) -> list[KeywordError] | None:
        """As :func:`check`."""
        out: list[KeywordError] = []
        schema = self.schema
        for keyword, expected, judge in self.judges:
            failed = judge(expected, value, schema)
            if failed:
                if failed is _UNJUDGED:
                    return None
                out.append(KeywordError(keyword, expected, value, schema, str(failed)))
        return out


def judges(schema: Mapping[str, Any]) -> Judges | None:
    """``schema``'s keywords and their judges, in order, less those that never fail;
    None when a keyword is not judged here."""
    found: list[tuple[str, Any, Judge]] = []
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        judge = _JUDGES.get(keyword)
        if judge is None:
            return None
        # The common forms of two judges, in one step each (only of those judges).
        if judge is _type:
            judge = _one_type(expected) or judge
        elif judge is _additional:
            judge = _closed(expected, schema) or judge
        if not _never_fails(keyword, expected):
            found.append((keyword, expected, judge))
    return Judges(schema, tuple(found))


def _closed(expected: object, schema: Mapping[str, Any]) -> Judge | None:
    """``additionalProperties: false`` beside ``properties``, judged by one comparison of
    key sets, as :func:`_additional` judges it; None for any other."""
    known = schema.get("properties", {})
    if expected is not False or "patternProperties" in schema or not isinstance(known, dict):
        return None
    names = known.keys()

    def judge(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        if not isinstance(value, dict) or value.keys() <= names:
            return ""
        return "unknown keys"

    return judge


def _one_type(expected: object) -> Judge | None:
    """``type`` of one kind that is not a number, judged by one ``isinstance``, as
    :func:`_type` judges it (with the same message); None for any other keyword."""
    kind = _TYPES.get(expected) if isinstance(expected, str) else None
    if kind is None:
        return None
    message = f"not of type {[expected]}"

    def judge(expected: Any, value: Any, schema: Mapping[str, Any]) -> object:
        return "" if isinstance(value, kind) else message

    return judge


def _never_fails(keyword: str, expected: Any) -> bool:
    """``properties`` or ``items`` whose every subschema is ``true``: how a value's own
    keywords keep the names of its children (their judges then answer "")."""
    if keyword == "items":
        return expected is True
    properties = expected if keyword == "properties" and isinstance(expected, Mapping) else None
    return properties is not None and all(sub is True for sub in properties.values())


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
    for kind in kinds:
        if is_type(value, kind):
            return ""
    return f"not of type {kinds}"


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
    if isinstance(known, dict):  # one comparison in C, not a look-up per key
        return "" if value.keys() <= known.keys() else "unknown keys"
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
