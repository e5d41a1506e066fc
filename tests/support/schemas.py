"""Walking a JSON Schema document, for the tests that check each key is described."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def schema_properties(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every property's JSON path and subschema, through items and additionalProperties."""
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}.{key}", sub
            yield from schema_properties(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from schema_properties(node[key], f"{path}[]")
