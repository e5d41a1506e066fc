"""The bare mirror of a git remote in the state dir, and how it is fetched.

The git command-line client fetches, so every transport, proxy and TLS setup
git knows works; but it runs hardened (``gitcommand``) and is told exactly
what it may do: only the URL's own protocol (``protocol.allow=never`` and one
exception, so nothing in the remote can send git to ``ext::`` or ``file://``),
no submodules, no background maintenance that would outlive the deadline, and
credentials from syncd's helper only (``gitcredential``), or ssh with the
operator's key and known hosts and strict host key checking.

What a fetch brings is bounded: the first fetch takes only the ref's commit
(``--depth=1``); later ones take the commits since the applied one, as ``git
pull`` in a shallow clone does, which is what tells a fast-forward from a
force push exactly (``merge-base --is-ancestor``). A rewrite to a commit far
from the applied one would bring its whole history, so every fetch is cut at
``--git-max-size`` of packs received; a fetch of history cut there is made
again at depth 1, and whether the new commit descends from the applied one is
then unknown (the poller treats it as a rewrite, and says why). A fetch cut
or failed leaves the mirror as it was: its partial packs are removed, and
packs over the limit are dropped with ``git gc``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.reconcile import gitcredential
from syncd.reconcile.gitcommand import GitError, GitStopped, Repo, environment
from syncd.reconcile.gitsource import DEFAULT_USERNAME, GitSource

MIRROR = "mirror"
HOME = "home"
FETCHED = "refs/syncd/fetched"
APPLIED = "refs/syncd/applied"
# How long a local git call (rev-parse, ls-tree, cat-file, gc) may take.
LOCAL_TIMEOUT = 120.0

# Options of every call in the mirror: nothing runs in the background, nothing
# recurses into submodules, and fetched objects always arrive as one pack
# (whose size is what the limit watches).
_MIRROR_OPTIONS = (
    "gc.auto=0",
    "maintenance.auto=false",
    "fetch.writeCommitGraph=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "fetch.unpackLimit=1",
    "transfer.unpackLimit=1",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
)
_TOO_LARGE = "git fetch cut: it brought more than --git-max-size ({limit} bytes) of packs"


class FetchTooLarge(GitStopped):
    """A fetch cut at ``--git-max-size``."""


@dataclass(frozen=True)
class Fetched:
    """The commit a fetch found the ref at; ``history_cut`` when the commits
    between it and the applied one were over the size limit, so whether it
    descends from the applied one is unknown."""

    commit: str
    history_cut: bool = False


def options(source: GitSource) -> tuple[str, ...]:
    """The ``-c`` options for ``source``: the mirror's, the one protocol its URL
    speaks, and the credential helper or CA file it names."""
    remote = source.remote
    settings = [*_MIRROR_OPTIONS, f"protocol.{remote.scheme}.allow=always"]
    if source.token_file is not None:
        settings.append(f"credential.helper={gitcredential.helper_command()}")
    if source.ca_file is not None:
        settings.append(f"http.sslCAInfo={source.ca_file}")
    return tuple(arg for setting in settings for arg in ("-c", setting))


def transport_environment(source: GitSource) -> dict[str, str]:
    """The variables the transport needs: where the token is (never the token), or
    the ssh command with the operator's key and known hosts."""
    remote = source.remote
    if source.token_file is not None:
        return gitcredential.environment(
            source.token_file, remote.username or DEFAULT_USERNAME, remote.scheme, remote.host
        )
    if remote.uses_ssh:
        return {"GIT_SSH_COMMAND": ssh_command(source), "GIT_SSH_VARIANT": "ssh"}
    return {}


def ssh_command(source: GitSource) -> str:
    """ssh as git runs it: only the operator's known hosts, strict checking, no
    prompt, and only the operator's key when one is named."""
    assert source.known_hosts is not None
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={source.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        f"ConnectTimeout={max(1, int(source.timeout))}",
    ]
    if source.ssh_key_file is not None:
        argv += ["-i", str(source.ssh_key_file), "-o", "IdentitiesOnly=yes"]
    return shlex.join(argv)


class Mirror:
    """The bare repository the remote is fetched into, under ``root``."""

    def __init__(self, root: Path, source: GitSource) -> None:
        self.source = source
        self.git_dir = root / MIRROR
        self.home = root / HOME
        env = environment(home=self.home, ceiling=root, extra=transport_environment(source))
        self.repo = Repo(self.git_dir, env, options(source))

    def ensure(self) -> None:
        """Create the mirror (and git's private home) unless they exist."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (self.git_dir / "HEAD").exists():
            self.clear_leftovers()
            return
        self.git_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # No template: the hooks and config git would copy from the system are not ours.
        self.repo.run("init", "--quiet", "--bare", "--template=", timeout=LOCAL_TIMEOUT)

    def has(self, commit: str) -> bool:
        try:
            return self.repo.holds("cat-file", "-e", f"{commit}^{{commit}}", timeout=LOCAL_TIMEOUT)
        except GitError:
            return False  # not a commit at all

    def fetch(self, base: str | None, cancelled: Callable[[], bool] = lambda: False) -> Fetched:
        """Fetch the source's ref; ``base`` is the applied commit, whose descendants
        come with their history."""
        self.ensure()
        history = base is not None and self.has(base)
        try:
            return Fetched(self._fetch(1 if not history else None, cancelled))
        except FetchTooLarge:
            if not history:
                raise
        return Fetched(self._fetch(1, cancelled), history_cut=True)

    def _fetch(self, depth: int | None, cancelled: Callable[[], bool]) -> str:
        packs = self.git_dir / "objects" / "pack"
        before = _files(packs)
        previous = self._resolve(FETCHED)
        watch = _SizeWatch(packs, before, self.source.max_size, cancelled)
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
        args.append("--recurse-submodules=no")
        if depth is not None:
            args.append(f"--depth={depth}")
        args += ["--", self.source.url, f"+{self.source.ref_name}:{FETCHED}"]
        try:
            self.repo.run(*args, timeout=self.source.timeout, watch=watch)
            late = watch()  # a fetch quicker than the watch's step
            if late is not None:
                raise late
        except GitError as exc:
            self._undo(previous, packs, before, exc)
            raise
        return self.commit(FETCHED)

    def clear_leftovers(self) -> None:
        """Remove what a git killed mid-way left: lock files (``shallow.lock``, a
        ref's ``.lock``), which would fail every later fetch, and partial packs.
        Only this daemon runs git in its mirror (it holds the state dir's lock),
        so none of them is anyone's."""
        locks = [*self.git_dir.glob("*.lock"), *(self.git_dir / "refs").rglob("*.lock")]
        packs = self.git_dir / "objects" / "pack"
        for leftover in [*locks, *(packs / name for name in _unfinished_packs(_files(packs)))]:
            leftover.unlink(missing_ok=True)

    def _undo(self, previous: str | None, packs: Path, before: set[str], exc: GitError) -> None:
        """Leave the mirror as it was before a fetch that failed or was cut."""
        self.clear_leftovers()
        if not isinstance(exc, FetchTooLarge) or not (_files(packs) - before):
            return
        if previous is None:
            self.repo.run("update-ref", "-d", FETCHED, timeout=LOCAL_TIMEOUT)
        else:
            self.repo.run("update-ref", FETCHED, previous, timeout=LOCAL_TIMEOUT)
        self.repo.run("gc", "--quiet", "--prune=now", timeout=LOCAL_TIMEOUT)

    def _resolve(self, ref: str) -> str | None:
        try:
            return self.commit(ref)
        except GitError:
            return None

    def commit(self, rev: str) -> str:
        return self.repo.text(
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{rev}^{{commit}}",
            timeout=LOCAL_TIMEOUT,
        )

    def changed(self, old: str, new: str, path: str) -> frozenset[str]:
        """The paths below ``path`` (relative to it) whose blob or mode differs
        between commits ``old`` and ``new``: ``git diff-tree`` of their trees there,
        a rename being a removal and an addition. GitError when git cannot tell (a
        commit no longer in the mirror, no such directory in one)."""
        listing = self.repo.run(
            "diff-tree",
            "-r",
            "-z",
            "--name-only",
            "--no-renames",
            "--end-of-options",
            f"{old}:{path}",
            f"{new}:{path}",
            timeout=LOCAL_TIMEOUT,
        )
        return frozenset(os.fsdecode(name) for name in listing.split(b"\0") if name)

    def descends(self, base: str, commit: str) -> bool:
        """Whether ``commit`` descends from ``base`` (or is it), as far as the
        mirror's history shows."""
        return self.repo.holds("merge-base", "--is-ancestor", base, commit, timeout=LOCAL_TIMEOUT)

    def tidy(self) -> None:
        """Pack the mirror as ``git gc --auto`` judges, in the foreground (so within
        this call's deadline), dropping what no ref reaches after git's grace."""
        self.repo.run(
            "-c",
            "gc.auto=6700",
            "-c",
            "gc.autoDetach=false",
            "gc",
            "--auto",
            "--quiet",
            timeout=LOCAL_TIMEOUT,
        )

    def keep(self, commit: str) -> None:
        """Keep ``commit`` (the applied one) in the mirror: later fetches bring the
        history since it, and the force-push check looks for it."""
        self.repo.run("update-ref", APPLIED, commit, timeout=LOCAL_TIMEOUT)


class _SizeWatch:
    """Asked while a fetch runs: the reason to stop it, if any."""

    def __init__(
        self, packs: Path, before: set[str], limit: int, cancelled: Callable[[], bool]
    ) -> None:
        self._packs = packs
        self._before = before
        self._limit = limit
        self._cancelled = cancelled

    def __call__(self) -> GitStopped | None:
        if self._cancelled():
            return GitStopped("git fetch stopped: syncd is stopping")
        if _new_bytes(self._packs, self._before) > self._limit:
            return FetchTooLarge(_TOO_LARGE.format(limit=self._limit))
        return None


def _files(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


def _unfinished_packs(names: set[str]) -> list[str]:
    """What a fetch killed mid-way leaves in the pack directory besides git's own
    temporary files: a pack whose index was not yet renamed into place (git
    never reads it, and gc never removes it) and a fetch's ``.keep``, which a
    fetch removes once its refs are written (a kept pack is never pruned). Both
    would hold a cut fetch's bytes for good."""
    indexed = {name.removesuffix(".idx") for name in names if name.endswith(".idx")}

    def unfinished(name: str) -> bool:
        stem, _, kind = name.rpartition(".")
        if name.startswith("tmp_"):
            return True
        return name.startswith("pack-") and (kind == "keep" or stem not in indexed)

    return [name for name in names if unfinished(name)]


def _new_bytes(packs: Path, before: set[str]) -> int:
    total = 0
    for name in _files(packs) - before:
        try:
            total += os.stat(packs / name).st_size
        except FileNotFoundError:
            continue  # a temporary file renamed while counted
    return total
