"""Whose token goes where: link-local and metadata hosts, credential names, scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config.reach import (
    Reach,
    address_problem,
    credential_problem,
    endpoint_problem,
    file_problem,
    host_problem,
)
from syncd.config.scopes import Scope, place_of, scope_problem
from syncd.errors import UsageError

METADATA_SPELLINGS = [
    "169.254.169.254",
    "169.254.0.1",
    "[fe80::1]",
    "[FE80::1%25eth0]",
    "[febf:ffff::1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[::169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:a9fe:a9fe::1]",
    "2852039166",
    "0xa9fea9fe",
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376",
    "169.254.43518",
    "169.254.169.254.",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "168.63.129.16",
    "metadata.google.internal",
    "METADATA.Google.Internal.",
    "metadata",
    "metadata.goog",
    "instance-data",
]


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_link_local_and_metadata_hosts_are_refused_in_any_spelling(host: str) -> None:
    endpoint = f"https://{host}:8443/hipchat"
    problem = endpoint_problem(endpoint, Reach())
    assert problem is not None, host
    assert problem.endswith("refused unless the daemon runs with --allow-link-local-endpoint")
    assert endpoint_problem(endpoint, Reach(allow_link_local=True)) is None


@pytest.mark.parametrize(
    "host",
    [
        "hipchat.example.com",
        "127.0.0.1",
        "[::1]",
        "10.0.0.5",
        "[2001:db8::1]",
        "169.253.255.255",
        "169.255.0.0",
        "[fec0::1]",
        "metadata.example.com",
        "0xcafe.example",
        "2852039166.example",
    ],
)
def test_other_hosts_pass(host: str) -> None:
    assert host_problem(host.strip("[]")) is None
    assert endpoint_problem(f"https://{host}", Reach()) is None


def test_an_address_connected_to_is_judged_with_its_zone_and_mapping() -> None:
    assert address_problem("169.254.169.254") is not None
    assert address_problem("fe80::1%lo") is not None
    assert address_problem("::ffff:169.254.169.254") is not None
    assert address_problem("fd00:ec2::254") == "a cloud metadata address"
    assert address_problem("192.0.2.1") is None
    assert address_problem("") is None


def test_credentials_need_an_allowed_prefix_and_never_the_daemons_own() -> None:
    reach = Reach()
    assert credential_problem("hipchat-ops", reach) is None
    assert credential_problem("db-password", reach) == (
        "db-password is not allowed by --credential-prefix hipchat"
    )
    opened = Reach(credential_prefixes=("",), own_credentials=frozenset({"ingest"}))
    assert credential_problem("db-password", opened) is None
    assert credential_problem("syncdb-password", opened) is None  # not syncd's
    for own in ("syncd-ingest-token", "SYNCD.token", "ingest"):
        assert credential_problem(own, opened) == (
            f"{own} is not allowed: it is one of the daemon's own credentials"
        )
    assert credential_problem("a\nb", reach) is None  # not a name: the schema says so


def test_the_ingest_token_file_is_never_a_room_token(tmp_path: Path) -> None:
    (tmp_path / "ingest").write_text("t")
    (tmp_path / "alias").symlink_to(tmp_path / "ingest")
    reach = Reach(secrets_dirs=(tmp_path,), own_files=(tmp_path / "ingest",))
    assert file_problem(str(tmp_path / "room"), reach) is None
    for path in (tmp_path / "ingest", tmp_path / "alias"):
        assert file_problem(str(path), reach) == (
            f"{path} is not allowed: it is the daemon's own ingest token"
        )


PAYMENTS = Scope.parse("teams/payments/**=HIPCHAT_PAYMENTS_")
TEAM_A = Scope.parse("teams/a/**=HIPCHAT_TEAM_A_")
PAY = Scope.parse("billing=HIPCHAT_PAY")
SCOPES = (PAYMENTS, TEAM_A, PAY)


@pytest.mark.parametrize(
    ("file", "name", "allowed"),
    [
        ("teams/payments/x.yaml", "HIPCHAT_PAYMENTS_ROOM", True),
        ("teams/payments/deep/x.yaml", "HIPCHAT_PAYMENTS_ROOM", True),
        ("teams/a/x.yaml", "HIPCHAT_PAYMENTS_ROOM", False),
        ("teams/payments/x.yaml", "HIPCHAT_TEAM_A_ROOM", False),
        ("teams/payments/x.yaml", "HIPCHAT_SHARED", False),  # a scope's files: its names only
        ("shared.yaml", "HIPCHAT_SHARED", True),
        ("shared.yaml", "HIPCHAT_PAYMENTS_ROOM", False),  # claimed: not for unscoped files
        ("teams/a/teams/payments/x.yaml", "HIPCHAT_PAYMENTS_ROOM", False),  # matched from the top
        ("billing/x.yaml", "HIPCHAT_PAYROLL", True),
        ("billing/x.yaml", "HIPCHAT_PAYMENTS_ROOM", False),  # the longest prefix owns it
    ],
)
def test_a_file_uses_only_its_scopes_secrets(file: str, name: str, allowed: bool) -> None:
    problem = scope_problem("env", name, tuple(file.split("/")), SCOPES)
    assert (problem is None) is allowed, problem


def test_scope_problems_name_the_scopes() -> None:
    foreign = scope_problem("env", "HIPCHAT_PAYMENTS_X", ("teams", "a", "x.yaml"), SCOPES)
    assert foreign == (
        "HIPCHAT_PAYMENTS_X is outside this file's scope (--scope teams/a/**=HIPCHAT_TEAM_A_); "
        "it belongs to --scope teams/payments/**=HIPCHAT_PAYMENTS_"
    )
    unscoped = scope_problem("credential", "HIPCHAT_TEAM_A_X", ("x.yaml",), SCOPES)
    assert unscoped == (
        "HIPCHAT_TEAM_A_X belongs to --scope teams/a/**=HIPCHAT_TEAM_A_: only files "
        "matching teams/a/** may use it"
    )
    no_dir = scope_problem("file", "/run/secrets/x", ("teams", "a", "x.yaml"), SCOPES)
    assert no_dir == (
        "/run/secrets/x is outside this file's scope (--scope teams/a/**=HIPCHAT_TEAM_A_, "
        "which names no secrets directory)"
    )


def test_a_scope_may_name_a_secrets_directory(tmp_path: Path) -> None:
    payments, other = tmp_path / "payments", tmp_path / "other"
    scopes = (Scope.parse(f"teams/payments/**={payments}"),)
    mine = ("teams", "payments", "x.yaml")
    assert scope_problem("file", str(payments / "room"), mine, scopes) is None
    assert scope_problem("file", str(payments / ".." / "other" / "x"), mine, scopes) is not None
    assert scope_problem("file", str(other / "x"), ("x.yaml",), scopes) is None
    assert scope_problem("file", str(payments / "room"), ("x.yaml",), scopes) is not None


def test_no_scopes_no_bounds() -> None:
    assert scope_problem("env", "HIPCHAT_ANY", None, ()) is None


def test_a_file_is_placed_where_it_lies_below_the_first_root(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "teams" / "a").mkdir(parents=True)
    (config / "teams" / "payments").mkdir(parents=True)
    real = config / "teams" / "payments" / "x.yaml"
    real.write_text("")
    link = config / "teams" / "a" / "link.yaml"
    link.symlink_to(real)
    assert place_of(str(real), (config,)) == ("teams", "payments", "x.yaml")
    assert place_of(str(link), (config,)) == ("teams", "payments", "x.yaml")
    assert place_of(str(tmp_path / "elsewhere.yaml"), (config,)) is None
    assert place_of(str(real), ()) is None


@pytest.mark.parametrize(
    "text", ["teams/**", "=HIPCHAT_", "teams/**=", "/=X", "teams/**=/", "teams/**=A B"]
)
def test_a_malformed_scope_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--scope"):
        Scope.parse(text)
