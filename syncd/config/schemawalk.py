"""Where a document fails its schema, found in time linear in the document.

jsonschema words syncd's schema messages, but checks a document in Python, some
tens of microseconds a value; the compiled check (``syncd.schemacheck``) only
says yes or no, in Rust. So the document is walked along the schema: a value
the compiled check passes is skipped whole, a value that fails has its own
keywords (``type``, ``required``, unknown keys...) explained by jsonschema,
and its children are walked in turn. A value the loader already reported (a
YAML 1.1 trap, a duplicate key) is not walked: its schema errors would only
explain it twice. So one bad integration among thousands costs that
integration, and a file of 10,000 reported values costs no jsonschema at all.

A subschema whose keywords reach below the value they stand on other than by
``properties``, ``additionalProperties`` and ``items`` (``allOf``, a ``$ref``,
a ``then`` with ``properties``...) is checked whole by jsonschema instead: the
same errors, found more slowly. The shipped schema has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from syncd.config import keywords
from syncd.config.keywords import comparable
from syncd.config.loader import DataPath, PathPart
from syncd.schemacheck import Check, Schema, compiled_check, judgeable

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

# Keywords that may judge a value below the one they stand on, other than by
# ``properties``, ``additionalProperties`` and ``items`` (``if`` only chooses).
_BRANCHES = (
    "allOf", "anyOf", "oneOf", "not", "then", "else", "$ref", "$dynamicRef",
    "dependentSchemas", "patternProperties", "prefixItems", "unevaluatedProperties",
    "unevaluatedItems", "contains",
)  # fmt: skip
_DESCENDS = ("properties", "additionalProperties", "items", *_BRANCHES)

# A subschema's place: property names, ITEMS for a list's items, OTHERS for the
# values of keys not named in ``properties``.
Shape = tuple[str | int, ...]
ITEMS, OTHERS = 0, 1


@dataclass(frozen=True)
class _Node:
    """One subschema: its own keywords apart from its children's (``own``), or None
    when it must be checked whole."""

    shape: Shape
    schema: Mapping[str, Any]
    own: Mapping[str, Any] | None
    properties: Mapping[str, _Node]
    additional: _Node | None
    items: _Node | None

    @property
    def leaf(self) -> bool:
        return not (self.properties or self.additional or self.items)


def _reaches_below(branch: object) -> bool:
    """Whether a branch's subschema(s) may judge a value below the one it stands on."""
    if isinstance(branch, list):
        return any(_reaches_below(b) for b in branch)
    if isinstance(branch, str):
        return True  # a reference: not followed here
    return isinstance(branch, Mapping) and any(key in branch for key in _DESCENDS)


def _node(schema: Mapping[str, Any], shape: Shape) -> _Node:
    if any(_reaches_below(schema.get(k)) for k in _BRANCHES):
        return _Node(shape, schema, None, {}, None, None)
    properties = {
        key: _node(sub, (*shape, key))
        for key, sub in schema.get("properties", {}).items()
        if isinstance(sub, Mapping)
    }
    extra, items = schema.get("additionalProperties"), schema.get("items")
    additional = _node(extra, (*shape, OTHERS)) if isinstance(extra, Mapping) else None
    listed = _node(items, (*shape, ITEMS)) if isinstance(items, Mapping) else None
    return _Node(shape, schema, _own(schema), properties, additional, listed)


def _own(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The keywords that judge the value itself, its children's subschemas left out."""
    own = {k: v for k, v in schema.items() if k != "items"}
    if "properties" in own:  # kept by name: they tell an unknown key from a known one
        own["properties"] = dict.fromkeys(own["properties"], True)
    if isinstance(own.get("additionalProperties"), Mapping):
        own["additionalProperties"] = True
    return own


@cache
def _tree(schema: Schema) -> _Node:
    return _node(schema.document(), ())


@cache
def _compiled(schema: Schema, shape: Shape, own: bool) -> Check:
    """The subschema at ``shape`` compiled as ``syncd.schemacheck`` compiles a whole one."""
    return compiled_check(_subschema(schema, shape, own), {})


def _subschema(schema: Schema, shape: Shape, own: bool) -> Mapping[str, Any]:
    node = _find(_tree(schema), shape)
    return node.own if own and node.own is not None else node.schema


def _find(node: _Node, shape: Shape) -> _Node:
    for step in shape:
        below = node.items if step == ITEMS else node.additional if step == OTHERS else None
        if isinstance(step, str):
            below = node.properties[step]
        assert below is not None, shape
        node = below
    return node


def _fails(schema: Schema, node: _Node, value: object, judged: bool, *, own: bool) -> bool:
    """Whether ``value`` may fail the subschema: only a value the compiled check can
    judge (``judged``) is passed by it."""
    return not (judged and _compiled(schema, node.shape, own)(value))


@cache
def explainer(
    schema: Schema, shape: Shape = (), own: bool = False
) -> jsonschema.protocols.Validator:
    """jsonschema's validator of the subschema at ``shape`` (of its own keywords
    only, with ``own``), with ``uniqueItems`` in linear time and ``required`` as
    one error."""
    import jsonschema

    base = schema.validator()
    mine = {"uniqueItems": _unique_items, "required": _required}
    cls = jsonschema.validators.extend(type(base), validators=mine)  # type: ignore[no-untyped-call]
    formats = getattr(base, "format_checker", None)
    validator: jsonschema.protocols.Validator = cls(
        _subschema(schema, shape, own), format_checker=formats
    )
    return validator


def _unique_items(
    validator: jsonschema.protocols.Validator, unique: object, instance: object, schema: object
) -> Iterator[ValidationError]:
    """``uniqueItems`` in linear time: jsonschema's own compares every pair when the
    items do not sort (texts and numbers mixed), and a list of 20,000 takes hours."""
    from jsonschema.exceptions import ValidationError

    if not unique or not isinstance(instance, list):
        return
    seen: set[object] = set()
    for item in instance:
        key = comparable(item)
        if key in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


def _required(
    validator: jsonschema.protocols.Validator, required: Any, instance: object, schema: object
) -> Iterator[ValidationError]:
    """``required`` as one error for all the keys missing: jsonschema's own gives one
    per key, each naming the whole list, and syncd words the list once."""
    from jsonschema.exceptions import ValidationError

    if not isinstance(instance, dict):
        return
    missing = [key for key in required if key not in instance]
    if missing:
        yield ValidationError(f"{missing[0]!r} is a required property")


class SchemaError(Protocol):
    """What syncd's wording reads of an error: jsonschema's ValidationError, or a
    ``keywords.KeywordError`` for a keyword checked without it."""

    @property
    def validator(self) -> Any: ...
    @property
    def validator_value(self) -> Any: ...
    @property
    def instance(self) -> Any: ...
    @property
    def schema(self) -> Any: ...
    @property
    def message(self) -> Any: ...
    @property
    def absolute_path(self) -> Any: ...
    @property
    def context(self) -> Any: ...


Failure = tuple[DataPath, SchemaError]


def failures(
    schema: Schema, data: object, reported: Callable[[DataPath], bool]
) -> Iterator[Failure]:
    """Every error jsonschema finds in ``data`` (the leaves of a combinator's), with
    the path of the value it is about, but those at or below a ``reported`` path.
    ``data`` is known to fail the compiled check of the whole schema."""
    judged = judgeable(data)
    yield from _walk(schema, _tree(schema), data, (), reported, judged, failed=judged)


def _walk(
    schema: Schema,
    node: _Node,
    value: object,
    path: DataPath,
    reported: Callable[[DataPath], bool],
    judged: bool,
    *,
    failed: bool = False,
) -> Iterator[Failure]:
    judged = judged or judgeable(value)
    if not failed and not _fails(schema, node, value, judged, own=False):
        return
    if node.own is None or node.leaf or not isinstance(value, dict | list):
        yield from _whole(schema, node, value, path, reported)  # nothing below to walk
        return
    yield from _own_errors(schema, node, value, path, judged)
    for child, below, where in _children(node, value, path):
        if not reported(where):
            yield from _walk(schema, below, child, where, reported, judged)


def _own_errors(
    schema: Schema, node: _Node, value: object, path: DataPath, judged: bool
) -> Iterator[Failure]:
    """The errors of a value's own keywords: checked by ``keywords`` when it can;
    else by the compiled check, then jsonschema only if that fails."""
    own = node.own if node.own is not None else node.schema
    found: Sequence[SchemaError] | None = None
    if not schema.formats:
        found = keywords.check(own, value)
    if found is None and _fails(schema, node, value, judged, own=True):
        found = errors_of(schema, node.shape, value, own=True)
    for error in found or ():
        yield path, error


def _whole(
    schema: Schema,
    node: _Node,
    value: object,
    path: DataPath,
    reported: Callable[[DataPath], bool],
) -> Iterator[Failure]:
    """A value checked whole: a leaf, a text or number, or below a branch."""
    for error in errors_of(schema, node.shape, value):
        where = (*path, *error.absolute_path)
        if not reported(where):
            yield where, error


def _children(node: _Node, value: object, path: DataPath) -> Iterator[tuple[Any, _Node, DataPath]]:
    if isinstance(value, dict):
        for key, child in value.items():
            below = node.properties.get(key, node.additional)
            if below is not None:
                yield child, below, (*path, key)
    elif isinstance(value, list) and node.items is not None:
        for index, child in enumerate(value):
            yield child, node.items, (*path, index)


def errors_of(schema: Schema, shape: Shape, value: Any, *, own: bool = False) -> list[SchemaError]:
    """The errors of ``value`` against the subschema at ``shape`` (its own keywords
    only, with ``own``): checked by ``keywords`` when it can, by jsonschema when not;
    the leaves of a combinator's."""
    subschema = _subschema(schema, shape, own)
    found = None if schema.formats else keywords.check(subschema, value)
    if found is not None:
        return list(found)
    validator = explainer(schema, shape, own)
    return [leaf for top in validator.iter_errors(value) for leaf in leaves(top)]


def leaves(error: SchemaError) -> Iterator[SchemaError]:
    """The specific errors under an ``if``/``then`` or combinator wrapper."""
    if error.context:
        for sub in error.context:
            yield from leaves(sub)
    else:
        yield error


def judging(schema: Schema, path: DataPath) -> tuple[Shape, Mapping[str, Any]] | None:
    """The subschema that alone judges the value at ``path``, and its place; None
    when none applies there, or when one on the way is checked whole."""
    node: _Node | None = _tree(schema)
    for step in path:
        if node is None or node.own is None:
            return None
        node = _step(node, step)
    return None if node is None else (node.shape, node.schema)


def _step(node: _Node, step: PathPart) -> _Node | None:
    if isinstance(step, int):
        return node.items
    return node.properties.get(step, node.additional)
