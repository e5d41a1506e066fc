"""``syncd plan``: what a config dir would change in the running daemon.

With ``--git``, what a branch or tag as the remote holds it now would change,
so a pull request's CI can show the plan of the branch it checks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from syncd.commands.configdir import load_valid
from syncd.config import plan as planning
from syncd.config import semantics
from syncd.config.configset import load_config_set
from syncd.config.diagnostics import printable, report
from syncd.config.model import Integration
from syncd.config.mutes import Mute
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from syncd.commands.replay import ReplayFormat
    from syncd.service.daemon import GitSettings


@dataclass(frozen=True)
class _Set:
    """What a plan compares of a set: its integrations (public) and its mutes."""

    integrations: Sequence[Integration] = ()
    mutes: Sequence[Mute] = ()


def plan(
    config_dir: Path | None,
    *,
    against: str | None = None,
    against_config: Path | None = None,
    fmt: planning.PlanFormat = "text",
    token: str | None = None,
    reach: Reach = DEFAULT_REACH,
    exclude: tuple[str, ...] = (),
    git: GitSettings | None = None,
) -> int:
    """Exit 0 when nothing would change, 1 when something would (a mute added,
    changed or removed included); ``git``: plan that remote's ref instead of
    ``config_dir``; ``against_config``: compare with that directory (the set in
    use) instead of a daemon."""
    if against is not None and against_config is not None:
        raise UsageError("give --against URL or --against-config DIR, not both")
    options = semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)
    desired = _load_ref(git, options) if git is not None else _load_dir(config_dir, options)
    active, label = _active(against, against_config, token, options)
    result = planning.plan(desired.integrations, {i.uid: i for i in active.integrations})
    mutes = planning.plan_mutes(desired.mutes, active.mutes)
    now = reach.clock() if reach.clock is not None else time.time()
    sys.stdout.write(planning.render_plan(result, against=label, mutes=mutes, now=now, fmt=fmt))
    return EXIT_FAILED if result.changed or mutes.changed else EXIT_OK


def _load_dir(config_dir: Path | None, options: semantics.Options) -> _Set:
    if config_dir is None:
        raise UsageError("give --config DIR or --git URL")
    config = load_valid(config_dir, options)
    return _Set([i.public() for i in config.integrations], config.mutes)


def _active(
    against: str | None, against_config: Path | None, token: str | None, options: semantics.Options
) -> tuple[_Set, str]:
    """The set compared with, and its name in the plan. A directory is the set in
    use, so a mute of it past its time is only a warning there, as in the daemon."""
    if against_config is not None:
        lenient = replace(options.reach, expired_mutes="warning", scope_roots=(against_config,))
        return _load_dir(against_config, replace(options, reach=lenient)), str(against_config)
    if against is None:
        return _Set(), "an empty registry"
    return _fetch_registry(against, token), against


def _fetch_registry(base_url: str, token: str | None, timeout: float = 10.0) -> _Set:
    """The daemon's set, from one answer so that the integrations and the mutes are
    of one revision; a daemon older than mutes answers without ``mutes``: none."""
    # The HTTP client is imported only by the commands that talk to a
    # daemon, so that `syncd validate` in a pre-commit hook starts fast.
    from syncd.commands import remote

    payload = remote.fetch_registry(base_url, token=token, timeout=timeout)
    try:
        integrations = planning.active_from_data(payload["integrations"])
        mutes = planning.mutes_from_data(payload.get("mutes") or ())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise remote.RegistryFetchError(
            f"{base_url.rstrip('/')}/v1/registry did not answer with a registry: "
            f"{printable(str(exc))}"
        ) from None
    return _Set(list(integrations.values()), mutes)


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


def _load_ref(git: GitSettings, options: semantics.Options) -> _Set:
    """The ref's integrations (public) and mutes, read before its temporary checkout is
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
    return _Set(integrations, config.mutes)
