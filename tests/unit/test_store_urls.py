"""What a ``--store`` names, and how it is printed: never with its password."""

from __future__ import annotations

import sys

import pytest

from syncd.errors import UsageError
from syncd.service.stores import StoreURL, open_postgres, parse, shown


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("postgresql://syncd:s3cret@db:5432/syncd", "postgresql://syncd:***@db:5432/syncd"),
        (
            "postgres://syncd:p%40ss@db/syncd?sslmode=require",
            "postgres://syncd:***@db/syncd?sslmode=require",
        ),
        ("postgresql://syncd@db/syncd", "postgresql://syncd@db/syncd"),
        ("postgresql://db/syncd", "postgresql://db/syncd"),
        ("host=db password=s3cret dbname=syncd", "host=db password=*** dbname=syncd"),
        ("host=db password = 'it\\'s secret' dbname=syncd", "host=db password = *** dbname=syncd"),
    ],
)
def test_a_store_url_is_printed_without_its_password(url: str, printed: str) -> None:
    assert shown(url) == printed


def test_what_a_store_url_names() -> None:
    assert parse("sqlite:/var/lib/syncd/outbox.db") == StoreURL(
        "sqlite", "/var/lib/syncd/outbox.db"
    )
    assert parse("sqlite:///var/lib/syncd/outbox.db").target == "/var/lib/syncd/outbox.db"
    assert parse("postgresql://db/syncd").kind == "postgresql"
    assert parse("dbname=syncd host=db").kind == "postgresql"
    with pytest.raises(UsageError, match="names no store"):
        parse("mysql://u:pw@db/syncd")
    with pytest.raises(UsageError, match="needs a path"):
        parse("sqlite:")


def test_without_the_postgresql_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("syncd.store.postgresql", "syncd.store.pgschema"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(UsageError) as error:
        open_postgres("postgresql://db/syncd")
    assert str(error.value) == (
        "the PostgreSQL store needs psycopg and psycopg_pool (psycopg is not installed): "
        "pip install 'syncd[postgresql]'"
    )
