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
  not, and other such characters are not worth the doubt (on a schema whose
  regexes hold no class, see below, a character is only a character: any
  text is judged);
- anything that is not JSON: a key that is not a text, bytes, a lone surrogate.

Where the two differ the other way (the compiled ``$`` does not match before a
final line break, its ``\\d`` is ASCII), the document goes to jsonschema too,
which then decides: slower, never a different verdict.

Its "invalid" is trusted only on a schema where the two cannot differ that way
(:func:`agreeing`): every regex plain text with anchors and quantifiers, every
format one syncd checks itself on both sides. The event schema is one, so a
request of invalid events is judged event by event without building an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

FormatCheck = Callable[[object], bool]
Check = Callable[[object], bool]
Verdict = Callable[[object], "bool | None"]

_INT64 = range(-(2**63), 2**63)
_JSON_TYPES = frozenset({dict, list, str, int, bool, type(None)})
_FEW = 8  # items a container may have and still be judged one by one


def compiled_check(schema: Mapping[str, Any], formats: Mapping[str, FormatCheck]) -> Check:
    """``check(document)`` for a document :func:`judgeable` already passed: True when
    it is valid, False when it is not or the compiled side refuses it. For a caller
    that judges one document once and checks many of its parts (the config walk)."""
    verdict = _compiled_verdict(schema, formats, trust_invalid=False)
    return lambda document: verdict(document) is True


def _compiled_verdict(
    schema: Mapping[str, Any], formats: Mapping[str, FormatCheck], *, trust_invalid: bool
) -> Verdict:
    """The compiled side's verdict on a judgeable document: True, or False when
    ``trust_invalid``, else None (jsonschema decides), as for a document it refuses."""
    import jsonschema_rs

    compiled = jsonschema_rs.validator_for(
        dict(schema), formats=dict(formats), validate_formats=bool(formats)
    )
    invalid = False if trust_invalid else None

    def verdict(document: object) -> bool | None:
        try:
            return True if compiled.is_valid(document) else invalid
        except (ValueError, TypeError, UnicodeError, OverflowError):
            return None

    return verdict


# Regex text the compiled side and Python read alike: literals, anchors,
# groups without flags, alternatives and quantifiers. ``$``, ``.``, classes,
# escapes and braces are where the two dialects part.
_PLAIN_REGEX = re.compile(r"(?:[^$.\\\[\]{}(]|\((?!\?))*")
# Keywords one side may check and the other only notes.
_NOTED = frozenset({"contentEncoding", "contentMediaType", "contentSchema"})


def agreeing(schema: object, formats: Collection[str]) -> bool:
    """Whether the compiled side and jsonschema give one verdict on every judgeable
    document: no regex (``pattern``, the keys of ``patternProperties``) where their
    dialects differ, and no format but ``formats``, checked by the same function on
    both sides (the compiled side checks every format it knows, jsonschema only
    those it is given). Read cautiously: a property named ``pattern`` says no."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        if not isinstance(node, dict):
            continue
        if not _alike(node, formats):
            return False
        stack.extend(node.values())
    return True


def _alike(node: dict[Any, Any], formats: Collection[str]) -> bool:
    """One schema object's own keywords, read alike by both sides."""
    regexes = [node.get("pattern", ""), *(node.get("patternProperties") or {})]
    if not all(isinstance(r, str) and _PLAIN_REGEX.fullmatch(r) for r in regexes):
        return False
    return ("format" not in node or node["format"] in formats) and not _NOTED & node.keys()


def judgeable(document: object, *, any_text: bool = False) -> bool:
    """Only the values whose verdict is the same on both sides; see the module text.
    ``any_text``: for a schema :func:`agreeing`, whose regexes hold no class, a text
    is judged whatever its characters (a lone surrogate makes the compiled side
    refuse the document)."""
    texts = _any if any_text else _plain
    stack = [document]
    while stack:
        if not _fits(stack.pop(), stack, texts):
            return False
    return True


def _fits(value: object, stack: list[object], texts: Callable[[str], bool]) -> bool:
    """One value, its items put on ``stack``; a long container's items judged
    together, their types as one set, since a request of a megabyte may hold
    half a million values. Exact types: a subclass of str or int is not JSON to
    the compiled side."""
    kind = type(value)
    if kind is dict and isinstance(value, dict):
        keys = all(type(key) is str and texts(key) for key in value)
        return keys and _items(value.values(), stack, texts)
    if kind is list and isinstance(value, list):
        return _items(value, stack, texts)
    return _scalar(value, kind, texts)


def _scalar(value: object, kind: type, texts: Callable[[str], bool]) -> bool:
    if kind is str and isinstance(value, str):
        return texts(value)
    if kind is int:
        return value in _INT64
    return kind is bool or value is None


def _items(values: Collection[object], stack: list[object], texts: Callable[[str], bool]) -> bool:
    if len(values) <= _FEW:
        stack.extend(values)
        return True
    return _fit(values, stack, texts)


def _fit(values: Collection[object], stack: list[object], texts: Callable[[str], bool]) -> bool:
    """``values`` judged together, the containers among them put on ``stack``.
    Exact types: a subclass of str or int is not JSON to the compiled side."""
    kinds = set(map(type, values))
    if not kinds <= _JSON_TYPES:
        return False
    if dict in kinds or list in kinds:
        stack.extend(v for v in values if type(v) is dict or type(v) is list)
    return _scalars_fit(values, kinds, texts)


def _scalars_fit(
    values: Collection[object], kinds: set[type], texts: Callable[[str], bool]
) -> bool:
    plain = str not in kinds or texts is _any or all(map(texts, _of(str, values, kinds)))
    return plain and (int not in kinds or _int64(_of(int, values, kinds)))


def _of(kind: type, values: Collection[object], kinds: set[type]) -> Collection[Any]:
    """The values of exactly ``kind``: all of them, when they are all of it."""
    return values if kinds == {kind} else [v for v in values if type(v) is kind]


def _int64(numbers: Collection[int]) -> bool:
    return min(numbers) in _INT64 and max(numbers) in _INT64


def _plain(text: str) -> bool:
    return text.isprintable() or all(c.isprintable() or c in "\t\n\r" for c in text)


def _any(text: str) -> bool:
    return True


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
        return self.verdict(data) is True

    def verdict(self, data: object) -> bool | None:
        """Valid (True) or not (False) as the compiled schema says, where its word is
        jsonschema's; None where only :meth:`validator` can tell. Builds no error:
        for a caller that lists a few and only counts the others."""
        return _compiled(self)(data)

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
def _compiled(schema: Schema) -> Verdict:
    formats = dict(schema.formats)
    document = schema.document()
    trusted = agreeing(document, formats)
    verdict = _compiled_verdict(document, formats, trust_invalid=trusted)
    return lambda data: verdict(data) if judgeable(data, any_text=trusted) else None


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
