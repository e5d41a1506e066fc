"""Every question syncd asks git, and what it knows of git's layout on disk
(``.git`` directories and files, the index lock), in one place.

A checkout's commit is what Flux reports as the applied revision, so an
operator can match the daemon's state to the repository's history. The commit
alone is the revision only when the config dir holds what the commit holds;
otherwise the content hash is added (``git:<sha>+dirty:<hash>``), since the
commit does not name what is applied. git is optional: a config dir that is
not a checkout falls back to the content hash, which identifies the set just
as well; when git is there but cannot be used, the log says why, once.

Running git in a repository runs what that repository's config names (clean
filters, hooks, an fsmonitor), as the daemon's user. So git is used only in a
checkout the operator chose: the config dir itself when it is the top of a
worktree, or the top named with ``--git-dir``; never one found by walking up
from the config dir, where anyone who can write to a parent directory could
plant one (CVE-2022-24765). An unnamed checkout must belong to the daemon's
user, as git itself would demand; a named one may belong to another user
(systemd's ``DynamicUser=``), since the operator vouched for it. Either way a
repository whose own config names a command git could run is refused, and git
runs with no system or global config, no hooks, no fsmonitor and no optional
index writes (``gitcommand``, shared with the fetches of a remote).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from syncd.reconcile import gitcommand

TIMEOUT = 10.0

log = logging.getLogger("syncd")

_GITDIR_PREFIX = "gitdir:"

# Keys of a repository's config under which git may find a command to run, as
# (section, name) with no subsection, or a whole section.
_COMMAND_KEYS = frozenset(
    {
        ("core", "fsmonitor"),
        ("core", "hookspath"),
        ("core", "pager"),
        ("core", "editor"),
        ("core", "worktree"),
        ("diff", "external"),
        ("sequence", "editor"),
    }
)
_COMMAND_SECTIONS = frozenset({"filter", "include", "includeif"})
# Per-driver keys (``diff.<driver>.textconv``) that name a command.
_DRIVER_COMMANDS = frozenset({("diff", "textconv"), ("diff", "command")})


class GitUnusable(Exception):
    """git is there for this directory but cannot, or must not, be asked."""


@dataclass(frozen=True)
class Checkout:
    """The worktree whose commit names the config dir's sets."""

    top: Path  # its top directory, symlinks resolved
    named: bool  # named by the operator (``--git-dir``)


def checkout(config_dir: Path, named: Path | None = None) -> Checkout | None:
    """The config dir's checkout: ``named`` when it holds the config dir, else the
    config dir itself when it is the top of a worktree. Never a parent found by
    walking up."""
    real = Path(os.path.realpath(config_dir))
    if named is None:
        return Checkout(real, named=False) if _has_dotgit(real) else None
    top = Path(os.path.realpath(named))
    if _has_dotgit(top) and real.is_relative_to(top):
        return Checkout(top, named=True)
    return None


def _has_dotgit(directory: Path) -> bool:
    return os.path.lexists(directory / ".git")


def index_lock(start: Path, named: Path | None = None) -> str | None:
    """The index lock of ``start``'s checkout (see :func:`checkout`), if any.

    Worktrees (git-sync checks out into them) and submodules have a ``.git``
    file naming their private git dir, where their index lives.
    """
    found = checkout(start, named)
    if found is None:
        return None
    dotgit = found.top / ".git"
    if dotgit.is_dir():
        return str(dotgit / "index.lock")
    gitdir = _linked_gitdir(dotgit)
    return None if gitdir is None else str(gitdir / "index.lock")


def _linked_gitdir(dotgit: Path) -> Path | None:
    """The git dir a ``.git`` file names."""
    try:
        first = dotgit.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    if not first.startswith(_GITDIR_PREFIX):
        return None
    gitdir = first[len(_GITDIR_PREFIX) :].strip()
    return Path(os.path.normpath(dotgit.parent / gitdir))


def foreign_owner(found: Checkout, uid: int) -> str | None:
    """Why ``found`` must not be used by user ``uid``: a part of it (the top, its
    ``.git``, the git dir a ``.git`` file names) that belongs to another user;
    None when all are ``uid``'s, or the operator named the checkout."""
    if found.named:
        return None
    dotgit = found.top / ".git"
    parts = [found.top, dotgit]
    if not dotgit.is_dir():
        parts.extend(p for p in [_linked_gitdir(dotgit)] if p is not None)
    for part in parts:
        try:
            # A link and what it leads to must both be the user's.
            owners = {os.lstat(part).st_uid, os.stat(part).st_uid}
        except OSError as exc:
            return f"{part}: {exc.strerror}"
        foreign = sorted(owners - {uid})
        if foreign:
            owner = foreign[0]
            return (
                f"{part} belongs to uid {owner}, not to this daemon's user (uid {uid}); "
                "name the checkout with --git-dir to use it"
            )
    return None


def command_settings(listing: str) -> list[str]:
    """The keys of a repository's own config (``git config --list --show-scope
    -z``) that name a command git could run, or a file whose keys git would
    read later (``include``)."""
    refused = []
    for scope, entry in _entries(listing):
        key = entry.split("\n", 1)[0]
        if scope != "command" and names_a_command(key):
            refused.append(key)
    return refused


def _entries(listing: str) -> Iterable[tuple[str, str]]:
    fields = listing.split("\0")
    return zip(fields[0::2], fields[1::2], strict=False)


def names_a_command(key: str) -> bool:
    """Whether a config key (``section[.subsection].name``) names a command."""
    section, _, rest = key.partition(".")
    subsection, _, name = rest.rpartition(".")
    section, name = section.lower(), name.lower()
    if section in _COMMAND_SECTIONS:
        return True
    if subsection:
        return (section, name) in _DRIVER_COMMANDS
    return (section, name) in _COMMAND_KEYS


def _git(found: Checkout, *args: str) -> str:
    options = ["--no-optional-locks", "--literal-pathspecs"]
    if found.named:
        # The operator vouched for this checkout, which may belong to another user.
        options += ["-c", f"safe.directory={found.top}"]
    call = gitcommand.Call(
        (*options, "-C", str(found.top), *args),
        gitcommand.environment(ceiling=found.top.parent),
        TIMEOUT,
    )
    try:
        return gitcommand.run(call).decode("utf-8", "surrogateescape")
    except gitcommand.GitError as exc:
        raise GitUnusable(str(exc)) from None


def describe(found: Checkout, config_dir: Path) -> tuple[str, bool]:
    """The checkout's commit, and whether the config dir differs from it; raises
    GitUnusable when the checkout is another user's or its config names a command."""
    owner = foreign_owner(found, os.geteuid())
    if owner is not None:
        raise GitUnusable(owner)
    refused = command_settings(_git(found, "config", "--list", "--show-scope", "-z"))
    if refused:
        raise GitUnusable(
            f"its config sets {', '.join(sorted(set(refused)))}, which can run a command; "
            "syncd does not run git in such a repository"
        )
    below = Path(os.path.realpath(config_dir)).relative_to(found.top)
    commit = _git(found, "rev-parse", "--verify", "HEAD").strip()
    changes = _git(
        found,
        "status",
        "--porcelain",
        "-z",
        "--ignore-submodules=all",
        "--untracked-files=normal",
        "--",
        str(below),
    )
    return commit, bool(changes)


class Revisions:
    """Names the sets a reconcile applies; says once per reason why git could not.

    ``named`` is the checkout the operator named (``--git-dir``), if any.
    """

    def __init__(self, named: Path | None = None) -> None:
        self._named = named
        self._said: set[str] = set()

    def revision(self, config_dir: Path, digest: str) -> str:
        """``git:<commit>`` for a clean checkout, ``git:<commit>+dirty:<hash>`` when
        the config dir differs from the commit, else ``sha256:<hash>``."""
        content = digest[:16]
        found = checkout(config_dir, self._named)
        if found is None:
            return "sha256:" + content
        try:
            commit, dirty = describe(found, config_dir)
        except GitUnusable as exc:
            self._say(config_dir, str(exc))
            return "sha256:" + content
        return f"git:{commit}+dirty:{content}" if dirty else f"git:{commit}"

    def _say(self, config_dir: Path, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.warning(
                "cannot read the git revision of %s (%s); revisions are content hashes",
                config_dir,
                reason,
            )
