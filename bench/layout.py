"""Where a name lives in this checkout's layout and in the flat layout before
sub-packages, so a before-and-after bench imports the same names from both."""

from __future__ import annotations

import importlib
from typing import Any

# New module -> where the same names lived before.
BEFORE = {
    "syncd.config.configset": "syncd.configset",
    "syncd.config.filecache": "syncd.filecache",
    "syncd.config.model": "syncd.model",
    "syncd.delivery.dispatch": "syncd.dispatch",
    "syncd.hipchat.render": "syncd.message",
    "syncd.hipchat.wire": "syncd.hipchat_api",
    "syncd.service.daemon": "syncd.daemon",
}


def load(module: str, name: str) -> Any:
    """``name`` from ``module``, or from where it was before the sub-packages."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError:
        found = importlib.import_module(BEFORE[module])
    return getattr(found, name)
