"""Talking to a running daemon from the command line."""

from __future__ import annotations

from typing import Any

import requests

from syncd.model import Integration
from syncd.plan import active_from_data


class RegistryFetchError(Exception):
    pass


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
