"""What a config may reach is the operator's to say."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from syncd.config.configset import ConfigSet, check_file, load_config_set
from syncd.config.loader import load_bytes
from syncd.config.reach import Reach, endpoint_allowed, endpoint_problem, env_problem, file_problem
from syncd.config.semantics import Options
from syncd.hipchat.wire import notification_url
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


# Dot segments: a prefix of https://host/hipchat must not let a config reach /other.

HOST = "https://hipchat.example.com"
ESCAPES = [
    f"{HOST}/hipchat/../other",
    f"{HOST}/hipchat/%2e%2e/other",
    f"{HOST}/hipchat/%2E%2E/other",
    f"{HOST}/hipchat/.%2e/other",
    f"{HOST}/hipchat/./../other",
    f"{HOST}/hipchat/x/../../other",
    f"{HOST}/hipchat/..",
]


@pytest.mark.parametrize("endpoint", ESCAPES)
def test_dot_segments_do_not_pass_a_prefix(endpoint: str) -> None:
    assert not endpoint_allowed(endpoint, f"{HOST}/hipchat")
    reach = Reach(allowed_endpoints=(f"{HOST}/hipchat",))
    assert endpoint_problem(endpoint, reach) is not None


@pytest.mark.parametrize("endpoint", [*ESCAPES, f"{HOST}/./hipchat", f"{HOST}/hipchat/."])
def test_an_endpoint_with_dot_segments_is_refused_even_without_allow_endpoint(
    endpoint: str,
) -> None:
    """What a server makes of ``..`` (literal or escaped) is its own business: a
    validated endpoint holds none, so what is checked is what is sent."""
    problem = endpoint_problem(endpoint, Reach())
    assert problem is not None
    assert "dot segment" in problem
    assert "did you mean https://hipchat.example.com" in problem


@pytest.mark.parametrize(
    "endpoint", [f"{HOST}/hipchat/x%2F..%2F..%2Fother", f"{HOST}/hipchat/x%5c..", f"{HOST}/a\\b"]
)
def test_an_escaped_or_backward_slash_in_the_path_is_refused(endpoint: str) -> None:
    """Some servers read an escaped slash or a backslash as a separator, and then
    resolve the dot segments it makes."""
    assert endpoint_problem(endpoint, Reach()) is not None


def test_prefixes_compare_normalised_paths() -> None:
    assert endpoint_allowed(f"{HOST}/hip%63hat", f"{HOST}/hipchat")  # %63 is 'c'
    assert endpoint_allowed(f"{HOST}/hipchat/team", f"{HOST}/x/../hipchat/")
    assert not endpoint_allowed(f"{HOST}/hipchatter", f"{HOST}/hipchat")
    assert not endpoint_allowed(f"{HOST}/HIPCHAT", f"{HOST}/hipchat")


def test_the_prefix_bounds_what_is_sent_the_api_version_included() -> None:
    """syncd sends to ``<endpoint>/v2/...``: that is what the prefix must hold."""
    assert endpoint_allowed(HOST, f"{HOST}/v2")
    assert endpoint_allowed(f"{HOST}/v2", f"{HOST}/v2")
    assert not endpoint_allowed(f"{HOST}/V2", f"{HOST}/V2")  # sent to /v2/..., not /V2/...


_SEGMENTS = ["hipchat", "other", "v2", "V2", "..", ".", "%2e", "%2E%2e", ".%2e", "%2F", "", "x"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_SEGMENTS), max_size=5))
def test_a_valid_endpoint_never_sends_outside_the_allowed_prefix(segments: list[str]) -> None:
    """Whatever the path, if validation passes, the URL the client sends to stays
    under the prefix however the server reads it: urllib3's dot-segment removal,
    then full percent-decoding and dot-segment removal again, as the most lenient
    server would."""
    endpoint = HOST + "".join("/" + s for s in segments)
    text = minimal("a").replace(HOST, endpoint)
    options = Options(reach=Reach(allowed_endpoints=(f"{HOST}/hipchat",)))
    result = check_file(load_bytes(text.encode(), "a.yaml"), options)
    if not result.integrations:
        return
    (integration,) = result.integrations
    sent = parse_url(notification_url(integration.hipchat.endpoint, "1")).path or ""
    as_read = posixpath.normpath(unquote(sent))
    assert as_read.startswith("/hipchat/"), (endpoint, sent)
