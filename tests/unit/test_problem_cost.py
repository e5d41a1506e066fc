"""A problem past the caps is counted, not placed by its path or put in words.

A file lists at most ``MAX_FILE_DIAGNOSTICS`` problems and counts the rest, but
finding where a problem is by walking its path through the YAML tree, and
wording it (its JSON path, its message, a ``Diagnostic``), cost more than
finding it; a hostile file holds tens of thousands. So, whatever a file holds,
only about as many problems as are listed are walked to and worded: a file of
10,000 problems as many as one of 2,500. The work is counted, not timed: the
calls of the functions that do it, and the diagnostics made.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.config import diagnostics as diagnostics_module
from syncd.config import loader as loader_module
from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.diagnostics import (
    MAX_FILE_DIAGNOSTICS,
    MAX_SET_DIAGNOSTICS,
    Diagnostic,
    Listing,
)
from syncd.config.filecache import ConfigLoader
from tests.support.configs import minimal, write_files

HEAD = "version: 1\nintegrations:\n"


def _duplicate_uids(n: int) -> str:
    """The issue's file: each item lacks three keys and repeats one uid."""
    return "version: 1\nintegrations: [" + ", ".join(["{uid: a}"] * n) + "]\n"


def _flow_traps(n: int) -> str:
    return "version: 1\nintegrations: [" + ", ".join(["no"] * n) + "]\n"


def _not_mappings(n: int) -> str:
    """A schema error on each value that is not a mapping (placed at a scalar)."""
    return "version: 1\nintegrations: [" + ", ".join(["1"] * n) + "]\n"


def _unknown_keys(n: int) -> str:
    return "version: 1\nintegrations: []\n" + "".join(f"k{i}: 1\n" for i in range(n))


def _unknown_keys_inside(n: int) -> str:
    return minimal() + "".join(f"    k{i}: 1\n" for i in range(n))


def _bad_actions(n: int) -> str:
    """An enum error deep in one integration, n times."""
    action = "      - {action: nope, attribute: a, regex: x}\n"
    return minimal() + "    actions:\n" + action * n


def _duplicate_keys(n: int) -> str:
    return "version: 1\nintegrations: []\n" + "a: 1\n" * n


def _tags(n: int) -> str:
    return "version: 1\nintegrations: [" + ", ".join(["!x {}"] * n) + "]\n"


def _rooms_listed_twice(n: int) -> str:
    room = "        - {id: 1, token: {env: T}}\n"
    return minimal().split("        - id:")[0] + room * n


def _plaintext_tokens(n: int) -> str:
    """A warning per room, and one error so that no integration is built."""
    rooms = "".join(f"        - {{id: {i + 1}, token: plain}}\n" for i in range(n))
    return minimal().split("        - id:")[0] + rooms + "    colour: red\n"


def _invalid_regexes(n: int) -> str:
    """An error per action, in integrations of as many actions as one may have."""
    per = 100  # the default --max-actions
    actions = "    actions:\n" + "      - {action: filter, attribute: a, regex: '('}\n" * per
    items = (minimal(f"u{i}").removeprefix(HEAD) + actions for i in range(n // per))
    return HEAD + "".join(items)


HOSTILE: dict[str, Callable[[int], str]] = {
    "duplicate uids": _duplicate_uids,
    "YAML 1.1 traps": _flow_traps,
    "values that are not mappings": _not_mappings,
    "unknown keys": _unknown_keys,
    "unknown keys in an integration": _unknown_keys_inside,
    "bad values deep in a file": _bad_actions,
    "duplicate keys": _duplicate_keys,
    "tags": _tags,
    "rooms listed twice": _rooms_listed_twice,
    "plaintext tokens": _plaintext_tokens,
    "invalid regexes": _invalid_regexes,
}


def _work(load: Callable[[], ConfigSet]) -> tuple[Counter[str], ConfigSet]:
    """What ``load`` did of the work counted, and its result: each function that
    walks a path through the YAML tree or words a problem is wrapped, wherever a
    module of syncd holds it."""
    seen: Counter[str] = Counter()
    watched = {
        loader_module._deepest: "path walked",
        diagnostics_module.json_path: "path worded",
    }

    def counted(function: Callable[..., Any], what: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[what] += 1
            return function(*args, **kwargs)

        return call

    made = Diagnostic.__init__
    with pytest.MonkeyPatch.context() as patch:
        for module in [m for name, m in sys.modules.items() if name.startswith("syncd.")]:
            for name, value in list(vars(module).items()):
                if callable(value) and value in watched:
                    patch.setattr(module, name, counted(value, watched[value]))
        patch.setattr(Diagnostic, "__init__", counted(made, "diagnostic made"))
        config = load()
    return seen, config


def _checked(tmp_path: Path, name: str, *files: tuple[str, str]) -> Callable[[], ConfigSet]:
    root = tmp_path / name
    write_files(root, *files)
    return lambda: load_config_set([root])


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_problem_past_the_cap_is_counted_not_placed_or_worded(kind: str, tmp_path: Path) -> None:
    make = HOSTILE[kind]
    few, _ = _work(_checked(tmp_path, "few", ("a.yaml", make(2_500))))
    many, many_set = _work(_checked(tmp_path, "many", ("a.yaml", make(10_000))))
    assert many_set.found.errors + many_set.found.warnings >= 10_000 - 1, kind
    assert many_set.found.omitted > many_set.found.errors + many_set.found.warnings - 200, kind
    for what in ("path walked", "path worded", "diagnostic made"):
        assert many[what] <= 3 * MAX_FILE_DIAGNOSTICS, (kind, what, few, many)
        assert many[what] <= few[what] + 5, (kind, what, few, many)


def test_the_daemons_loader_counts_what_it_does_not_list(tmp_path: Path) -> None:
    """The reconcile of the issue's 60 KB file, and the set it gives."""
    root = write_files(tmp_path / "config", ("a.yaml", minimal("first")))
    loader = ConfigLoader()
    loader.load([root])
    write_files(root, ("big.yaml", _duplicate_uids(6_000)))
    work, config = _work(lambda: loader.load([root], changed=["big.yaml"]))
    assert config.found.errors == 6_000 * 4
    assert len(config.diagnostics) == MAX_FILE_DIAGNOSTICS + 1
    for what in ("path walked", "path worded", "diagnostic made"):
        assert work[what] <= 3 * MAX_FILE_DIAGNOSTICS, (what, work)


def test_files_past_the_sets_cap_cost_their_own_cap_at_most(tmp_path: Path) -> None:
    """Each file words at most its own cap's worth, however many problems it holds."""
    files = MAX_SET_DIAGNOSTICS // MAX_FILE_DIAGNOSTICS + 5

    def many(n: int) -> tuple[tuple[str, str], ...]:
        return tuple((f"f{f:02}.yaml", _duplicate_uids(n)) for f in range(files))

    few, _ = _work(_checked(tmp_path, "few", *many(250)))
    more, config = _work(_checked(tmp_path, "many", *many(1_000)))
    assert config.found.errors == files * 1_000 * 4
    assert config.found.omitted == config.found.errors - MAX_SET_DIAGNOSTICS
    for what in ("path walked", "path worded", "diagnostic made"):
        assert more[what] <= 3 * files * MAX_FILE_DIAGNOSTICS, (what, more)
        assert more[what] <= few[what] + 5 * files, (what, few, more)


def _shuffled_problems(seed: int, count: int) -> list[Diagnostic]:
    """Errors and warnings at distinct places of three files, in no order."""
    rng = random.Random(seed)
    places = rng.sample(range(1, 50 * count), count)
    return [
        Diagnostic(
            f"f{place % 3}.yaml",
            place // 7 + 1,
            place % 7 + 1,
            "",
            f"problem {place}",
            "error" if rng.random() < 0.7 else "warning",
        )
        for place in places
    ]


@pytest.mark.parametrize("count", [MAX_FILE_DIAGNOSTICS - 1, 3 * MAX_FILE_DIAGNOSTICS, 10_000])
def test_a_listing_lists_the_first_by_place_and_counts_the_rest_in_any_order(count: int) -> None:
    """Errors before warnings, then by place, however the problems come: the bar that
    counts a problem without keeping it never counts one that would be listed."""
    problems = _shuffled_problems(count, count)
    ordered = sorted(problems, key=lambda d: (d.severity != "error", d.file, d.line, d.col))
    listed, rest = ordered[:MAX_FILE_DIAGNOSTICS], ordered[MAX_FILE_DIAGNOSTICS:]
    rng = random.Random(count)
    for _ in range(3):
        rng.shuffle(problems)
        shown, omitted = Listing(MAX_FILE_DIAGNOSTICS).extend(problems).result()
        assert shown == sorted(listed)
        if not rest:
            assert omitted is None
            continue
        assert omitted is not None
        errors = sum(d.severity == "error" for d in rest)
        assert (omitted.errors, omitted.warnings) == (errors, len(rest) - errors)
        first = min(rest)
        assert (omitted.first.file, omitted.first.line, omitted.first.col) == (
            first.file,
            first.line,
            first.col,
        )


def test_only_the_problems_listed_are_worded() -> None:
    worded: list[int] = []

    def word(n: int) -> list[Diagnostic]:
        worded.append(n)
        return [Diagnostic("a.yaml", n, 1, "", f"problem {n}")]

    listing = Listing(MAX_FILE_DIAGNOSTICS)
    lines = random.Random(5).sample(range(1, 100_000), 10_000)
    for n in lines:
        listing.found("a.yaml", n, 1, 1, 0, word, n)
    shown, omitted = listing.result()
    assert [d.line for d in shown] == sorted(lines)[:MAX_FILE_DIAGNOSTICS]
    assert sorted(worded) == [d.line for d in shown]
    assert omitted is not None and omitted.errors == 10_000 - MAX_FILE_DIAGNOSTICS
