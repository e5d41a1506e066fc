"""The JSON Schemas shipped in the package, and how a document is checked
against one: a compiled check decides valid documents, and jsonschema (imported
only then) explains the others. Both flows check documents, the config flow its
files and the event flow its events, so this belongs to neither.

About the compiled check:
A compiled schema that answers one question fast: is this document valid?

jsonschema gives every message syncd prints, but importing it costs more than
reading a file, and it checks a document in about a millisecond. jsonschema-rs
compiles the same schema once and checks a document in microseconds, so it
decides the common case, a valid document, and only a document it rejects is
handed to jsonschema for the messages.

Its "valid" is trusted only where it can be no more lenient than jsonschema as
syncd configures it; any other document is not judged here:

- a float: JSON Schema counts 3.0 as an integer, syncd does not (and neither
  shipped schema takes a number that is not an integer);
- an integer beyond 64 bits, which the compiled side cannot hold exactly;
- a text with a character Python calls unprintable, but for tab and line
  breaks: Python's ``\\s`` takes U+001C to U+001F, the compiled ``\\s`` does
  not, and other such characters are not worth the doubt;
- anything that is not JSON: a key that is not a text, bytes, a lone surrogate.

Where the two differ the other way (the compiled ``$`` does not match before a
final line break, its ``\\d`` is ASCII), the document goes to jsonschema too,
which then decides: slower, never a different verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

FormatCheck = Callable[[object], bool]
Check = Callable[[object], bool]

_INT64 = range(-(2**63), 2**63)


def compiled_check(schema: Mapping[str, Any], formats: Mapping[str, FormatCheck]) -> Check:
    """``check(document)`` for a document :func:`judgeable` already passed: True when
    it is valid, False when it is not or the compiled side refuses it. For a caller
    that judges one document once and checks many of its parts (the config walk)."""
    import jsonschema_rs

    compiled = jsonschema_rs.validator_for(
        dict(schema), formats=dict(formats), validate_formats=bool(formats)
    )

    def check(document: object) -> bool:
        try:
            return compiled.is_valid(document)
        except (ValueError, TypeError, UnicodeError, OverflowError):
            return False

    return check


def judgeable(document: object) -> bool:
    """Only the values whose verdict is the same on both sides; see the module text."""
    stack = [document]
    while stack:
        if not _fits(stack.pop(), stack):
            return False
    return True


def _fits(value: object, stack: list[object]) -> bool:
    """One value, its items put on ``stack``. Exact types: a subclass of str or
    int is not JSON to the compiled side."""
    kind = type(value)
    if kind is dict and isinstance(value, dict):
        stack.extend(value.values())
        return all(_is_text(key) for key in value)
    if kind is list and isinstance(value, list):
        stack.extend(value)
        return True
    if kind is int:
        return value in _INT64
    return _is_text(value) or kind is bool or value is None


def _is_text(value: object) -> bool:
    return type(value) is str and isinstance(value, str) and _plain(value)


def _plain(text: str) -> bool:
    return text.isprintable() or all(c.isprintable() or c in "\t\n\r" for c in text)


@dataclass(frozen=True)
class Schema:
    """One shipped schema, with the formats syncd checks in it (none are checked
    unless named: jsonschema and the compiled side disagree on several)."""

    name: str
    formats: tuple[tuple[str, FormatCheck], ...] = ()

    def document(self) -> dict[str, Any]:
        return _load(self.name)

    def certainly_valid(self, data: object) -> bool:
        """The compiled schema's verdict: True decides, False sends the document to
        :meth:`validator` for its errors."""
        return _compiled(self)(data)

    def count_errors(self, data: Any) -> int:
        """How many errors :meth:`validator` would report, counted without building
        their messages (which cost five times the check)."""
        try:
            return sum(1 for _ in _counter(self).iter_errors(data))
        except (ValueError, TypeError, UnicodeError, OverflowError):
            # Not a document the compiled side takes: jsonschema counts it.
            return sum(1 for _ in self.validator().iter_errors(data))

    def validator(self) -> jsonschema.protocols.Validator:
        """Built once per schema, and jsonschema imported only then: its import
        costs more than checking a file."""
        return _validator(self)


@cache
def _load(name: str) -> dict[str, Any]:
    text = Path(__file__).parent.joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _compiled(schema: Schema) -> Check:
    check = compiled_check(schema.document(), dict(schema.formats))
    return lambda document: judgeable(document) and check(document)


@cache
def _counter(schema: Schema) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(
        schema.document(), formats=dict(schema.formats), validate_formats=bool(schema.formats)
    )


@cache
def _validator(schema: Schema) -> jsonschema.protocols.Validator:
    import jsonschema

    document = schema.document()
    base = jsonschema.validators.validator_for(document)
    # The shipped schemas are checked by a test, not on every run.
    # JSON Schema counts 300.0 as an integer; a room id or a threshold must not be a float.
    strict_integers = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    cls = jsonschema.validators.extend(base, type_checker=strict_integers)  # type: ignore[no-untyped-call]
    formats = jsonschema.FormatChecker(formats=())
    for name, check in schema.formats:
        formats.checks(name)(check)
    validator: jsonschema.protocols.Validator = cls(document, format_checker=formats)
    return validator
