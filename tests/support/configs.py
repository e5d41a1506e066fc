"""Integration files, written one way: a builder for the YAML text and a writer."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from syncd.config.configset import ConfigSet
from syncd.config.diagnostics import Diagnostic

MINIMAL = """\
version: 1
integrations:
  - uid: {uid}
    project: checkout
    name: {uid}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: 1234567
          token: {{env: HIPCHAT_TOKEN}}
"""


def minimal(uid: str = "checkout-ops") -> str:
    """A whole file with one valid integration; append lines to extend it."""
    return MINIMAL.format(uid=uid)


def trace_config(endpoint: str, rooms: Iterable[str], *, uid: str = "shop-trace") -> str:
    """One integration for project ``shop`` that notifies every event in every room."""
    listed = "\n".join(
        f"        - {{id: {room}, token: {{env: HIPCHAT_TOKEN_{room}}}}}" for room in rooms
    )
    return f"""\
version: 1
integrations:
  - uid: {uid}
    project: shop
    name: every error
    trigger: {{event: trace}}
    display: {{callstack: false, include_hostname: false}}
    hipchat:
      endpoint: {endpoint}
      message_format: text
      rooms:
{listed}
"""


def write_files(root: Path, *files: tuple[str, str | bytes]) -> Path:
    """Write ``(name, content)`` pairs under ``root`` (made if missing); returns ``root``."""
    for name, content in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def room_tokens(*rooms: str) -> dict[str, str]:
    return {room: f"reliability-token-{room}" for room in rooms}


def token_env(tokens: dict[str, str]) -> dict[str, str]:
    """The environment :func:`trace_config`'s ``{env: HIPCHAT_TOKEN_<room>}`` refs resolve from."""
    return {f"HIPCHAT_TOKEN_{room}": token for room, token in tokens.items()}


def errors(config: ConfigSet) -> list[Diagnostic]:
    """The diagnostics of a set that are errors, warnings left out."""
    return [d for d in config.diagnostics if d.severity == "error"]
