"""What the tests hold /metrics to, written once for every test that scrapes it."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

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


def scraped(url: str) -> dict[str, float]:
    """A running daemon's /metrics (``url`` its base), read with the reference
    parser: each sample name's value, summed over its labels. A family with no
    sample yet (a counter nothing fed) is absent."""
    text = requests.get(url + "/metrics", timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values
