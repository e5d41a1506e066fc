"""Secrets scoped to parts of the config repository (``--scope PATH_GLOB=PREFIX``).

Without scopes, every committer may reference every token the daemon can
read: a team's file could name another team's ``{env: HIPCHAT_TEAM_A}`` with
an endpoint of its own. A scope ties a part of the tree to the secrets its
files may reference, as Prometheus Operator ties a monitor to its
namespace's secrets; the tree's owners (CODEOWNERS, review rules) then decide
who may use which token.

The rules, chosen for an operator who means "only payments may use payments'
tokens":

- ``PREFIX`` is a name prefix for ``{env: NAME}`` and ``{credential: NAME}``
  (compared as written, case included), or, starting with ``/``, a directory
  that ``{file: PATH}`` must resolve inside. One glob given twice collects
  both, so ``teams/payments/**=HIPCHAT_PAYMENTS_``,
  ``teams/payments/**=hipchat-payments-`` and
  ``teams/payments/**=/run/secrets/payments`` scope all three kinds.
- A name belongs to the scope whose prefix is the longest that matches it (a
  directory, to the deepest that holds it), so ``HIPCHAT_PAY`` does not take
  ``HIPCHAT_PAYMENTS_``' names.
- A file in a scope may reference only what belongs to its scopes: not
  another scope's secrets, and not the unscoped ones either, since a scope
  says what its files may use. A file in no scope may reference only what no
  scope claims: otherwise moving a file out of ``teams/payments/`` would be
  the way around the scope.
- A glob is matched as a ``.gitignore`` line would be (``*`` within a name,
  ``**`` across directories, a directory taking everything below it), but
  always from the top of the config directory: ``teams/payments/**`` does not
  match ``teams/a/teams/payments/x.yaml``. The path matched is the file's
  own, links followed, so a link in one team's directory to another's file
  is judged where the file is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from syncd.config.discovery import Glob
from syncd.errors import UsageError

SecretKind = str  # "env", "credential" or "file"
_NAME_PREFIX = re.compile(r"[A-Za-z0-9_.@-]+")


@dataclass(frozen=True)
class Scope:
    """One ``--scope`` flag: files matching ``glob`` may use ``prefix``'s secrets."""

    glob: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        glob, sep, prefix = text.partition("=")
        glob, prefix = glob.strip(), prefix.strip()
        if not sep or not glob.strip("/") or not prefix:
            raise UsageError(
                f"--scope wants PATH_GLOB=PREFIX, such as teams/payments/**=HIPCHAT_PAYMENTS_, "
                f"got {text!r}"
            )
        if prefix.startswith("/") and os.path.normpath(prefix) == "/":
            raise UsageError(f"--scope {text}: a scope's directory cannot be / (every file)")
        if not prefix.startswith("/") and not _NAME_PREFIX.fullmatch(prefix):
            raise UsageError(
                f"--scope {text}: PREFIX is the start of variable and credential names "
                "(letters, digits, _ . @ -) or, starting with /, a directory"
            )
        return cls(glob, prefix)

    def __str__(self) -> str:
        return f"{self.glob}={self.prefix}"

    @property
    def is_dir(self) -> bool:
        return self.prefix.startswith("/")

    def holds_file(self, place: tuple[str, ...]) -> bool:
        """Whether the config file at ``place`` (its parts below the config dir) is in it."""
        return Glob(_glob_parts(self.glob), anchored=True, directory=False).matches(place)


def _glob_parts(glob: str) -> tuple[str, ...]:
    return tuple(part for part in glob.split("/") if part)


def _owners(kind: SecretKind, value: str, scopes: Sequence[Scope]) -> list[Scope]:
    """The scopes the secret belongs to: those with the longest matching prefix
    (the deepest directory holding the file), or none."""
    matched = _dir_matches(value, scopes) if kind == "file" else _name_matches(value, scopes)
    longest = max((length for length, _ in matched), default=0)
    return [scope for length, scope in matched if length == longest]


def _name_matches(name: str, scopes: Sequence[Scope]) -> list[tuple[int, Scope]]:
    return [(len(s.prefix), s) for s in scopes if not s.is_dir and name.startswith(s.prefix)]


def _dir_matches(path: str, scopes: Sequence[Scope]) -> list[tuple[int, Scope]]:
    """Links followed, as the file is read."""
    resolved = Path(os.path.realpath(path))
    matched = []
    for scope in scopes:
        directory = Path(os.path.realpath(scope.prefix)) if scope.is_dir else None
        if directory is not None and resolved.is_relative_to(directory):
            matched.append((len(directory.parts), scope))
    return matched


def place_of(path: str, roots: Iterable[Path]) -> tuple[str, ...] | None:
    """The file's path parts below the first root that holds it, links followed;
    None when no root does (it then matches no scope)."""
    real = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real != base and real.is_relative_to(base):
            return real.relative_to(base).parts
    return None


def _listed(scopes: Iterable[Scope]) -> str:
    return ", ".join(f"--scope {scope}" for scope in scopes)


def scope_problem(
    kind: SecretKind, value: str, place: tuple[str, ...] | None, scopes: Sequence[Scope]
) -> str | None:
    """Why a file at ``place`` may not reference this secret, or None when it may."""
    if not scopes:
        return None
    mine = [s for s in scopes if place is not None and s.holds_file(place)]
    owners = _owners(kind, value, scopes)
    if mine:
        return None if set(owners) & set(mine) else _outside(kind, value, mine, owners)
    if not owners:
        return None
    globs = ", ".join(dict.fromkeys(owner.glob for owner in owners))
    return f"{value} belongs to {_listed(owners)}: only files matching {globs} may use it"


def _outside(kind: SecretKind, value: str, mine: list[Scope], owners: list[Scope]) -> str:
    granted = [s for s in mine if s.is_dir == (kind == "file")]
    none = "secrets directory" if kind == "file" else "name prefix"
    allows = _listed(granted) if granted else f"{_listed(mine)}, which names no {none}"
    problem = f"{value} is outside this file's scope ({allows})"
    return problem + (f"; it belongs to {_listed(owners)}" if owners else "")
