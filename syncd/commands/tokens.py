"""The bearer token a command sends to a running daemon, or the daemon requires."""

from __future__ import annotations

import os
from pathlib import Path

from syncd.errors import UsageError

TOKEN_ENV = "SYNCD_INGEST_TOKEN"


def read_token(path: Path | None, flag: str) -> str | None:
    """The token in the file ``flag`` named, else ``$SYNCD_INGEST_TOKEN``, else None."""
    if path is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {flag} {path}: {reason}") from None
