"""The README's reference table covers every key of the schema."""

from __future__ import annotations

from typing import Any

from syncd import schema
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
    integration = schema.load_schema(schema.INTEGRATIONS)["properties"]["integrations"]["items"]
    keys = _keys(integration)
    assert "hipchat.rooms[].token" in keys
    assert "trigger.threshold" in keys
    missing = [k for k in keys if f"| `{k}` |" not in readme]
    assert missing == []
