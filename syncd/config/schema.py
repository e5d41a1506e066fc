"""Config flow step 3: schema errors as diagnostics placed where the file went
wrong, worded for the person who wrote the YAML.

How a document is checked against a shipped schema is ``syncd.schemacheck``'s,
shared with the event flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from copy import deepcopy
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from syncd.config.diagnostics import Diagnostic, json_path
from syncd.config.loader import DataPath, LoadedFile, describe_value
from syncd.config.yamlvalues import json_literal
from syncd.schemacheck import Schema

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

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


def _subschema(error: ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def _message(error: ValidationError) -> str:
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


def _value_message(error: ValidationError) -> str | None:
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


def _size_message(error: ValidationError) -> str | None:
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
    if kind in ("minProperties", "maxProperties"):
        keys = _subschema(error).get("properties", {})
        return "must have exactly one key of: " + ", ".join(keys)
    return None


def _wants_text(error: ValidationError) -> bool:
    """Whether the failing keyword would have taken a string, so quoting may fix it."""
    expected: Any = error.validator_value
    if error.validator == "type":
        return "string" in (expected if isinstance(expected, list) else [expected])
    if error.validator == "enum":
        return any(isinstance(v, str) for v in expected)
    if error.validator == "const":
        return isinstance(expected, str)
    return False


def _unknown_keys(error: ValidationError) -> Iterator[tuple[str, str]]:
    import difflib

    allowed = list(_subschema(error).get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key in instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(allowed)
        yield key, f"unknown key {key!r} ({hint})"


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The specific errors under an ``if``/``then`` or combinator wrapper."""
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def _missing_keys(error: ValidationError) -> Iterator[str]:
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
    read; keep only the suggestions the schema accepts at that place."""
    better: dict[str, str] = {}
    for path, (text, value) in loaded.traps.items():
        if not path:
            continue  # the whole file is one scalar: not an integrations file anyway
        text_errors = _errors_with(loaded.data, path, text)
        value_errors = _errors_with(loaded.data, path, value)
        if text_errors and value_errors:
            better[json_path(path)] = f"neither is valid here: {_message(text_errors[0])}"
        elif text_errors:
            better[json_path(path)] = f"write {json_literal(value)}"
        elif value_errors:
            better[json_path(path)] = f'quote it ("{text}")'
    return [_with_fix(d, better[d.path]) if d.path in better else d for d in diagnostics]


def _with_fix(diagnostic: Diagnostic, fix: str) -> Diagnostic:
    if not diagnostic.message.startswith("YAML 1.1 reads"):
        return diagnostic
    head = diagnostic.message.split(";", 1)[0]
    return replace(diagnostic, message=f"{head}; {fix}")


def _errors_with(data: Any, path: DataPath, value: object) -> list[ValidationError]:
    """The schema's errors at ``path`` with ``value`` put there."""
    copy = deepcopy(data)
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    if INTEGRATIONS.certainly_valid(copy):
        return []
    return [
        leaf
        for top in INTEGRATIONS.validator().iter_errors(copy)
        for leaf in _leaves(top)
        if tuple(leaf.absolute_path) == path
    ]


def schema_diagnostics(loaded: LoadedFile, schema: Schema = INTEGRATIONS) -> list[Diagnostic]:
    """Each schema error placed in the file; none where the loader already reported
    the value (a YAML trap there would only be explained twice)."""
    if schema.certainly_valid(loaded.data):
        return []
    out: dict[Diagnostic, None] = {}  # each once: several errors may name one problem
    for top in schema.validator().iter_errors(loaded.data):
        for error in _leaves(top):
            path: DataPath = tuple(error.absolute_path)
            if not _already_reported(loaded, path):
                out.update(dict.fromkeys(_error_diagnostics(loaded, path, error)))
    return list(out)


def _already_reported(loaded: LoadedFile, path: DataPath) -> bool:
    return any(path[: len(p)] == p for p in loaded.reported_paths if p)


def _error_diagnostics(
    loaded: LoadedFile, path: DataPath, error: ValidationError
) -> list[Diagnostic]:
    """An unknown key is placed at the key, a missing key at the mapping that lacks
    it, anything else at the value."""
    if error.validator == "additionalProperties":
        return [
            loaded.diagnostic((*path, key), message, at_key=True)
            for key, message in _unknown_keys(error)
        ]
    if error.validator == "required":
        return [loaded.diagnostic(path, message) for message in _missing_keys(error)]
    message = _message(error)
    trap = describe_value(loaded, path) if _wants_text(error) else None
    if trap:
        message = f"{message}; {trap}: quote it if you mean the text"
    return [loaded.diagnostic(path, message)]
