"""Checking a file costs time linear in its size, whatever it holds: each YAML 1.1
trap, key and diagnostic costs about the same however many there are.

The cost is counted, not timed: the function calls a check makes (Python's and
the built-ins it calls), for the same hostile file at n, 2n and 4n. Linear work
adds as much from 2n to 4n as twice from n to 2n; work per item that grows with
the items (a copy of the document per trap, a scan of a list per diagnostic)
adds four times as much. Before, a file of 1,000 ``no`` took 23 s of CPU and
2,000 took 120 s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType

import pytest

from syncd.config.configset import check_file
from syncd.config.loader import load_bytes
from syncd.config.semantics import DEFAULT_OPTIONS
from tests.support.configs import minimal

ITEM = "\n".join(minimal("UID").splitlines()[2:]) + "\n"
HEAD = "version: 1\nintegrations:\n"


def _flow_traps(n: int) -> str:
    return "version: 1\nintegrations: [" + ", ".join(["no"] * n) + "]\n"


def _yaml11_values(n: int) -> str:
    values = ["no", "0755", "1:30", "on", "0x1f"]
    listed = ", ".join(values[i % len(values)] for i in range(n))
    return minimal() + f"    display: {{attribute_list: [{listed}]}}\n"


def _mixed_list(n: int) -> str:
    """Texts and numbers, one repeated at the end: jsonschema's uniqueItems compares
    every pair of such."""
    listed = ", ".join([*(f"a{i}" if i % 2 else str(i) for i in range(n)), "a1"])
    return minimal() + f"    display: {{attribute_list: [{listed}]}}\n"


def _unknown_keys(n: int) -> str:
    return "version: 1\nintegrations: []\n" + "".join(f"k{i:06}: 1\n" for i in range(n))


def _unknown_keys_cr(n: int) -> str:
    """Old Mac line breaks: every position past the first LF-line was a split of the text."""
    return _unknown_keys(n).replace("\n", "\r")


def _unknown_keys_inside(n: int) -> str:
    return minimal() + "".join(f"    k{i:06}: 1\n" for i in range(n))


def _duplicate_keys(n: int) -> str:
    return "version: 1\nintegrations: []\n" + "a: 1\n" * n


def _anchors(n: int) -> str:
    return "version: 1\nintegrations: [" + ", ".join(f"&a{i} x" for i in range(n)) + "]\n"


def _aliases(n: int) -> str:
    return "version: 1\nintegrations: [&a x, " + ", ".join(["*a"] * n) + "]\n"


def _tags(n: int) -> str:
    return "version: 1\nintegrations: [" + ", ".join(["!x {}"] * n) + "]\n"


def _duplicate_uids(n: int) -> str:
    return HEAD + "  - {uid: a}\n" * n


def _bad_integrations(n: int) -> str:
    """Whole integrations, each with a schema error deep inside."""
    return HEAD + "".join(ITEM.replace("UID", f"u{i}").replace("1234567", "0") for i in range(n))


def _missing_targets(n: int) -> str:
    action = "      - {action: mention, attribute: a, regex: x}\n"
    return minimal() + "    actions:\n" + action * n


HOSTILE: dict[str, Callable[[int], str]] = {
    "flow traps": _flow_traps,
    "YAML 1.1 values": _yaml11_values,
    "texts and numbers": _mixed_list,
    "unknown keys": _unknown_keys,
    "unknown keys, CR line breaks": _unknown_keys_cr,
    "unknown keys in an integration": _unknown_keys_inside,
    "duplicate keys": _duplicate_keys,
    "anchors": _anchors,
    "aliases": _aliases,
    "tags": _tags,
    "duplicate uids": _duplicate_uids,
    "bad integrations": _bad_integrations,
    "mention actions without a target": _missing_targets,
}


def _calls(text: str) -> int:
    """Function calls made checking ``text`` as one file."""
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    raw = text.encode()
    sys.setprofile(profile)
    try:
        check_file(load_bytes(raw, "a.yaml"), DEFAULT_OPTIONS)
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_checking_a_hostile_file_costs_linear_time(kind: str) -> None:
    make = HOSTILE[kind]
    _calls(make(10))  # imports, compiled schemas and caches: paid once, not per file
    small, double, quadruple = (_calls(make(n)) for n in (200, 400, 800))
    first, second = double - small, quadruple - double
    assert second <= 2.3 * first, (kind, small, double, quadruple)
