"""``syncd run --git``'s flags are the service's own settings, built by the
command line: one class, the webhook's secret read from its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.commands import run
from syncd.errors import UsageError
from syncd.service.daemon import GitSettings


def test_the_command_line_builds_the_service_s_settings_not_a_copy() -> None:
    assert run.GitOptions is GitSettings


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
