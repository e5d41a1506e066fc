"""``syncd status``: a running daemon's /status, as a table or JSON."""

from __future__ import annotations

import json
import sys

from syncd.errors import EXIT_FAILED, EXIT_OK


def status(url: str, *, as_json: bool = False, token: str | None = None) -> int:
    """Exit 0 healthy, 1 degraded; an unreachable daemon is a usage error (2)."""
    from syncd.commands.remote import degraded, fetch_status, render_status

    document = fetch_status(url, token=token)
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(render_status(document))
    return EXIT_FAILED if degraded(document) else EXIT_OK
