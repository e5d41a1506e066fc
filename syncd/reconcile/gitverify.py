"""Signed commits: whether a fetched commit carries a signature the operator trusts
(``--git-verify``).

Anyone who can push to the repository, or sits between the daemon and a
remote, can otherwise change what every room is told. With ``--git-verify``
the commit a ref points at is applied only when git finds a good signature by
a key the operator named: an SSH key listed in an allowed-signers file (git's
``gpg.ssh.allowedSignersFile``, checked with ``ssh-keygen``), or an OpenPGP
key in the keyring file given. The keyring is imported into a private
``GNUPGHOME`` in the state dir, so the daemon's user's own keys and trust
settings count for nothing, and gpg starts no agent. The commit alone is
checked (the one applied), as Flux does; the history before it is not.

The answer names the commit and the reason in words, since it is shown where
an invalid config's errors are.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from syncd.config.diagnostics import printable
from syncd.reconcile.gitcommand import GitError, Repo
from syncd.reconcile.gitsource import GitSourceError, Verify

GNUPG = "gnupg"
_IMPORT_TIMEOUT = 60.0
_FORMAT = "%G?%x00%GK%x00%GS"
# Letters of git's %G? that count as verified: with an allowed-signers file only
# "G" (a listed principal); with a keyring also "U", a good signature by a key of
# the keyring, whose owner trust gpg does not know (the keyring is the trust).
_GOOD = {"allowed-signers": frozenset("G"), "gpg": frozenset("GU")}


@dataclass(frozen=True)
class Verifier:
    """Checks commits against ``verify``; ``home`` is a private directory for gpg."""

    verify: Verify
    home: Path

    @property
    def options(self) -> tuple[str, ...]:
        """The ``-c`` options the check needs."""
        if self.verify.kind == "allowed-signers":
            return ("-c", f"gpg.ssh.allowedSignersFile={self.verify.file}")
        return ()

    @property
    def environment(self) -> dict[str, str]:
        """gpg's home: the private copy of the keyring (an empty one for SSH checks,
        so that an OpenPGP-signed commit is checked against nothing)."""
        return {"GNUPGHOME": str(self.home)}

    def prepare(self) -> None:
        """Make gpg's private home afresh (with the keyring imported for ``gpg``);
        GitSourceError when the file cannot be used."""
        if not self.verify.file.is_file():
            raise GitSourceError(f"{self.verify.describe()}: no such file")
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(mode=0o700, parents=True)
        if self.verify.kind == "gpg":
            self._import()

    def _import(self) -> None:
        argv = ["gpg", "--batch", "--no-autostart", "--homedir", str(self.home)]
        try:
            result = subprocess.run(
                [*argv, "--import", str(self.verify.file)],
                capture_output=True,
                timeout=_IMPORT_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitSourceError(f"{self.verify.describe()}: cannot run gpg: {exc}") from None
        if result.returncode != 0:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitSourceError(
                f"{self.verify.describe()}: gpg cannot import it: "
                f"{printable(lines[-1]) if lines else result.returncode}"
            )

    def check(self, repo: Repo, commit: str, timeout: float) -> str | None:
        """None when ``commit`` is signed by a trusted key; else why not, naming it."""
        try:
            answer = repo.text("show", "-s", f"--format={_FORMAT}", commit, timeout=timeout)
        except GitError as exc:
            return f"commit {commit}: its signature could not be checked: {exc}"
        letter, _, rest = answer.partition("\0")
        key, _, signer = rest.partition("\0")
        if letter in _GOOD[self.verify.kind]:
            return None
        return f"commit {commit} {_reason(letter, key, signer, self.verify)}"


def _reason(letter: str, key: str, signer: str, verify: Verify) -> str:
    by = f"key {printable(key)}" + (f" ({printable(signer)})" if signer else "")
    reasons = {
        "N": "is not signed",
        "B": f"has a bad signature (made with {by})",
        "U": f"is signed by {by}, which {verify.describe()} does not name",
        "E": f"is signed by {by}, which {verify.describe()} does not hold",
        "X": f"has an expired signature by {by}",
        "Y": f"is signed by an expired {by}",
        "R": f"is signed by a revoked {by}",
    }
    return reasons.get(letter, f"has a signature git cannot judge ({printable(letter)})")
