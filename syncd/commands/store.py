"""``syncd store``: the schema of a store that several daemons share, and the
move to one.

Every daemon brings the schema up to date as it opens the store, under a lock,
so nothing needs running by hand; ``migrate`` does it ahead of a rollout (so
the first new daemon does not pay for it, and a migration that fails does so
before any daemon is replaced), and ``check`` says whether the database holds
the schema this release knows, for a deploy script to stop on. ``copy`` moves
a single host's outbox into an unused PostgreSQL store.
"""

from __future__ import annotations

from pathlib import Path

from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError
from syncd.service import stores
from syncd.service.statedir import StateDir


def _postgresql(url: str, command: str) -> None:
    if stores.parse(url).kind != "postgresql":
        raise UsageError(
            f"syncd store {command} works on a PostgreSQL store (postgresql://...); "
            "an SQLite outbox is brought up to date as the daemon opens it"
        )


def migrate(url: str, *, password: str | None = None) -> int:
    """Exit 0 once the schema is up to date; 1 (an error) when the database holds a
    newer one than this syncd knows; 2 when the database cannot be reached."""
    _postgresql(url, "migrate")
    found, left = stores.migrate(url, password=password)
    where = stores.shown(url)
    if found == left:
        print(f"{where}: schema version {left}, up to date")
    else:
        print(f"{where}: schema version {found} -> {left}")
    return EXIT_OK


def check(url: str, *, password: str | None = None) -> int:
    """Exit 0 when the database holds the schema this syncd knows; 1 when it is
    behind (run migrate) or newer (a later syncd migrated it); 2 when the database
    cannot be reached."""
    _postgresql(url, "check")
    state = stores.check(url, password=password)
    where = stores.shown(url)
    if state.newer:
        print(
            f"{where}: schema version {state.found} is newer than the {state.known} this "
            "syncd knows: daemons of this release refuse to start on it"
        )
        return EXIT_FAILED
    if state.behind:
        print(
            f"{where}: schema version {state.found}, behind the {state.known} this syncd "
            "knows: run syncd store migrate (or let a daemon of this release start)"
        )
        return EXIT_FAILED
    print(f"{where}: schema version {state.found}, up to date")
    return EXIT_OK


def copy(source: str, target: str, *, password: str | None = None) -> int:
    """Move a stopped single-host daemon's outbox (``sqlite:PATH``) into an unused
    PostgreSQL store; exit 0 once moved, 1 when the target is in use or not empty
    (nothing changed), 2 when either cannot be reached or used."""
    given = stores.parse(source, "--from")
    if given.kind != "sqlite":
        raise UsageError("--from takes the single host's outbox: sqlite:PATH")
    _postgresql(target, "copy")
    path = Path(given.target)
    if not path.is_file():
        raise UsageError(f"--from {source}: no outbox there")
    state_dir = StateDir(path.parent)
    held = state_dir.ran_before()  # a daemon's state dir: kept from it while copying
    if held:
        state_dir.acquire()
    try:
        copied = stores.copy(path, target, password=password)
    finally:
        state_dir.release()
    print(
        f"moved {copied.pending} notification(s) to send and {copied.dead} dead letter(s), "
        f"{copied.windows} throttle window(s) and {copied.fingerprints} known fingerprint(s) "
        f"from {path} to {stores.shown(target)}; the SQLite outbox no longer sends them"
    )
    return EXIT_OK
