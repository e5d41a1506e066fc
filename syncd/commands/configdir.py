"""Loading a config dir that a command needs whole and valid (plan, test)."""

from __future__ import annotations

import sys
from pathlib import Path

from syncd.config import semantics
from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.diagnostics import report
from syncd.errors import UsageError


def load_valid(path: Path, options: semantics.Options) -> ConfigSet:
    """The config set; invalid, its diagnostics are printed and UsageError raised."""
    config = load_config_set([path], options)
    if not config.valid:
        diagnostics = list(config.diagnostics)
        sys.stdout.write(report(diagnostics, "text", len(config.files), counts=config.found))
        raise UsageError("the config is invalid")
    return config
