"""``syncd status`` shows the git source a daemon follows."""

from __future__ import annotations

from syncd.commands.remote import render_status

GIT = {
    "remote": "https://git.example.com/ops/config.git",
    "ref": "main",
    "path": "hipchat",
    "fetched": "b" * 40,
    "applied": "a" * 40,
    "last_fetch_at": 1796300000.0,
    "last_success_at": 1796299000.0,
    "error": None,
    "failures": 0,
    "next_fetch_in": 12.0,
}


def test_the_git_block_names_remote_ref_commits_and_fetch_times() -> None:
    text = render_status({"applied_revision": "git:" + "a" * 40, "git": GIT})
    assert "git source:         https://git.example.com/ops/config.git main (path hipchat)" in text
    assert f"  fetched:          {'b' * 40}" in text
    assert f"  applied:          {'a' * 40}" in text
    assert "  last fetch:       2026-12-03 12:13:20Z, last success 2026-12-03 11:56:40Z" in text
    assert "  ERROR" not in text


def test_a_failing_fetch_shows_its_error_escaped() -> None:
    failing = {**GIT, "error": "fetch timed out\x1b[31m", "failures": 3}
    text = render_status({"git": failing})
    assert "  ERROR (3 failed in a row): fetch timed out\\x1b[31m" in text


def test_no_git_block_without_a_git_source() -> None:
    assert "git source" not in render_status({"applied_revision": "sha256:00"})
