"""What a config may reach is the operator's to say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.reach import Reach, endpoint_allowed, endpoint_problem, env_problem, file_problem
from syncd.config.semantics import Options
from tests.support.configs import errors, minimal


def test_env_names_must_start_with_an_allowed_prefix_and_never_syncd() -> None:
    reach = Reach()
    assert env_problem("HIPCHAT_OPS_TOKEN", reach) is None
    assert env_problem("AWS_SECRET_ACCESS_KEY", reach) == (
        "AWS_SECRET_ACCESS_KEY is not allowed by --token-env-prefix HIPCHAT_"
    )
    opened = Reach(token_env_prefixes=("SYNCD_", ""))
    assert env_problem("SYNCD_INGEST_TOKEN", opened) == (
        "SYNCD_INGEST_TOKEN is not allowed: SYNCD_* are the daemon's own variables"
    )


def test_a_file_must_resolve_inside_a_secrets_dir_whether_or_not_it_exists(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "escape").symlink_to("/etc/hostname")
    reach = Reach(secrets_dirs=(secrets,))
    assert file_problem(str(secrets / "ops-token"), reach) is None
    assert file_problem(str(secrets / "../etc/passwd"), reach) is not None
    assert file_problem(str(secrets / "escape"), reach) is not None
    existing, missing = file_problem("/etc/hostname", reach), file_problem("/etc/nope", reach)
    assert existing == f"/etc/hostname is not inside --secrets-dir {secrets}"
    assert missing == f"/etc/nope is not inside --secrets-dir {secrets}"


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://hipchat.example.com", True),
        ("https://hipchat.example.com:443/", True),
        ("https://HIPCHAT.example.com", True),
        ("http://hipchat.example.com", False),
        ("https://hipchat.example.com:8443", False),
        ("https://hipchat.example.com.evil.test", False),
        ("https://evil.test/https://hipchat.example.com", False),
    ],
)
def test_an_allowed_endpoint_has_the_same_scheme_host_and_port(
    endpoint: str, allowed: bool
) -> None:
    assert endpoint_allowed(endpoint, "https://hipchat.example.com") is allowed


def test_without_allow_endpoint_any_endpoint_may_be_used() -> None:
    assert endpoint_problem("https://anything.test", Reach()) is None


def test_violations_are_errors_at_the_offending_value(tmp_path: Path) -> None:
    text = (
        minimal("a")
        .replace("{env: HIPCHAT_TOKEN}", "{env: SYNCD_INGEST_TOKEN}")
        .replace("https://hipchat.example.com", "http://collector.evil.test")
    )
    (tmp_path / "a.yaml").write_text(text)
    reach = Reach(allowed_endpoints=("https://hipchat.example.com",))
    config = load_config_set([tmp_path], Options(reach=reach))
    assert [(d.line, d.col, d.path) for d in errors(config)] == [
        (7, 17, "$.integrations[0].hipchat.endpoint"),
        (10, 24, "$.integrations[0].hipchat.rooms[0].token.env"),
    ]
    assert not config.valid


def test_the_default_reach_accepts_the_shipped_example(check: Callable[..., ConfigSet]) -> None:
    from tests.support.paths import ROOT

    example = (ROOT / "examples" / "integrations.yaml").read_text()
    assert errors(check(("integrations.yaml", example))) == []
