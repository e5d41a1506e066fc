"""What the tests hold /metrics to, written once for every test that scrapes it."""

from __future__ import annotations

# Pinned here rather than imported from syncd, so a new reason is a decision, not a drift.
FIXED_REASONS = frozenset(
    {
        "rate_limited",
        "connection",
        "server_error",
        "http_400",
        "http_401",
        "http_403",
        "http_404",
        "http_408",
        "http_413",
        "http_other",
    }
)
