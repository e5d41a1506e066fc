"""Error events as the ingest API takes them."""

from __future__ import annotations

from typing import Any

TIMESTAMP = "2026-11-26T12:00:00Z"


def event(project: str = "shop", fingerprint: str = "fp", **fields: Any) -> dict[str, Any]:
    return {"project": project, "fingerprint": fingerprint, "timestamp": TIMESTAMP, **fields}


def numbered_events(first: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    """Events whose message ends in ``n: <number>``; the number identifies them."""
    return [
        {
            **event(fingerprint=f"fp-{n % 7}", classifiers=[f"Error{n}"], attributes={"n": str(n)}),
            **extra,
        }
        for n in range(first, first + count)
    ]
