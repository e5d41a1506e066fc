"""The store a ``--store`` URL names, opened with errors a user can act on.

``postgresql://`` (or ``postgres://``, or a libpq ``key=value`` string) names
a PostgreSQL database that several daemons share; ``sqlite:PATH`` one host's
outbox file. The PostgreSQL store and its libraries are imported only when
one is named, so a single-host install needs neither; without them the error
says which extra to install. A password never appears in what is printed:
the URL is shown without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from syncd.errors import Failure, UsageError
from syncd.store.contract import StoreError, StoreUnusable

if TYPE_CHECKING:
    from syncd.store.copying import Copied
    from syncd.store.pgschema import SchemaState
    from syncd.store.postgresql import PostgresOutbox

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:"
INSTALL = "pip install 'syncd[postgresql]'"


@dataclass(frozen=True)
class StoreURL:
    kind: Literal["sqlite", "postgresql"]
    target: str  # the file's path, or the URL as given (password and all)

    @property
    def shown(self) -> str:
        return self.target if self.kind == "sqlite" else shown(self.target)


def parse(url: str, flag: str = "--store") -> StoreURL:
    if url.startswith(SQLITE_SCHEME):
        path = url[len(SQLITE_SCHEME) :].removeprefix("//")
        if not path:
            raise UsageError(f"{flag} sqlite: needs a path: sqlite:/var/lib/syncd/outbox.db")
        return StoreURL("sqlite", path)
    if url.startswith(POSTGRES_SCHEMES) or "=" in url:
        return StoreURL("postgresql", url)
    raise UsageError(
        f"{flag} {shown(url)!r} names no store: give postgresql://USER@HOST/DATABASE or sqlite:PATH"
    )


_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def shown(url: str) -> str:
    """A store URL as it may be printed: without its password."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def open_postgres(
    url: str, *, password: str | None = None, connections: int | None = None
) -> PostgresOutbox:
    """The shared store, its schema brought up to date. Refused (a :class:`Failure`)
    when the database holds a newer schema or cannot be used as it is; a database
    out of reach is a :class:`UsageError` naming the URL."""
    with _installed(), told(url):
        from syncd.store.postgresql import POOL_SIZE, PostgresOutbox

        return PostgresOutbox(url, password=password, connections=connections or POOL_SIZE)


def migrate(url: str, *, password: str | None = None) -> tuple[int, int]:
    """Bring the schema up to date: the version found, and the version left."""
    with _installed(), told(url):
        from syncd.store.postgresql import migrate_schema

        return migrate_schema(url, password)


def check(url: str, *, password: str | None = None) -> SchemaState:
    with _installed(), told(url):
        from syncd.store.postgresql import check_schema

        return check_schema(url, password)


def copy(source: Path, url: str, *, password: str | None = None) -> Copied:
    """Move a single host's outbox into an unused PostgreSQL store (see
    ``syncd.store.copying``)."""
    with _installed(), told(url):
        from syncd.store.copying import copy_outbox

        return copy_outbox(source, url, password)


@contextmanager
def _installed() -> Iterator[None]:
    try:
        yield
    except ImportError as exc:
        raise UsageError(
            f"the PostgreSQL store needs psycopg and psycopg_pool ({exc.name or exc} "
            f"is not installed): {INSTALL}"
        ) from None


@contextmanager
def told(url: str) -> Iterator[None]:
    """Store errors as the user's: an unusable database refuses (exit 1), one out of
    reach is an address that does not work (exit 2)."""
    try:
        yield
    except StoreUnusable as exc:
        raise Failure(f"{shown(url)}: {exc}") from None
    except StoreError as exc:
        raise UsageError(f"cannot use the store {shown(url)}: {exc}") from None
