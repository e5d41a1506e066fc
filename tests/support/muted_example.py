"""examples/integrations.yaml with its commented-out ``mutes:`` block taken in.

A mute may not end more than ``--max-mute`` (30 days) from now, nor before now,
so the example cannot ship one that stays valid: it ships the block commented
out. This is the example as a user who uncomments it has it, each ``until`` set
to a week from now, for the tests that run on the full example.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.example import Example, example

WEEK = 7 * 86400
_UNTIL = re.compile(r'until: "[^"]*"')


def uncommented_mutes(text: str, until: str) -> str:
    """``text`` with the block from ``# mutes:`` to the end uncommented, and every
    ``until`` in it set to ``until``."""
    head, marker, block = text.partition("\n# mutes:\n")
    assert marker, "the example has no commented-out mutes: block"
    lines = [line.removeprefix("# ") for line in ("# mutes:\n" + block).splitlines()]
    return head + "\n" + _UNTIL.sub(f'until: "{until}"', "\n".join(lines)) + "\n"


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def muted_example(
    tmp_path: Path, endpoint: str = "http://127.0.0.1:9", now: float | None = None
) -> Example:
    """The example (``support.example``) with its mutes, ending a week after ``now``."""
    ex = example(tmp_path, endpoint)
    path = ex.config_dir / "integrations.yaml"
    until = utc((time.time() if now is None else now) + WEEK)
    path.write_text(uncommented_mutes(path.read_text(encoding="utf-8"), until), encoding="utf-8")
    return ex
