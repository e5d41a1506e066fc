"""Whose token goes where, as a committer would try it: another team's token, an
endpoint of their own, plain http, the daemon's own credential. The operator
decides with ``syncd run``'s and ``syncd validate``'s flags; without a decision,
the daemon does not start."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from syncd.testing.hipchat_server import HipChatServer
from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.events import event
from tests.support.processes import Proc, run_syncd, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

PAYMENTS_TOKEN = "payments-room-token-0001"
ENV = {"HIPCHAT_TOKEN": "reach-test-token-0002", "HIPCHAT_PAYMENTS_ROOM": PAYMENTS_TOKEN}
SCOPES = (
    "--scope",
    "teams/payments/**=HIPCHAT_PAYMENTS_",
    "--scope",
    "teams/a/**=HIPCHAT_TEAM_A_",
    "--scope",
    "teams/a/**=hipchat-team-a-",
)


def integration(uid: str, endpoint: str, token: str, project: str = "shop") -> str:
    return (
        minimal(uid)
        .replace("https://hipchat.example.com", endpoint)
        .replace("{env: HIPCHAT_TOKEN}", token)
        .replace("project: checkout", f"project: {project}")
    )


# Without a decision on endpoints, the daemon does not start.


def test_run_without_an_endpoint_policy_refuses_to_start_saying_which_flag_to_add(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    state = tmp_path / "state"
    result = run_syncd("run", "--config", str(config), "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "syncd run: error: no endpoint policy: say which HipChat servers may receive room "
        "tokens with --allow-endpoint URL_PREFIX (repeatable), e.g. --allow-endpoint "
        "https://hipchat.example.com, or accept whatever endpoint a config names with "
        "--allow-any-endpoint\n"
    )
    assert result.stdout == ""
    assert not state.exists()  # refused before anything was made


def test_any_endpoint_and_a_list_of_endpoints_contradict(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    result = run_cli(
        "run",
        "--config",
        str(config),
        "--allow-any-endpoint",
        "--allow-endpoint",
        "https://hipchat.example.com",
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (
        2,
        "syncd run: error: --allow-any-endpoint and --allow-endpoint contradict: give one\n",
    )


def test_an_allowed_endpoint_is_a_policy(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    policy = ("--allow-endpoint", "https://hipchat.example.com")
    proc = wait_listening(spawn(config, tmp_path / "state", env=ENV, policy=policy))
    try:
        wait_for(lambda: proc.status()["integrations"], what="the set applied")
    finally:
        assert terminate(proc) == 0


# Plain http: an error at the endpoint, loopback included, unless allowed.


def test_validate_refuses_plain_http_at_the_endpoint_unless_allowed(tmp_path: Path) -> None:
    write_files(
        tmp_path / "config",
        ("a.yaml", integration("a", "http://127.0.0.1:8080", "{env: HIPCHAT_TOKEN}")),
        ("b.yaml", integration("b", "http://hipchat.example.com", "{env: HIPCHAT_TOKEN}")),
    )
    refused = run_cli("validate", "config", cwd=tmp_path)
    problem = (
        "error: $.integrations[0].hipchat.endpoint: plain http sends room tokens "
        "unencrypted, to whatever listens on that port; use https, or run with "
        "--allow-http-endpoint"
    )
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == [
        f"config/a.yaml:7:17: {problem}",
        f"config/b.yaml:7:17: {problem}",
    ]
    allowed = run_cli("validate", "config", "--allow-http-endpoint", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stdout
    assert allowed.stdout.splitlines() == [
        "config/b.yaml:7:17: warning: $.integrations[0].hipchat.endpoint: plain http sends "
        "room tokens unencrypted; use https"
    ]


def test_the_daemon_sends_no_token_over_plain_http_unless_allowed(tmp_path: Path) -> None:
    with HipChatServer({"1234567": ENV["HIPCHAT_TOKEN"]}, limits=None) as server:
        config = write_files(
            tmp_path / "config", ("a.yaml", integration("a", server.url, "{env: HIPCHAT_TOKEN}"))
        )
        refused = spawn(config, tmp_path / "state", env=ENV, policy=("--allow-any-endpoint",))
        try:
            assert refused.popen.wait(timeout=30) == 1
        finally:
            refused.stop()
        wait_for(lambda: "no valid config" in refused.log, what="the refusal in the log")
        assert "a.yaml:7:17" in refused.log and "--allow-http-endpoint" in refused.log
        allowed = wait_listening(spawn(config, tmp_path / "state", env=ENV))
        try:
            accepted = allowed.post_events([event("shop", fingerprint="f")])
            assert accepted.status_code == 202, accepted.text
            wait_for(lambda: len(server.messages) == 1, timeout=20, what="the delivery")
        finally:
            allowed.stop()
        assert len(server.attempts) == 1  # the refused daemon sent nothing


# Scopes: a team's files use that team's tokens only.


def scoped_tree(root: Path, attacker: str) -> Path:
    """Payments' own file, and a file of team A's that names payments' token with an
    endpoint of its own."""
    return write_files(
        root,
        (
            "teams/payments/pay.yaml",
            integration("pay", "https://hipchat.example.com", "{env: HIPCHAT_PAYMENTS_ROOM}"),
        ),
        (
            "teams/a/evil.yaml",
            integration("evil", attacker, "{env: HIPCHAT_PAYMENTS_ROOM}", project="evil"),
        ),
    )


def test_validate_keeps_each_part_of_the_repository_to_its_scopes_tokens(
    tmp_path: Path,
) -> None:
    config = scoped_tree(tmp_path / "config", "https://collector.evil.test")
    payments = "{env: HIPCHAT_PAYMENTS_ROOM}"
    write_files(
        config,
        ("shared.yaml", integration("shared", "https://hipchat.example.com", payments)),
        (
            "teams/a/teams/payments/nested.yaml",
            integration("nested", "https://hipchat.example.com", payments),
        ),
        (
            "teams/a/own.yaml",
            integration("own", "https://hipchat.example.com", "{credential: hipchat-team-a-room}"),
        ),
    )
    result = run_cli("validate", "config", *SCOPES, cwd=tmp_path)
    at = "error: $.integrations[0].hipchat.rooms[0].token.env: HIPCHAT_PAYMENTS_ROOM"
    foreign = (
        f"{at} is outside this file's scope (--scope teams/a/**=HIPCHAT_TEAM_A_, "
        "--scope teams/a/**=hipchat-team-a-); it belongs to --scope "
        "teams/payments/**=HIPCHAT_PAYMENTS_"
    )
    unscoped = (
        f"{at} belongs to --scope teams/payments/**=HIPCHAT_PAYMENTS_: only files matching "
        "teams/payments/** may use it"
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"config/shared.yaml:10:24: {unscoped}",
        f"config/teams/a/evil.yaml:10:24: {foreign}",
        f"config/teams/a/teams/payments/nested.yaml:10:24: {foreign}",
    ]
    # A pre-commit hook names files relative to the top: the same verdict.
    one = run_cli("validate", "teams/a/evil.yaml", *SCOPES, cwd=config)
    assert one.stdout.splitlines() == [f"teams/a/evil.yaml:10:24: {foreign}"]
    assert run_cli("validate", "teams/payments/pay.yaml", *SCOPES, cwd=config).returncode == 0


def test_the_daemon_refuses_another_teams_token_and_sends_it_nowhere(tmp_path: Path) -> None:
    with HipChatServer({"1234567": "whatever"}, limits=None) as attacker:
        config = scoped_tree(tmp_path / "config", attacker.url)
        evil = (config / "teams/a/evil.yaml").read_text()
        (config / "teams/a/evil.yaml").unlink()
        proc = wait_listening(spawn(config, tmp_path / "state", *SCOPES, env=ENV))
        try:
            wait_for(lambda: list(proc.status()["integrations"]) == ["pay"], what="pay applied")
            (config / "teams/a/evil.yaml").write_text(evil)
            answer = requests.post(proc.url + "/-/reload", json={}, timeout=30).json()["error"]
            assert answer["message"] == "config rejected; last-known-good stays active"
            assert any(
                "teams/a/evil.yaml:10:24" in line
                and "it belongs to --scope teams/payments/**=HIPCHAT_PAYMENTS_" in line
                for line in answer["diagnostics"]
            ), answer
            proc.post_events([event("evil", fingerprint="f")])
            assert list(proc.status()["integrations"]) == ["pay"]
        finally:
            proc.stop()
        assert attacker.attempts == []
        assert PAYMENTS_TOKEN not in proc.log


@pytest.mark.slow
def test_a_restart_on_the_last_known_good_copy_keeps_its_scopes(tmp_path: Path) -> None:
    """The copy lies in the state dir, not the config dir: its files are still
    matched from its top."""
    config = write_files(
        tmp_path / "config",
        (
            "teams/payments/pay.yaml",
            integration("pay", "https://hipchat.example.com", "{env: HIPCHAT_PAYMENTS_ROOM}"),
        ),
    )
    state = tmp_path / "state"
    first = wait_listening(spawn(config, state, *SCOPES, env=ENV))
    try:
        wait_for(lambda: (state / "last-known-good").exists(), timeout=20, what="the copy")
    finally:
        assert terminate(first) == 0
    (config / "teams/payments/pay.yaml").write_text("integrations: [\n")
    second = wait_listening(spawn(config, state, *SCOPES, env=ENV))
    try:
        wait_for(lambda: second.status()["last_failure"] is not None, what="the broken file")
        assert list(second.status()["integrations"]) == ["pay"]
    finally:
        second.stop()


# Credentials: the unit's other credentials, the daemon's own above all, are not tokens.


def test_validate_refuses_credentials_outside_the_prefix_and_the_daemons_own(
    tmp_path: Path,
) -> None:
    rooms = (
        "        - {id: 1, token: {credential: hipchat-ops}}\n"
        "        - {id: 2, token: {credential: db-password}}\n"
        "        - {id: 3, token: {credential: syncd-ingest-token}}\n"
    )
    text = minimal("a").split("        - id: 1234567")[0] + rooms
    write_files(tmp_path / "config", ("a.yaml", text))
    by_default = run_cli("validate", "config", cwd=tmp_path)
    at = "error: $.integrations[0].hipchat.rooms[{}].token.credential"
    assert by_default.stdout.splitlines() == [
        f"config/a.yaml:10:39: {at.format(1)}: db-password is not allowed by "
        "--credential-prefix hipchat",
        f"config/a.yaml:11:39: {at.format(2)}: syncd-ingest-token is not allowed: it is one "
        "of the daemon's own credentials",
    ]
    opened = run_cli("validate", "config", "--credential-prefix", "", cwd=tmp_path)
    assert [line.split(": ", 1)[0] for line in opened.stdout.splitlines()] == [
        "config/a.yaml:11:39"
    ]


def test_the_daemon_never_sends_its_own_ingest_token(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    ingest = "the-daemons-ingest-token-0003"
    (credentials / "ingest").write_text(ingest)
    with HipChatServer({"1234567": ingest}, limits=None) as attacker:
        config = write_files(
            tmp_path / "config", ("a.yaml", integration("a", attacker.url, "{credential: ingest}"))
        )
        env = {"CREDENTIALS_DIRECTORY": str(credentials)}
        flags = ("--ingest-token-file", str(credentials / "ingest"), "--credential-prefix", "")
        proc: Proc = spawn(config, tmp_path / "state", *flags, env=env)
        try:
            assert proc.popen.wait(timeout=30) == 1
        finally:
            proc.stop()
        wait_for(lambda: "no valid config" in proc.log, what="the refusal in the log")
        assert "ingest is not allowed: it is one of the daemon's own credentials" in proc.log
        assert "a.yaml:10:31" in proc.log
        assert attacker.attempts == []
        assert ingest not in proc.log
