"""``syncd store migrate`` and ``syncd store check`` against a real PostgreSQL."""

from __future__ import annotations

import pytest

from syncd.commands.store import check, migrate
from syncd.errors import EXIT_FAILED, EXIT_OK, Failure, UsageError
from syncd.store import pgschema
from syncd.store.postgresql import PostgresOutbox
from tests.support import postgres
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)


def test_check_says_a_new_database_is_behind_and_migrate_brings_it_up_to_date(
    postgres_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check(postgres_url) == EXIT_FAILED
    assert "schema version 0, behind the" in capsys.readouterr().out
    assert migrate(postgres_url) == EXIT_OK
    assert capsys.readouterr().out.endswith(f": schema version 0 -> {pgschema.LATEST}\n")
    assert check(postgres_url) == EXIT_OK
    assert capsys.readouterr().out.endswith(f": schema version {pgschema.LATEST}, up to date\n")
    assert migrate(postgres_url) == EXIT_OK
    assert capsys.readouterr().out.endswith(f": schema version {pgschema.LATEST}, up to date\n")
    PostgresOutbox(postgres_url, connections=1, migrate=False).close()


def test_a_newer_schema_fails_the_check_and_the_migration(
    postgres_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate(postgres_url) == EXIT_OK
    postgres.execute(
        postgres_url,
        "INSERT INTO syncd_schema (version, what, applied_by) VALUES (%s, 'later', 'test')",
        (pgschema.LATEST + 1,),
    )
    capsys.readouterr()
    assert check(postgres_url) == EXIT_FAILED
    assert "is newer than the" in capsys.readouterr().out
    with pytest.raises(Failure, match="newer than the"):
        migrate(postgres_url)


def test_a_database_out_of_reach_is_a_usage_error_without_the_password() -> None:
    postgres.require_server()
    with pytest.raises(UsageError) as error:
        check("postgresql://syncd:hunter2@127.0.0.1:1/syncd")
    message = str(error.value)
    assert "hunter2" not in message
    assert message.startswith("cannot use the store postgresql://syncd:***@127.0.0.1:1/syncd: ")


def test_an_sqlite_store_has_no_schema_to_migrate(tmp_path: object) -> None:
    with pytest.raises(UsageError, match="works on a PostgreSQL store"):
        migrate("sqlite:/var/lib/syncd/outbox.db")
