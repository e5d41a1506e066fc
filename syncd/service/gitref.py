"""A git ref read once, for the commands that check a branch without a checkout
(``syncd validate --git``, ``syncd plan --git``).

The ref is fetched with the daemon's own hardened fetch and checkout, so CI
judges exactly the files a daemon would apply, but into a temporary directory
removed afterwards: a command never touches a daemon's state dir, whose lock
and mirror belong to the daemon. The checkout's path is of no use to whoever
reads the result, so diagnostics name each file as the repository does
(``integrations/shop.yaml:3:5``, ``gitcheckout.RepoNames``, as the daemon's
``/status`` does), where a pull request's annotations find it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.config.diagnostics import Diagnostic, printable
from syncd.config.discovery import ConfigFiles
from syncd.config.model import Integration
from syncd.errors import Failure, UsageError
from syncd.reconcile.gitcheckout import RepoNames
from syncd.reconcile.gitcommand import GitError
from syncd.reconcile.gitpoller import Rejected, fetch_once

if TYPE_CHECKING:
    from syncd.service.daemon import GitSettings


class RefUnreachable(UsageError):
    """The ref could not be fetched: nothing was judged."""


class RefRejected(Failure):
    """The ref's commit cannot be applied as it is (a symlink where a config file
    would be, over ``--git-max-size``, not signed as ``--git-verify`` asks)."""


@dataclass(frozen=True)
class FetchedRef:
    """A ref's config checked out in ``directory``; ``label`` is the directory as
    the repository names it ("" for its top)."""

    url: str
    ref: str
    commit: str
    directory: Path
    label: str

    def describe(self) -> str:
        return f"{self.ref} of {self.url} at {self.commit}"

    @property
    def names(self) -> RepoNames:
        return RepoNames(self.directory, self.label)

    def relabel(self, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """``diagnostics`` with the checkout's path replaced by the repository's."""
        return self.names.relabel(diagnostics)

    def relabel_integration(self, integration: Integration) -> Integration:
        """``integration`` with its declaration named as the repository names it."""
        return self.names.relabel_integration(integration)


@contextmanager
def fetched(settings: GitSettings, files: ConfigFiles | None = None) -> Iterator[FetchedRef]:
    """Fetch ``settings``' ref into a temporary directory and check out its config
    (``--git-path``); the directory is removed on leaving. RefUnreachable when the
    fetch fails, RefRejected when the commit cannot be applied, GitSourceError
    when the flags are wrong."""
    source = settings.source()
    with tempfile.TemporaryDirectory(prefix="syncd-git-") as temp:
        try:
            result = fetch_once(source, Path(temp) / "git", files)
        except GitError as exc:
            # The poller's report is redacted already; the exception's own text is not.
            raise RefUnreachable(
                f"could not fetch {source.ref_name} of {source.remote.display}: "
                f"{printable(str(exc))}"
            ) from None
        if isinstance(result, Rejected):
            raise RefRejected(printable(result.reason))
        yield FetchedRef(
            source.remote.display, result.ref, result.commit, result.directory, source.path
        )
