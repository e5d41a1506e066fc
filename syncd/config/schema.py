"""Config flow step 3: schema errors as diagnostics placed where the file went
wrong, worded for the person who wrote the YAML.

How a document is checked against a shipped schema is ``syncd.schemacheck``'s,
shared with the event flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from syncd.config import schemawalk
from syncd.config.diagnostics import Diagnostic, json_path
from syncd.config.keywords import KeywordError
from syncd.config.loader import DataPath, LoadedFile, describe_value
from syncd.config.yamlvalues import json_literal
from syncd.schemacheck import Schema, judgeable

if TYPE_CHECKING:
    from syncd.config.schemawalk import SchemaError

INTEGRATIONS = Schema("integrations.schema.json")

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "null": "nothing",
}


def _yaml_type(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _subschema(error: SchemaError) -> Mapping[str, Any]:
    schema = error.schema
    return schema if type(schema) is dict or isinstance(schema, Mapping) else {}


def _message(error: SchemaError) -> str:
    """The schema's own ``x-message`` for the failing keyword, else one in our words,
    else jsonschema's."""
    custom = _subschema(error).get("x-message")
    if isinstance(custom, str):
        return custom
    if error.validator == "type":
        return _type_message(error.validator_value, error.instance)
    return _value_message(error) or _size_message(error) or str(error.message)


def _type_message(expected: Any, value: object) -> str:
    types = expected if isinstance(expected, list) else [expected]
    words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
    if value is None:
        return f"expected {words}, got nothing"
    return f"expected {words}, got {_yaml_type(value)} ({_short(value)})"


def _value_message(error: SchemaError) -> str | None:
    """For the keywords that constrain what a value is."""
    kind, value = error.validator, error.instance
    expected: Any = error.validator_value
    if kind == "enum":
        listed = f"{_short(value)} is not one of: {', '.join(str(v) for v in expected)}"
        return listed + _closest(value, expected)
    if kind == "const":
        return f"must be {json.dumps(expected)}, got {_short(value)}"
    if kind == "pattern":
        wanted = _subschema(error).get("x-expected", f"text matching {expected}")
        return f"{_short(value)} is not {wanted}"
    if kind == "minimum":
        return f"{_short(value)} is less than the minimum {expected}"
    if kind == "maximum":
        most = _subschema(error).get("x-maximum", expected)
        return f"{_short(value)} is more than the maximum, {most}"
    if kind == "uniqueItems":
        return f"has duplicate items: {_short(value)}"
    return None


def _closest(value: object, allowed: list[Any]) -> str:
    """`` (did you mean 'gray'?)`` when a valid text is close to the one given."""
    words = [v for v in allowed if isinstance(v, str)]
    if not isinstance(value, str) or not words:
        return ""
    import difflib  # for messages only, as jsonschema is

    close = difflib.get_close_matches(value.lower(), words, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _size_message(error: SchemaError) -> str | None:
    """For the keywords that constrain how long a text, list or mapping is."""
    kind = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "maxLength":
        return f"is {len(value)} characters long; at most {expected} allowed"
    if kind == "minItems":
        return f"needs at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return f"has {len(value)} items; at most {expected} allowed"
    if kind in ("minProperties", "maxProperties"):
        keys = _subschema(error).get("properties", {})
        return "must have exactly one key of: " + ", ".join(keys)
    return None


def _wants_text(error: SchemaError) -> bool:
    """Whether the failing keyword would have taken a string, so quoting may fix it."""
    expected: Any = error.validator_value
    if error.validator == "type":
        return "string" in (expected if isinstance(expected, list) else [expected])
    if error.validator == "enum":
        return any(isinstance(v, str) for v in expected)
    if error.validator == "const":
        return isinstance(expected, str)
    return False


def _unknown_keys(error: SchemaError) -> Iterator[str]:
    allowed = _subschema(error).get("properties", {})
    instance = error.instance if isinstance(error.instance, dict) else {}
    return (key for key in instance if key not in allowed)


def _unknown_key_message(error: SchemaError, key: str) -> list[str]:
    import difflib

    allowed = list(_subschema(error).get("properties", {}))
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(allowed)
    return [f"unknown key {key!r} ({hint})"]


def _missing_keys(error: SchemaError) -> Iterator[str]:
    instance = error.instance if isinstance(error.instance, dict) else None
    if instance is None:
        return
    custom = _subschema(error).get("x-message")
    required: Any = error.validator_value
    for key in required:
        if key not in instance:
            yield custom if isinstance(custom, str) else f"missing key {key!r}"


def refine_traps(loaded: LoadedFile, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """A YAML 1.1 trap's message suggests quoting the text or writing the value YAML
    read; keep only the suggestions the schema accepts at that place.

    Each trap is judged by the one subschema that applies at its place, against the
    value alone: a copy of the document checked whole per trap made a file of
    thousands of ``no`` cost hours. Only the traps of the diagnostics given (those
    listed) are judged, each found by its place.
    """
    out = []
    for diagnostic in diagnostics:
        trap = loaded.traps.get((diagnostic.line, diagnostic.col))
        if trap is not None and trap[0] and _is_trap_of(diagnostic, trap[0]):
            fix = _trap_fix(*trap)
            diagnostic = _with_fix(diagnostic, fix) if fix is not None else diagnostic
        out.append(diagnostic)
    return out


def _is_trap_of(diagnostic: Diagnostic, path: DataPath) -> bool:
    return diagnostic.message.startswith(_TRAP) and diagnostic.path == json_path(path)


_TRAP = "YAML 1.1 reads"


def _trap_fix(path: DataPath, text: str, value: Any) -> str | None:
    """The one fix to offer for a trap, or None to keep offering both."""
    text_errors = _errors_with(path, text)
    value_errors = _errors_with(path, value)
    if text_errors and value_errors:
        return f"neither is valid here: {_message(text_errors[0])}"
    if text_errors:
        return f"write {json_literal(value)}"
    if value_errors:
        return f'quote it ("{text}")'
    return None


def _with_fix(diagnostic: Diagnostic, fix: str) -> Diagnostic:
    head = diagnostic.message.split(";", 1)[0]
    return replace(diagnostic, message=f"{head}; {fix}")


def _errors_with(path: DataPath, value: Any) -> list[SchemaError]:
    """The schema's errors at ``path`` with ``value`` put there: the one subschema
    that judges that place, against the value alone."""
    found = schemawalk.judging(INTEGRATIONS, path)
    return [] if found is None else schemawalk.errors_of(INTEGRATIONS, found[0], value)


def add_schema_problems(loaded: LoadedFile, schema: Schema = INTEGRATIONS) -> None:
    """Each schema error placed in the file (``loaded.problems``), worded only if it
    is listed and only counted past the cap; none where the loader already
    reported the value (a YAML trap there would only be explained twice).
    ``schemawalk`` finds them in time linear in the document, one at a time,
    each with the mapping or list that holds its value, which places it in one
    look-up: the path of a problem is walked and worded only if it is listed.
    """
    data = loaded.data
    judged = judgeable(data)
    if schemawalk.certainly_valid(schema, data, judged):
        return
    required = _Required()

    def reported(path: DataPath) -> bool:
        return path in loaded.reported_paths

    for path, error, holder in schemawalk.placed_failures(schema, data, reported, judged):
        if not (loaded.reported_paths and _already_reported(loaded, path)):
            _add_error(loaded, path, error, holder, required)


@dataclass(frozen=True)
class _Required:
    """A file's ``required`` errors: each mapping's requirement counted once
    (``seen``), and, for each list of required keys (by id: the schema holds them
    while the file is checked), whether it names distinct texts, so that a missing
    key is one message: counted without the words of any."""

    seen: set[tuple[DataPath, int]] = field(default_factory=set)
    texts: dict[int, bool] = field(default_factory=dict)

    def count(self, error: SchemaError) -> int:
        """How many errors :func:`_missing_worded` words."""
        instance = error.instance
        if not isinstance(instance, dict):
            return 0
        keys: Any = error.validator_value
        missing = [key for key in keys if key not in instance]
        if not missing or isinstance(_subschema(error).get("x-message"), str):
            return len(missing[:1])
        texts = self.texts.get(id(keys))
        if texts is None:
            texts = self.texts[id(keys)] = _distinct_texts(keys)
        return len(missing) if texts else len(dict.fromkeys(map(repr, missing)))


def _distinct_texts(keys: Any) -> bool:
    return all(type(key) is str for key in keys) and len(set(keys)) == len(keys)


def _already_reported(loaded: LoadedFile, path: DataPath) -> bool:
    """Whether the loader reported ``path`` or a value it is inside: one look-up per
    level, however many the loader reported."""
    reported = loaded.reported_paths
    return any(path[:depth] in reported for depth in range(1, len(path) + 1))


def _add_error(
    loaded: LoadedFile,
    path: DataPath,
    error: SchemaError,
    holder: object,
    required: _Required,
) -> None:
    """An unknown key is placed at the key, a missing key at the mapping that lacks
    it, anything else at the value; each worded only if it is listed."""
    problems, name = loaded.problems, loaded.path
    validator = error.validator
    if validator == "additionalProperties":
        keys = list(_unknown_keys(error))
        for key, at in zip(keys, loaded.key_places(error.instance, keys), strict=True):
            line, col = at or loaded.position((*path, key), at_key=True)
            problems.found(name, line, col, 1, 0, _unknown_key_worded, loaded, path, error, key)
        return
    # Where the value at ``path`` is, from the node of ``holder`` (None: the document).
    at = loaded.place(holder, path[-1]) if path else loaded.place(loaded.data)
    line, col = at or loaded.position(path)
    if validator != "required":
        problems.found(name, line, col, 1, 0, _value_worded, loaded, path, error)
        return
    if not isinstance(error, KeywordError):  # a value's own are judged once: no repeat
        requirement = (path, id(error.schema))
        if requirement in required.seen:  # one error per missing key, each naming them all
            return
        required.seen.add(requirement)
    count = required.count(error)
    problems.found(name, line, col, count, 0, _missing_worded, loaded, path, error)


def _unknown_key_worded(
    loaded: LoadedFile, path: DataPath, error: SchemaError, key: str
) -> list[Diagnostic]:
    where = (*path, key)
    return [loaded.diagnostic(where, m, at_key=True) for m in _unknown_key_message(error, key)]


def _missing_worded(loaded: LoadedFile, path: DataPath, error: SchemaError) -> list[Diagnostic]:
    return [loaded.diagnostic(path, message) for message in dict.fromkeys(_missing_keys(error))]


def _value_worded(loaded: LoadedFile, path: DataPath, error: SchemaError) -> list[Diagnostic]:
    return [loaded.diagnostic(path, message) for message in _value_error(loaded, path, error)]


def _value_error(loaded: LoadedFile, path: DataPath, error: SchemaError) -> list[str]:
    message = _message(error)
    trap = describe_value(loaded, path) if _wants_text(error) else None
    return [f"{message}; {trap}: quote it if you mean the text" if trap else message]
