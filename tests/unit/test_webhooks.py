"""Push webhooks from GitHub, GitLab and Gitea: who is believed, and which pushes
make the daemon fetch."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from syncd.reconcile.gitsource import GitSource
from syncd.service.webhooks import Ignore, Trigger, Unauthorized, decide, status

SECRET = b"webhook-secret"
SOURCE = GitSource("https://github.com/acme/config", ref="main")


def push(ref: str = "refs/heads/main", **extra: object) -> bytes:
    return json.dumps({"ref": ref, "after": "ab" * 20, **extra}).encode()


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def github(body: bytes, event: str = "push", signature: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": signature or "sha256=" + sign(body),
        "Content-Type": "application/json",
    }


def gitlab(event: str = "Push Hook", token: str = SECRET.decode()) -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token}


def gitea(body: bytes) -> dict[str, str]:
    """What Gitea and Forgejo send: their own headers and GitHub's."""
    return {
        "X-Gitea-Event": "push",
        "X-Gitea-Signature": sign(body),
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + sign(body),
    }


def judge(headers: dict[str, str], body: bytes) -> object:
    return decide(headers, body, SECRET, SOURCE.watches)


def test_a_signed_github_push_to_the_ref_triggers_a_fetch() -> None:
    body = push()
    assert judge(github(body), body) == Trigger("github", "refs/heads/main", "d-1")


def test_a_gitlab_push_with_the_token_triggers_a_fetch() -> None:
    body = push()
    assert judge(gitlab(), body) == Trigger("gitlab", "refs/heads/main")
    assert judge(gitlab("Tag Push Hook"), push("refs/tags/main")) == Trigger(
        "gitlab", "refs/tags/main"
    )


def test_a_signed_gitea_push_triggers_a_fetch() -> None:
    body = push()
    assert judge(gitea(body), body) == Trigger("gitea", "refs/heads/main")


def test_header_names_are_matched_whatever_their_case() -> None:
    body = push()
    lower = {k.lower(): v for k, v in github(body).items()}
    assert isinstance(judge(lower, body), Trigger)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (
            github(push(), signature="sha256=" + sign(push(), b"guess")),
            "X-Hub-Signature-256 does not match",
        ),
        (github(push(), signature="sha1=" + sign(push())), "X-Hub-Signature-256 does not match"),
        (gitlab(token="guess"), "X-Gitlab-Token is not the secret"),
        (
            {**gitea(push()), "X-Gitea-Signature": sign(b"other")},
            "X-Gitea-Signature does not match",
        ),
        ({"X-GitHub-Event": "push"}, "no signature header"),
        ({}, "no signature header"),
    ],
)
def test_a_request_without_the_secret_s_proof_is_unauthorized(
    headers: dict[str, str], reason: str
) -> None:
    decision = judge(headers, push())
    assert isinstance(decision, Unauthorized)
    assert reason in decision.reason
    assert status(decision) == 401


def test_a_replayed_signature_with_another_body_is_unauthorized() -> None:
    original = push("refs/heads/dev")
    replayed = push("refs/heads/main")
    decision = judge(github(original), replayed)
    assert decision == Unauthorized("X-Hub-Signature-256 does not match the body")


def test_no_secret_accepts_nothing() -> None:
    body = push()
    assert isinstance(decide(github(body), body, b"", SOURCE.watches), Unauthorized)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (github(push(), event="ping"), push(), "github event 'ping' is not a push"),
        (github(push(), event="issues"), push(), "github event 'issues' is not a push"),
        (gitlab("Merge Request Hook"), push(), "gitlab event 'Merge Request Hook' is not a push"),
        (github(push("refs/heads/dev")), push("refs/heads/dev"), "a push to refs/heads/dev, which"),
        (github(b"not json"), b"not json", "the push names no ref"),
        (github(b"[1]"), b"[1]", "the push names no ref"),
        ({"X-Hub-Signature-256": "sha256=" + sign(push())}, push(), "no event header"),
    ],
)
def test_other_events_and_refs_are_answered_and_ignored(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    decision = judge(headers, body)
    assert isinstance(decision, Ignore)
    assert decision.reason.startswith(reason)
    assert status(decision) == 202


def test_github_s_form_encoded_push_is_read() -> None:
    body = urlencode({"payload": push().decode()}).encode()
    headers = {**github(body), "Content-Type": "application/x-www-form-urlencoded"}
    assert isinstance(judge(headers, body), Trigger)


def test_with_no_ref_given_the_repository_s_default_branch_is_followed() -> None:
    follows_default = GitSource("https://github.com/acme/config").watches
    to_trunk = push("refs/heads/trunk", repository={"default_branch": "trunk"})
    to_dev = push("refs/heads/dev", repository={"default_branch": "trunk"})
    gitlab_dev = push("refs/heads/dev", project={"default_branch": "trunk"})
    assert isinstance(decide(github(to_trunk), to_trunk, SECRET, follows_default), Trigger)
    assert isinstance(decide(github(to_dev), to_dev, SECRET, follows_default), Ignore)
    assert isinstance(decide(gitlab(), gitlab_dev, SECRET, follows_default), Ignore)


def test_a_control_character_in_a_ref_is_shown_escaped() -> None:
    body = push("refs/heads/\x1b[31mred")
    decision = judge(github(body), body)
    assert isinstance(decision, Ignore)
    assert "\x1b" not in decision.reason
