"""``syncd test`` against the HipChat test server."""

from __future__ import annotations

from pathlib import Path

from syncd.testing.hipchat_server import HipChatServer
from tests.support.cli import run_cli

GOOD, WRONG = "good-room-token-1", "wrong-room-token-2"
# The HipChat test server speaks plain http, which a config may use only where the
# operator allows it.
HTTP = "--allow-http-endpoint"


def write_config(tmp_path: Path, endpoint: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(
        f"""\
version: 1
integrations:
  - uid: ops
    project: shop
    name: ops
    hipchat:
      endpoint: {endpoint}
      from: syncd
      rooms:
        - {{id: 11, token: {{env: HIPCHAT_GOOD_TOKEN}}}}
        - {{id: 12, token: {{env: HIPCHAT_WRONG_TOKEN}}}}
        - {{id: 13, token: {{env: HIPCHAT_MISSING_TOKEN}}}}
  - uid: other
    project: shop
    name: other
    hipchat:
      endpoint: {endpoint}
      rooms:
        - {{id: 11, token: {{env: HIPCHAT_GOOD_TOKEN}}}}
"""
    )
    return config


def test_each_room_is_checked_and_nothing_is_posted(tmp_path: Path) -> None:
    with HipChatServer({"11": GOOD, "12": "the-real-token-12"}, limits=None) as server:
        config = write_config(tmp_path, server.url)
        env = {"HIPCHAT_GOOD_TOKEN": GOOD, "HIPCHAT_WRONG_TOKEN": WRONG}
        result = run_cli("test", "--config", str(config), HTTP, cwd=tmp_path, env=env)
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        assert lines[0] == "OK   ops room 11: token accepted"
        assert lines[1].startswith("FAIL ops room 12: token rejected: HTTP 401")
        assert lines[2] == (
            "FAIL ops room 13: token {env: HIPCHAT_MISSING_TOKEN}: "
            "environment variable HIPCHAT_MISSING_TOKEN is not set or empty"
        )
        assert lines[3] == "OK   other room 11: token accepted"
        assert server.messages == []
        assert GOOD not in result.stdout + result.stderr
        assert WRONG not in result.stdout + result.stderr
        assert result.stderr == "", result.stderr  # the 401 leaves no stray log line


def test_a_server_that_cannot_be_reached_is_not_a_rejected_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    env = {"HIPCHAT_GOOD_TOKEN": GOOD, "HIPCHAT_WRONG_TOKEN": WRONG}
    result = run_cli("test", "--config", str(config), HTTP, "--uid", "other", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL other room 11: server unreachable: ConnectionError")


def test_a_literal_token_is_refused_unless_allowed(tmp_path: Path) -> None:
    with HipChatServer({"11": GOOD}, limits=None) as server:
        config = tmp_path / "config"
        config.mkdir()
        (config / "a.yaml").write_text(
            f"""\
version: 1
integrations:
  - uid: ops
    project: shop
    name: ops
    hipchat:
      endpoint: {server.url}
      rooms:
        - {{id: 11, token: {GOOD}}}
"""
        )
        refused = run_cli("test", "--config", str(config), HTTP, cwd=tmp_path)
        assert refused.returncode == 2
        assert "error: $.integrations[0].hipchat.rooms[0].token: plaintext token" in refused.stdout
        assert "--allow-plaintext-tokens" in refused.stdout
        assert GOOD not in refused.stdout + refused.stderr
        allowed = run_cli(
            "test", "--config", str(config), HTTP, "--allow-plaintext-tokens", cwd=tmp_path
        )
        assert allowed.returncode == 0, allowed.stdout
        assert allowed.stdout == "OK   ops room 11: token accepted\n"


def test_send_posts_a_test_notification_to_the_chosen_integration(tmp_path: Path) -> None:
    with HipChatServer({"11": GOOD}, limits=None) as server:
        config = write_config(tmp_path, server.url)
        result = run_cli(
            "test",
            "--config",
            str(config),
            HTTP,
            "--uid",
            "other",
            "--send",
            cwd=tmp_path,
            env={"HIPCHAT_GOOD_TOKEN": GOOD},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == "OK   other room 11: test notification sent\n"
        (message,) = server.messages
        assert message.body["message"] == "syncd test notification for other (other)"
        unknown = run_cli("test", "--config", str(config), HTTP, "--uid", "nope", cwd=tmp_path)
        assert unknown.returncode == 2
