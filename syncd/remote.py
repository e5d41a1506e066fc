"""Talking to a running daemon from the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from syncd.model import Integration
from syncd.plan import active_from_data


class RegistryFetchError(Exception):
    pass


class EmitError(Exception):
    """The daemon could not be reached or did not answer as a daemon would."""


def emit(
    base_url: str, event: dict[str, Any], *, token: str | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """Post one event; returns the status and the decoded answer."""
    url = base_url.rstrip("/") + "/v1/events"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.post(url, json=event, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise EmitError(f"cannot reach {url}: {type(exc).__name__}") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        raise EmitError(f"{url} answered {response.status_code} without JSON") from None


def fetch_registry(base_url: str, timeout: float = 10.0) -> dict[str, Integration]:
    url = base_url.rstrip("/") + "/v1/registry"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryFetchError(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise RegistryFetchError(f"{url} answered {response.status_code}")
    try:
        payload: Any = response.json()
        return active_from_data(payload["integrations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryFetchError(f"{url} did not answer with a registry: {exc}") from None


def fetch_status(base_url: str, timeout: float = 10.0) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/status"
    try:
        response = requests.get(url, timeout=timeout)
        payload: dict[str, Any] = response.json()
    except requests.RequestException as exc:
        raise RegistryFetchError(f"cannot reach {url}: {type(exc).__name__}") from None
    except ValueError:
        raise RegistryFetchError(f"{url} did not answer with JSON") from None
    return payload


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_status(status: dict[str, Any]) -> str:
    """The daemon's /status as a table for people."""
    lines = [
        f"applied revision:   {status.get('applied_revision') or '-'}",
        f"attempted revision: {status.get('attempted_revision') or '-'}",
    ]
    last = status.get("last_reconcile") or {}
    if last:
        result = "ok" if last.get("ok") else "FAILED (last-known-good stays active)"
        lines.append(f"last reconcile:     {result} at {_when(last.get('at'))}")
        lines.extend(f"  {d}" for d in last.get("diagnostics", []))
    lines.append(f"outbox depth:       {status.get('outbox_depth', 0)}")
    rows = [("INTEGRATION", "STATE", "QUEUE", "ROOM", "HEALTH", "LAST DELIVERY", "LAST ERROR")]
    for uid, info in sorted((status.get("integrations") or {}).items()):
        rooms = info.get("rooms") or {"-": {}}
        for i, (room, health) in enumerate(sorted(rooms.items())):
            first = i == 0
            rows.append(
                (
                    uid if first else "",
                    str(info.get("state", "")) if first else "",
                    str(info.get("queue_depth", 0)) if first else "",
                    room,
                    "ok" if health.get("healthy", True) else "UNHEALTHY",
                    _when(health.get("last_delivery")),
                    str(health.get("last_error") or "-")[:60],
                )
            )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines.append("")
    lines.extend(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    return "\n".join(lines) + "\n"
