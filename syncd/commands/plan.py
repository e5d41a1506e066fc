"""``syncd plan``: what a config dir would change in the running daemon."""

from __future__ import annotations

import sys
from pathlib import Path

from syncd.commands.configdir import load_valid
from syncd.config import plan as planning
from syncd.config import semantics
from syncd.config.model import Integration
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.errors import EXIT_FAILED, EXIT_OK


def plan(
    config_dir: Path,
    *,
    against: str | None = None,
    token: str | None = None,
    reach: Reach = DEFAULT_REACH,
    exclude: tuple[str, ...] = (),
) -> int:
    """Exit 0 when nothing would change, 1 when something would."""
    options = semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)
    config = load_valid(config_dir, options)
    active: dict[str, Integration] = {}
    if against:
        # The HTTP client is imported only by the commands that talk to a
        # daemon, so that `syncd validate` in a pre-commit hook starts fast.
        from syncd.commands.remote import fetch_registry

        active = fetch_registry(against, token=token)
    result = planning.plan([i.public() for i in config.integrations], active)
    sys.stdout.write(planning.render_plan(result, against=against or "an empty registry"))
    return EXIT_FAILED if result.changed else EXIT_OK
