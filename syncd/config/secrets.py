"""Token references, their resolution, and redaction.

The model (config flow step 5) holds a :class:`SecretRef` where the YAML gives a
token. Tokens are read only when an integration is reconciled, and every piece of text
that may leave the process (logs, exceptions, status output) goes through
:func:`redact` with the tokens it might contain.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SecretKind = Literal["env", "file", "credential", "plain"]
PLAIN_DIGEST_PREFIX = "sha256:"
REDACTED = "***"
# Shorter strings are too likely to appear by chance to be worth masking.
_MIN_SECRET_LEN = 4


class SecretError(Exception):
    """A token reference that cannot be resolved; the text never holds the token."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a room token comes from; ``plain`` holds the literal (never shown)."""

    kind: SecretKind
    name: str = field(repr=False)

    def describe(self) -> str:
        if self.kind == "plain":
            return "plaintext token " + REDACTED
        return f"{{{self.kind}: {self.name}}}"

    def __str__(self) -> str:
        return self.describe()

    def public(self) -> SecretRef:
        """This ref safe to show: a literal token becomes a short digest of itself."""
        if self.kind != "plain" or self.name.startswith(PLAIN_DIGEST_PREFIX):
            return self
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        return SecretRef("plain", PLAIN_DIGEST_PREFIX + digest)

    def public_data(self) -> dict[str, str]:
        ref = self.public()
        return {ref.kind: ref.name}

    def resolve(
        self,
        environ: Mapping[str, str] | None = None,
        credentials_dir: str | None = None,
    ) -> str:
        env = os.environ if environ is None else environ
        if self.kind == "plain":
            return self.name
        if self.kind == "env":
            value = env.get(self.name)
            if not value:
                raise SecretError(f"environment variable {self.name} is not set or empty")
            return value.strip()
        if self.kind == "file":
            return _read_secret_file(Path(self.name), self.describe())
        base = credentials_dir or env.get("CREDENTIALS_DIRECTORY")
        if not base:
            raise SecretError(
                f"{self.describe()}: CREDENTIALS_DIRECTORY is not set "
                "(use LoadCredential= in the systemd unit)"
            )
        return _read_secret_file(Path(base) / self.name, self.describe())


# A token is a few dozen bytes; a file much larger is not one.
MAX_SECRET_BYTES = 64 * 1024


def _read_secret_file(path: Path, what: str) -> str:
    """A regular file only, opened without blocking: a FIFO or a device in a secrets
    dir would otherwise hold the reconcile for ever."""
    from syncd.config.loader import read_regular  # YAML's import, only where tokens are read

    try:
        raw = read_regular(path, MAX_SECRET_BYTES + 1)
        value = raw.decode("utf-8").strip()
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{what}: {path} is not UTF-8 text") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise SecretError(f"{what}: {path} is larger than a token ({MAX_SECRET_BYTES} bytes)")
    if not value:
        raise SecretError(f"{what}: {path} is empty")
    return value


def secret_ref_from_data(data: object) -> SecretRef:
    """Build a ref from schema-valid data: a literal string or a one-key mapping."""
    if isinstance(data, str):
        return SecretRef("plain", data)
    if isinstance(data, Mapping) and len(data) == 1:
        ((kind, name),) = data.items()
        if kind in ("env", "file", "credential", "plain") and isinstance(name, str):
            return SecretRef(kind, name)
    raise ValueError(
        "token must be a string or one of {env: NAME}, {file: PATH}, {credential: NAME}"
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text``, longest first."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks the current secrets in every record it passes.

    ``secrets`` is called per record, so tokens rotated by a reload are covered
    without reinstalling the filter.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = list(self._secrets())
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message, secrets)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True
