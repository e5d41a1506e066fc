"""Token references, their resolution, and redaction.

The model (config flow step 5) holds a :class:`SecretRef` where the YAML gives a
token. Tokens are read only when an integration is reconciled, and every piece of text
that may leave the process (logs, exceptions, status output) goes through
:func:`redact` with the tokens it might contain, or a :class:`Redactor` of them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
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
    """``text`` with every occurrence of each secret replaced.

    A text that holds none of them is returned as it is, with no redactor
    built: every send's result passes through here, nearly always as "sent",
    and building one for a room's token and its quoted forms cost 14 us a send.
    """
    held = tuple(secrets)
    if not any(len(s) >= _MIN_SECRET_LEN and s in text for s in held):
        return text
    return Redactor.of(held).redact(text)


# The secrets that begin alike, by length, longest first: one secret as itself,
# several as a set, so that a text's place beginning so costs a look-up per
# length, however many tokens share a prefix ("ghp_", say).
_Starting = tuple[tuple[int, str | frozenset[str]], ...]


@dataclass(frozen=True)
class Redactor:
    """Masks a set of secrets: every character of an occurrence of any of them,
    each run of overlapping occurrences shown as one ``***``.

    A text is read once, each place looked up by its first characters, rather
    than searched once per secret; and a redactor is changed by what a reload
    touched (:meth:`changed`), not built again from every token. The log's
    filter collected the set's tokens at each record and searched for each: at
    50,000 integrations an edit's "applied" line took 30 ms, the first record
    after a reload, and with a token per integration every line 11 ms."""

    _held: Mapping[str, int] = field(default_factory=dict, repr=False)  # holders per secret
    _starts: Mapping[str, _Starting] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        return cls().changed((), secrets)

    def changed(self, removed: Iterable[str], added: Iterable[str]) -> Redactor:
        """This redactor with ``added`` held once more each and ``removed`` once less:
        a token several rooms share is masked until the last of them lets it go."""
        delta = Counter(s for s in added if len(s) >= _MIN_SECRET_LEN)
        delta.subtract(s for s in removed if len(s) >= _MIN_SECRET_LEN)
        if not any(delta.values()):  # an update that kept its tokens: no copy
            return self
        held = dict(self._held)
        turned = _recounted(held, delta)
        if not turned:
            return Redactor(held, self._starts)
        starts = dict(self._starts)
        for start, secrets in turned.items():
            starting = _regrouped(starts.get(start, ()), secrets)
            if starting:
                starts[start] = starting
            else:
                starts.pop(start, None)
        return Redactor(held, starts)

    def __bool__(self) -> bool:
        return bool(self._held)

    def redact(self, text: str) -> str:
        starts = self._starts
        if not starts:
            return text
        spans: list[tuple[int, int]] = []
        for at in range(len(text) - _MIN_SECRET_LEN + 1):
            starting = starts.get(text[at : at + _MIN_SECRET_LEN])
            if starting is not None:
                for length, secrets in starting:
                    piece = text[at : at + length]
                    if piece == secrets if isinstance(secrets, str) else piece in secrets:
                        spans.append((at, at + length))
                        break
        return _masked(text, spans) if spans else text


def _recounted(held: dict[str, int], delta: Mapping[str, int]) -> dict[str, dict[str, bool]]:
    """``held`` changed by ``delta``; the secrets now held (True) or no longer
    (False), by their first characters."""
    turned: dict[str, dict[str, bool]] = {}
    for secret, change in delta.items():
        before = held.get(secret, 0)
        after = max(0, before + change)
        if after:
            held[secret] = after
        else:
            held.pop(secret, None)
        if (before > 0) != (after > 0):
            turned.setdefault(secret[:_MIN_SECRET_LEN], {})[secret] = after > 0
    return turned


def _regrouped(starting: _Starting, turned: Mapping[str, bool]) -> _Starting:
    """``starting`` with each secret of ``turned`` in (True) or out (False)."""
    lengths: dict[int, set[str]] = {
        length: {secrets} if isinstance(secrets, str) else set(secrets)
        for length, secrets in starting
    }
    for secret, now_held in turned.items():
        group = lengths.setdefault(len(secret), set())
        if now_held:
            group.add(secret)
        else:
            group.discard(secret)
    return tuple(
        (length, next(iter(group)) if len(group) == 1 else frozenset(group))
        for length, group in sorted(lengths.items(), reverse=True)
        if group
    )


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each run of overlapping ``spans`` (in order of their starts)
    replaced by one ``REDACTED``."""
    parts: list[str] = []
    shown = 0  # where the text after the last run begins
    begin, end = spans[0]
    for start, stop in spans[1:]:
        if start < end:
            end = max(end, stop)
            continue
        parts += (text[shown:begin], REDACTED)
        shown, (begin, end) = end, (start, stop)
    parts += (text[shown:begin], REDACTED, text[end:])
    return "".join(parts)


class RedactingFilter(logging.Filter):
    """A logging filter that masks the current secrets in every record it passes.

    ``redactors`` is called per record, so tokens rotated by a reload are covered
    without reinstalling the filter; each redactor it gives is applied in turn.
    """

    def __init__(self, redactors: Callable[[], Iterable[Redactor]]) -> None:
        super().__init__()
        self._redactors = redactors

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = [r for r in self._redactors() if r]
        if not redactors:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for redactor in redactors:
            message = redactor.redact(message)
            if record.exc_text:
                record.exc_text = redactor.redact(record.exc_text)
        record.msg = message
        record.args = None
        return True
