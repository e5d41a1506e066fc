"""Which keys of a repository's own config make syncd refuse to run git there."""

from __future__ import annotations

import pytest

from syncd.reconcile.git import command_settings, names_a_command


@pytest.mark.parametrize(
    "key",
    [
        "filter.lfs.clean",
        "filter.evil.process",
        "Filter.A.B.smudge",
        "core.fsmonitor",
        "core.hooksPath",
        "core.pager",
        "core.editor",
        "core.worktree",
        "diff.external",
        "diff.evil.textconv",
        "diff.evil.command",
        "include.path",
        "includeIf.gitdir:/x/.path",
        "sequence.editor",
    ],
)
def test_a_key_that_names_a_command_is_refused(key: str) -> None:
    assert names_a_command(key)


@pytest.mark.parametrize(
    "key",
    [
        "core.bare",
        "core.filemode",
        "core.sshCommand",  # never run by rev-parse or status
        "remote.origin.url",
        "branch.main.merge",
        "diff.renames",
        "user.name",
        "core.fsmonitor.x.y",  # a subsection named fsmonitor is another key
    ],
)
def test_other_keys_are_left_alone(key: str) -> None:
    assert not names_a_command(key)


def test_only_the_repository_s_own_scopes_count() -> None:
    listing = (
        "local\0core.bare\nfalse\0"
        "worktree\0filter.x.clean\ncat\0"
        "command\0core.fsmonitor\nfalse\0"
        "local\0include.path\n/elsewhere\0"
    )
    assert command_settings(listing) == ["filter.x.clean", "include.path"]
