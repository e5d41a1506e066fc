"""``syncd run --git``'s flags are the service's own settings, built by the
command line: one class, the webhook's secret read from its file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from syncd import cli
from syncd.cli import build_parser
from syncd.commands import run
from syncd.errors import UsageError
from syncd.service.daemon import GitSettings


def test_the_command_line_builds_the_service_s_settings_not_a_copy(tmp_path: Path) -> None:
    """``run`` takes the flags ``validate --git`` and ``plan --git`` take, read by
    the same code, and the daemon's own besides."""
    given = ["--git", "file:///x", "--git-ref", "main", "--git-path", "integrations"]
    daemon_only = ["--git-interval", "7", "--git-forbid-rewrites"]
    hook = ["--git-webhook-secret-file", str(tmp_path / "secret")]
    ran = build_parser("run").parse_args(["run", *given, *daemon_only, *hook])
    checked = build_parser("validate").parse_args(["validate", *given])
    settings = cli._git_options(ran)
    assert type(settings) is GitSettings
    assert settings == replace(
        cli._git_ref(checked),
        interval=7.0,
        forbid_rewrites=True,
        webhook_secret_file=tmp_path / "secret",
    )
    assert settings.ref == "main" and settings.path == "integrations"
    assert not hasattr(run, "GitOptions")


def test_the_webhook_secret_is_read_into_the_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hook-secret-77\n")
    given = GitSettings("file:///x", path="integrations", webhook_secret_file=secret)
    settings = run._git_settings(given, None)
    assert settings is not None
    assert settings.webhook_secret == b"hook-secret-77"
    assert settings.webhook_secret_file == secret
    assert "hook-secret-77" not in repr(settings)
    assert settings.source() == given.source()


def test_no_secret_file_no_secret(tmp_path: Path) -> None:
    given = GitSettings("file:///x")
    assert run._git_settings(given, None) == given
    assert run._git_settings(None, None) is None


def test_an_empty_secret_file_or_a_git_dir_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match=r"--git-webhook-secret-file .* is empty"):
        run._git_settings(GitSettings("file:///x", webhook_secret_file=empty), None)
    with pytest.raises(UsageError, match="--git-dir is for a local --config checkout"):
        run._git_settings(GitSettings("file:///x"), tmp_path)
