"""``syncd plan``: what a config dir would change in the running daemon.

With ``--git``, what a branch or tag as the remote holds it now would change,
so a pull request's CI can show the plan of the branch it checks.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from syncd.commands.configdir import load_valid
from syncd.config import plan as planning
from syncd.config import semantics
from syncd.config.configset import load_config_set
from syncd.config.diagnostics import report
from syncd.config.model import Integration
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from syncd.commands.replay import ReplayFormat
    from syncd.service.daemon import GitSettings


def plan(
    config_dir: Path,
    *,
    against: str | None = None,
    token: str | None = None,
    reach: Reach = DEFAULT_REACH,
    exclude: tuple[str, ...] = (),
    git: GitSettings | None = None,
) -> int:
    """Exit 0 when nothing would change, 1 when something would; ``git``: plan
    that remote's ref instead of ``config_dir``."""
    options = semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)
    if git is None:
        integrations = [i.public() for i in load_valid(config_dir, options).integrations]
    else:
        integrations = _load_ref(git, options)
    active: dict[str, Integration] = {}
    if against:
        # The HTTP client is imported only by the commands that talk to a
        # daemon, so that `syncd validate` in a pre-commit hook starts fast.
        from syncd.commands.remote import fetch_registry

        active = fetch_registry(against, token=token)
    result = planning.plan(integrations, active)
    sys.stdout.write(planning.render_plan(result, against=against or "an empty registry"))
    return EXIT_FAILED if result.changed else EXIT_OK


def plan_replay(
    events_file: Path | None,
    config_dir: Path | None,
    *,
    against_config: Path | None,
    against: str | None,
    fmt: str,
    exclude: tuple[str, ...],
) -> int:
    """``--replay``: the counts of recorded events through the new set (and the old)."""
    if events_file is None:
        raise UsageError("--against-config and --format go with --replay EVENTS.jsonl")
    if config_dir is None:
        raise UsageError("--replay needs --config DIR (the new set), not --git")
    if against is not None:
        raise UsageError(
            "--replay compares with --against-config DIR (a checkout of the set in use); "
            "--against URL does not go with --replay"
        )
    from syncd.commands.replay import replay

    shown = cast("ReplayFormat", fmt)
    return replay(
        events_file, config_dir, against_config=against_config, fmt=shown, exclude=exclude
    )


def _load_ref(git: GitSettings, options: semantics.Options) -> list[Integration]:
    """The ref's integrations (public), read before its temporary checkout is
    removed; invalid or rejected, the diagnostics are printed (named as the repository
    names the files) and UsageError raised, as for a directory."""
    from syncd.service.gitref import RefRejected, fetched

    try:
        with fetched(git, options.files) as ref:
            print(f"syncd: planning {ref.describe()}", file=sys.stderr)
            options = replace(options, reach=replace(options.reach, scope_roots=(ref.directory,)))
            config = load_config_set([ref.directory], options)
            diagnostics = ref.relabel(config.diagnostics)
            integrations = [ref.relabel_integration(i.public()) for i in config.integrations]
    except RefRejected as exc:
        raise UsageError(str(exc)) from None
    if not config.valid:
        sys.stdout.write(report(diagnostics, "text", len(config.files), counts=config.found))
        raise UsageError("the config is invalid")
    return integrations
