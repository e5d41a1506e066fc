"""The README's reference table covers every key of the schema."""

from __future__ import annotations

import json
import re
from typing import Any

from syncd.config.schema import INTEGRATIONS
from tests.support.paths import ROOT


def _keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, sub in node.get("properties", {}).items():
        name = prefix + key
        children = sub.get("items", sub) if sub.get("type") == "array" else sub
        nested = _keys(children, name + ("[]." if sub.get("type") == "array" else "."))
        if nested and key != "token":
            out.extend(nested)
        else:
            out.append(name)
    return out


def test_reference_lists_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    integration = INTEGRATIONS.document()["properties"]["integrations"]["items"]
    keys = _keys(integration)
    assert "hipchat.rooms[].token" in keys
    assert "trigger.threshold" in keys
    missing = [k for k in keys if f"| `{k}` |" not in readme]
    assert missing == []


def _schema_nodes(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    required = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        name = prefix + key
        out[name] = {**sub, "_required": key in required}
        children = sub.get("items", sub) if sub.get("type") == "array" else sub
        if key != "token":
            out.update(
                _schema_nodes(children, name + ("[]." if sub.get("type") == "array" else "."))
            )
    return out


def _table_defaults(readme: str) -> dict[str, str]:
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\| `([^`]+)` \| .*? \| (.*?) \| [^|]*\|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_reference_defaults_match_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    integration = INTEGRATIONS.document()["properties"]["integrations"]["items"]
    defaults = _table_defaults(readme)
    wrong = []
    for key, node in _schema_nodes(integration).items():
        if key not in defaults:
            continue
        cell = defaults[key]
        if "default" in node:
            expected = "`" + json.dumps(node["default"]).strip('"') + "`"
            if not cell.startswith(expected):
                wrong.append((key, cell, expected))
        elif node["_required"] and not cell.startswith("required"):
            wrong.append((key, cell, "required"))
        elif not node["_required"] and cell == "required":
            wrong.append((key, cell, "optional"))
    assert wrong == []
