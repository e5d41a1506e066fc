"""``syncd validate``: every problem of every file, at its line and column.

With ``--git``, the files of a branch or tag as the remote holds them now, so a
CI job checks a ref without a checkout of its own; they are named as the
repository names them.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.config import semantics
from syncd.config.configset import load_config_set
from syncd.config.diagnostics import Diagnostic, OutputFormat, failed, report, summary
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from syncd.service.daemon import GitSettings

Relabel = Callable[[Iterable[Diagnostic]], list[Diagnostic]]


def default_format() -> OutputFormat:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def validate(
    paths: Sequence[Path],
    *,
    fmt: OutputFormat | None = None,
    strict: bool = False,
    allow_plaintext_tokens: bool = False,
    reach: Reach = DEFAULT_REACH,
    exclude: tuple[str, ...] = (),
    allow_empty: bool = False,
    git: GitSettings | None = None,
) -> int:
    """``git``: check that remote's ref instead of ``paths``."""
    # Loaded data has no reference cycles: the cyclic collector only costs time
    # here (a third of it on 2,000 files) and frees no memory.
    gc.disable()
    try:
        options = semantics.Options(
            allow_plaintext_tokens=allow_plaintext_tokens,
            reach=reach,
            exclude=exclude,
        )
        if git is not None:
            return _validate_ref(git, fmt or default_format(), strict, options, allow_empty)
        return _validate(paths, fmt or default_format(), strict, options, allow_empty)
    finally:
        gc.enable()


def _validate_ref(
    git: GitSettings,
    fmt: OutputFormat,
    strict: bool,
    options: semantics.Options,
    allow_empty: bool,
) -> int:
    from syncd.service.gitref import fetched

    with fetched(git, options.files) as ref:
        print(f"syncd: checking {ref.describe()}", file=sys.stderr)
        # --scope globs are relative to the directory checked, as for a directory given.
        options = replace(options, reach=replace(options.reach, scope_roots=(ref.directory,)))
        return _validate([ref.directory], fmt, strict, options, allow_empty, ref.relabel)


def _validate(
    paths: Sequence[Path],
    fmt: OutputFormat,
    strict: bool,
    options: semantics.Options,
    allow_empty: bool,
    relabel: Relabel = list,
) -> int:
    config = load_config_set(paths, options)
    diagnostics = relabel(config.diagnostics)
    checked = len(config.files)
    found = config.found  # the diagnostics are capped; this counts every problem
    sys.stdout.write(report(diagnostics, fmt, checked, strict=strict, counts=found))
    # The verdict and the count go to stderr, so stdout stays the format's alone;
    # a JSON document carries both itself.
    if fmt != "json":
        if not config.files:
            # A CI job pointed at the wrong directory must not pass.
            print(
                "syncd: no YAML files found" + ("" if allow_empty else " (--allow-empty to pass)"),
                file=sys.stderr,
            )
        else:
            said = summary(diagnostics, checked, strict=strict, counts=found)
            print(f"syncd: {said}", file=sys.stderr)
    empty = not config.files and not allow_empty
    return EXIT_FAILED if failed(diagnostics, strict=strict) or empty else EXIT_OK
