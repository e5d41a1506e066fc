"""What YAML makes of a plain (unquoted) scalar, and how to say it to a person.

The loader builds values itself so that a YAML 1.1 reading that YAML 1.2 and
JSON would not make (``no`` as false, ``0755`` as 493, ``1:30`` as 90, a date)
is reported instead of silently changing a value's type. This module holds
those readings and their descriptions; the loader decides when to report one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP = (
    TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
SEQ, MAP, MERGE = TAG + "seq", TAG + "map", TAG + "merge"
KNOWN_SCALARS = frozenset({INT, FLOAT, BOOL, NULL, TIMESTAMP})


class ScalarError(Exception):
    """A tagged scalar whose text does not read as its tag."""


def read_scalar(node: ScalarNode) -> Any:
    """The value of a core-schema scalar; nothing is cached between calls. A plain
    decimal integer and a boolean (YAML 1.1's ``no`` too, looked up as its
    constructor looks it up) are read here directly: a file may hold a hundred
    thousand of them."""
    constructor = yaml.constructor.SafeConstructor
    try:
        if node.tag == INT and PLAIN_INT.match(node.value):
            return int(node.value)
        if node.tag == BOOL:
            return constructor.bool_values[node.value.lower()]
        return constructor.yaml_constructors[node.tag](_STATELESS, node)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, IndexError):
        raise ScalarError(node.tag.removeprefix(TAG)) from None


class _Stateless(yaml.constructor.SafeConstructor):
    """Scalar constructors only read the node; this instance is never given state."""


_STATELESS = _Stateless()
# A decimal integer as YAML 1.1, YAML 1.2 and JSON all read it.
PLAIN_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_PLAIN_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_PLAIN_BOOL = frozenset({"true", "false", "True", "False", "TRUE", "FALSE"})


def is_yaml11_trap(tag: str, text: str) -> bool:
    """A plain scalar that YAML 1.1 reads as a number or boolean where YAML 1.2 and
    JSON would not (``0755``, ``1:30``, ``no``)."""
    if tag == INT:
        return not PLAIN_INT.match(text)
    if tag == FLOAT:
        return not _PLAIN_FLOAT.match(text)
    if tag == BOOL:
        return text not in _PLAIN_BOOL
    return False


def json_literal(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value)


def describe_scalar(node: ScalarNode) -> str:
    """What YAML made of a plain scalar, in words."""
    try:
        value = read_scalar(node)
    except ScalarError:
        return f"a {node.tag.removeprefix(TAG)} it cannot read"
    if node.tag == BOOL:
        return f"the boolean {json_literal(value)}"
    if node.tag == INT:
        return f"the {_int_notation(node.value.lstrip('+-'))}number {value}"
    if node.tag == FLOAT:
        return f"the {'base-60 ' if ':' in node.value else ''}number {value}"
    if node.tag == NULL:
        return "null (no value)"
    if node.tag == TIMESTAMP:
        return f"a date ({value})"
    return f"a {node.tag.removeprefix(TAG)}"


def _int_notation(digits: str) -> str:
    """The notation YAML 1.1 read an integer's digits in, as a word and a space."""
    if ":" in digits:
        return "base-60 "
    if digits.startswith("0x"):
        return "hexadecimal "
    if digits.startswith("0b"):
        return "binary "
    if digits.startswith("0") and digits != "0":
        return "octal "
    return ""
