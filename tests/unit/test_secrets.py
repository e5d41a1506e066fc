"""Token references resolve from env, files and systemd credentials; redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syncd.config.secrets import RedactingFilter, SecretError, SecretRef, redact


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOM_TOKEN", " env-token-value\n")
    assert SecretRef("env", "ROOM_TOKEN").resolve() == "env-token-value"
    monkeypatch.setenv("ROOM_TOKEN", "")
    with pytest.raises(SecretError, match="ROOM_TOKEN is not set or empty"):
        SecretRef("env", "ROOM_TOKEN").resolve()


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-token-value\n")
    assert SecretRef("file", str(path)).resolve() == "file-token-value"
    with pytest.raises(SecretError, match=r"cannot read .*missing: No such file"):
        SecretRef("file", str(tmp_path / "missing")).resolve()
    path.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        SecretRef("file", str(path)).resolve()


def test_credential_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hipchat-ops").write_text("credential-token-value")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef("credential", "hipchat-ops").resolve() == "credential-token-value"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(SecretError, match="CREDENTIALS_DIRECTORY is not set"):
        SecretRef("credential", "hipchat-ops").resolve()


def test_a_ref_never_shows_a_literal_token() -> None:
    ref = SecretRef("plain", "literal-token-value")
    assert "literal-token-value" not in repr(ref) + str(ref) + ref.describe()
    public = ref.public()
    assert public.name.startswith("sha256:") and "literal" not in public.name
    assert public.public() == public
    assert SecretRef("env", "X").public() == SecretRef("env", "X")


def test_redact_longest_first_and_short_strings_left_alone() -> None:
    text = "abc tok-123 tok-123456 tok"
    assert redact(text, ["tok-123", "tok-123456", "tok"]) == "abc *** *** tok"


def test_redacting_filter_masks_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = ["secret-room-token"]
    logger = logging.getLogger("syncd.test.redact")
    caplog.handler.addFilter(RedactingFilter(lambda: secrets))
    with caplog.at_level(logging.INFO, logger="syncd.test.redact"):
        logger.info("posting with %s", "secret-room-token")
        try:
            raise ValueError("bad token secret-room-token")
        except ValueError:
            logger.exception("failed")
    assert "secret-room-token" not in caplog.text
    assert caplog.text.count("***") >= 2
