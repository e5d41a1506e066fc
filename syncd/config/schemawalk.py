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

Each failure comes with the mapping or list that holds its value, so that the
problem is placed from that value's node (``LoadedFile.place``) instead of by
walking its path from the root: a file of 10,000 broken integrations is placed
in 10,000 look-ups. A value whose own keywords ``keywords`` judges is judged
apart from its children: its own in Python, its children together by one
compiled check (``_below``), which spares the compiled check of the whole and a
walk of each child when they all pass; and the children of every item of a list
are checked together first (``_ITEMS_BELOW``), which spares one check per item.
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
    when it must be checked whole; and its children's (``below``), or None when
    they are not all subschemas walked below it."""

    shape: Shape
    schema: Mapping[str, Any]
    own: Mapping[str, Any] | None
    properties: Mapping[str, _Node]
    additional: _Node | None
    items: _Node | None
    below: Mapping[str, Any] | None = None
    judges: keywords.Judges | None = None  # ``own`` as ``keywords`` judges it
    # Whether a value is walked below this subschema: it has subschemas for
    # children and is not checked whole.
    nested: bool = False
    # Whether its own keywords and its children's are judged apart: ``judges``
    # and ``below`` for them.
    split: bool = False


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
    nested = bool(properties or additional or listed)
    own, below, judges, split = _parts(schema, nested)
    return _Node(shape, schema, own, properties, additional, listed, below, judges, nested, split)


def _parts(
    schema: Mapping[str, Any], nested: bool
) -> tuple[Mapping[str, Any], Mapping[str, Any] | None, keywords.Judges | None, bool]:
    """A subschema's own keywords, its children's (``below``), the judges of its own,
    and whether the two are judged apart (see :class:`_Node`)."""
    own, below = _own(schema), _below(schema)
    judges = keywords.judges(own) if nested else None
    return own, below, judges, below is not None and judges is not None


def _below(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The keywords that judge a value's children, which the walk would walk: a value
    that passes them has no failing child. None when one of them is not a
    subschema (``true``, a list of them), which the walk does not walk the same way."""
    below = {k: schema[k] for k in ("properties", "items") if k in schema}
    if isinstance(schema.get("additionalProperties"), Mapping):
        below["additionalProperties"] = schema["additionalProperties"]
    properties = below.get("properties", {})
    if not isinstance(properties, Mapping) or not all(
        isinstance(sub, Mapping) for sub in properties.values()
    ):
        return None
    return below if isinstance(below.get("items", {}), Mapping) else None


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


@cache
def _compiled_below(schema: Schema, shape: Shape, items: bool) -> Check:
    """The keywords of the subschema at ``shape`` that judge a value's children, or
    (``items``) those of each item of a list."""
    below = _find(_tree(schema), shape).below
    assert below is not None, shape
    return compiled_check({"items": below} if items else below, {})


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
# A failure, and the mapping or list that holds the value at its path: None for
# the document itself.
Placed = tuple[DataPath, SchemaError, object]


def failures(
    schema: Schema, data: object, reported: Callable[[DataPath], bool]
) -> Iterator[Failure]:
    """Every error jsonschema finds in ``data`` (the leaves of a combinator's), with
    the path of the value it is about, but those at or below a ``reported`` path.
    ``data`` is known to fail the compiled check of the whole schema."""
    for path, error, _ in placed_failures(schema, data, reported, judgeable(data)):
        yield path, error


def certainly_valid(schema: Schema, data: object, judged: bool) -> bool:
    """``schema.certainly_valid(data)``, for a document ``judgeable`` (``judged``) or
    not: whether it is, is found once, for this and for :func:`placed_failures`."""
    if schema.formats:
        return schema.certainly_valid(data)
    return judged and _compiled(schema, (), False)(data)


def placed_failures(
    schema: Schema, data: object, reported: Callable[[DataPath], bool], judged: bool
) -> Iterator[Placed]:
    """:func:`failures`, each with the mapping or list that holds its value; for a
    ``data`` that is ``judgeable`` (``judged``) or not."""
    walk = _Walk(schema, reported, {})
    yield from walk.walk(_tree(schema), data, None, (), judged, failed=judged)


@dataclass(frozen=True)
class _Walk:
    """One document's walk: the schema, the paths not to walk, and the compiled
    checks of the subschemas met, by node (``checks``), looked up once each."""

    schema: Schema
    reported: Callable[[DataPath], bool]
    checks: dict[int, Check]  # by id(node) * 4 + part

    def walk(
        self,
        node: _Node,
        value: object,
        holder: object,
        path: DataPath,
        judged: bool,
        *,
        failed: bool = False,
        below_passed: bool = False,
    ) -> Iterator[Placed]:
        """``below_passed``: the value's children are known to pass (:meth:`children`)."""
        judged = judged or judgeable(value)
        own = self.own_judged(node, value, judged)
        if own is not None:  # judged apart from its children: no whole check needed
            for judged_error in own:
                yield path, judged_error, holder
            if not below_passed:
                yield from self.children(node, value, path, judged)
            return
        if not failed and self.passes(node, value, judged, _WHOLE):
            return
        if not node.nested or not isinstance(value, dict | list):
            yield from self.whole(node, value, holder, path)  # nothing below to walk
            return
        for error in self.own_errors(node, value, judged):
            yield path, error, holder
        yield from self.children(node, value, path, judged)

    def own_judged(
        self, node: _Node, value: object, judged: bool
    ) -> list[keywords.KeywordError] | None:
        """The errors of a value's own keywords as ``keywords`` judges them, when the
        compiled check of its children (``_BELOW``) judges the rest: a value passes
        its subschema if and only if it passes both, so the compiled check of the
        whole is spared (a hostile file fails it 10,000 times). None otherwise."""
        if not (judged and node.split and isinstance(value, dict | list)) or self.schema.formats:
            return None
        assert node.judges is not None
        return node.judges.check(value)

    def children(
        self, node: _Node, value: object, path: DataPath, judged: bool
    ) -> Iterator[Placed]:
        """The failures of a value's children, when they do not all pass together.
        Items judged apart from their own children are checked together first: when
        every item's children pass, one compiled check spares one per item."""
        if node.below is not None and self.passes(node, value, judged, _BELOW):
            return
        passed = self.items_pass(node, value, judged)
        for child, below, where in _children(node, value, path):
            if self.reported(where):
                continue
            own = self.own_judged(below, child, judged) if passed else None
            if own is None:
                yield from self.walk(below, child, value, where, judged, below_passed=passed)
            else:  # as walk() would find them, without a walk for each of 10,000 items
                for error in own:
                    yield where, error, value

    def items_pass(self, node: _Node, value: object, judged: bool) -> bool:
        """Whether ``value`` is a list whose items, judged apart from their children,
        all have children that pass."""
        items = node.items
        if not isinstance(value, list) or items is None or not items.split:
            return False
        return self.passes(items, value, judged, _ITEMS_BELOW)

    def passes(self, node: _Node, value: object, judged: bool, part: int) -> bool:
        """Whether ``value`` passes a part of the subschema (``_WHOLE``, ``_OWN``,
        ``_BELOW`` or ``_ITEMS_BELOW``): only a value the compiled check can judge
        (``judged``) is passed by it."""
        if not judged:
            return False
        key = id(node) * 4 + part
        check = self.checks.get(key)
        if check is None:
            if part in (_WHOLE, _OWN):
                check = _compiled(self.schema, node.shape, part == _OWN)
            else:
                check = _compiled_below(self.schema, node.shape, part == _ITEMS_BELOW)
            self.checks[key] = check
        return check(value)

    def own_errors(self, node: _Node, value: object, judged: bool) -> Sequence[SchemaError]:
        """The errors of a value's own keywords: checked by ``keywords`` when it can;
        else by the compiled check, then jsonschema only if that fails."""
        found: Sequence[SchemaError] | None = None
        if not self.schema.formats and node.judges is not None:
            found = node.judges.check(value)
        if found is None and not self.passes(node, value, judged, _OWN):
            found = errors_of(self.schema, node.shape, value, own=True)
        return found or ()

    def whole(self, node: _Node, value: object, holder: object, path: DataPath) -> Iterator[Placed]:
        """A value checked whole: a leaf, a text or number, or below a branch."""
        for error in errors_of(self.schema, node.shape, value):
            below = tuple(error.absolute_path)
            where = (*path, *below)
            if not self.reported(where):
                yield where, error, _holder(value, holder, below)


# The parts of a subschema checked: itself, its own keywords, its children's, and
# (of the subschema of a list's items) its children's in each item of the list.
_WHOLE, _OWN, _BELOW, _ITEMS_BELOW = 0, 1, 2, 3


def _holder(value: object, holder: object, below: Sequence[PathPart]) -> object:
    """The mapping or list that holds the value ``below`` ``value`` (held by ``holder``)."""
    for part in below[:-1]:
        value = value[part]  # type: ignore[index]
    return value if below else holder


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
