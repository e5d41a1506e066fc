"""Push webhooks from a git forge: is this request from the forge, and is it a
push to the ref the daemon follows? Pure: headers, body and secret in, a
decision out; the route that calls it triggers the fetch.

The route takes no ingest token (a forge cannot send one), so the secret is
all that keeps anyone else from making the daemon fetch: GitHub and Gitea,
Forgejo or Gogs sign the body with an HMAC-SHA256 of it
(``X-Hub-Signature-256: sha256=<hex>``, ``X-Gitea-Signature: <hex>``);
GitLab sends the secret itself (``X-Gitlab-Token``), which proves the sender
but not the body. Every signature header present must match, compared in
constant time, and one at least must be there. A body replayed with another
body's signature fails; a replayed delivery, signature and body together,
triggers one more fetch of what the remote holds, which is harmless.

A request that passes but is not a push to the followed ref (a ``ping``, an
issue event, a push to another branch) is answered 202 and ignored: the
forge counts it delivered, and nothing is fetched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from syncd.config.diagnostics import printable

# (header, prefix of its value): the HMAC-SHA256 signatures of the body.
_SIGNATURES = (
    ("x-hub-signature-256", "sha256="),
    ("x-gitea-signature", ""),
    ("x-forgejo-signature", ""),
    ("x-gogs-signature", ""),
)
_TOKEN = "x-gitlab-token"
# (header, forge), the first present names the forge (Gitea also sends GitHub's).
_EVENTS = (
    ("x-gitlab-event", "gitlab"),
    ("x-gitea-event", "gitea"),
    ("x-forgejo-event", "gitea"),
    ("x-gogs-event", "gitea"),
    ("x-github-event", "github"),
)
_PUSHES = {
    "github": frozenset({"push"}),
    "gitea": frozenset({"push"}),
    "gitlab": frozenset({"Push Hook", "Tag Push Hook"}),
}
_DELIVERIES = ("x-github-delivery", "x-gitea-delivery", "x-gitlab-event-uuid")
_FORM = "application/x-www-form-urlencoded"
_SHOWN = 100  # characters of a header value or ref repeated in a reason


@dataclass(frozen=True)
class Trigger:
    """A push to the followed ref: fetch now."""

    forge: str
    ref: str
    delivery: str | None = None


@dataclass(frozen=True)
class Ignore:
    """From the forge, but nothing to fetch for: answered 202."""

    reason: str


@dataclass(frozen=True)
class Unauthorized:
    """Not shown to come from the forge: answered 401 and logged, without the body."""

    reason: str


Decision = Trigger | Ignore | Unauthorized
# Whether a push to a full ref (with the repository's default branch, when the
# payload names it) moves the ref followed: GitSource.watches.
Watches = Callable[[str, str | None], bool]


def decide(headers: Mapping[str, str], body: bytes, secret: bytes, watches: Watches) -> Decision:
    """What to do with a webhook request."""
    names = {name.lower(): value for name, value in headers.items()}
    refused = authenticate(names, body, secret)
    if refused is not None:
        return Unauthorized(refused)
    forge, event = _event(names)
    if forge is None or event is None:
        return Ignore("no event header (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event)")
    if event not in _PUSHES[forge]:
        return Ignore(f"{forge} event {_shown(event)!r} is not a push")
    payload = _payload(body, names.get("content-type", ""))
    ref = payload.get("ref") if payload is not None else None
    if not isinstance(ref, str):
        return Ignore("the push names no ref")
    if not watches(ref, _default_branch(payload)):
        return Ignore(f"a push to {_shown(ref)}, which this daemon does not follow")
    return Trigger(forge, ref, _delivery(names))


def authenticate(headers: Mapping[str, str], body: bytes, secret: bytes) -> str | None:
    """None when the request carries the secret's proof; else why not. ``headers``
    have lower-case names."""
    if not secret:
        return "no webhook secret is set"
    given = [(name, prefix) for name, prefix in _SIGNATURES if name in headers]
    if not given and _TOKEN not in headers:
        return "no signature header (X-Hub-Signature-256, X-Gitea-Signature, X-Gitlab-Token)"
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    for name, prefix in given:
        if not _equal(headers[name].strip().lower().encode(), (prefix + expected).encode()):
            return f"{_title(name)} does not match the body"
    if _TOKEN in headers and not _equal(headers[_TOKEN].encode(), secret):
        return f"{_title(_TOKEN)} is not the secret"
    return None


def _equal(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)


def _event(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    for name, forge in _EVENTS:
        if name in headers:
            return forge, headers[name].strip()
    return None, None


def _payload(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The push's JSON object; GitHub's form encoding (``payload=<json>``) too."""
    try:
        if content_type.partition(";")[0].strip().lower() == _FORM:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
            body = fields.get("payload", [""])[0].encode()
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _default_branch(payload: Mapping[str, Any] | None) -> str | None:
    """The repository's default branch as GitHub and Gitea (``repository``) or
    GitLab (``project``) name it in a push."""
    for key in ("repository", "project"):
        holder = (payload or {}).get(key)
        branch = holder.get("default_branch") if isinstance(holder, dict) else None
        if isinstance(branch, str) and branch:
            return branch
    return None


def _delivery(headers: Mapping[str, str]) -> str | None:
    for name in _DELIVERIES:
        if name in headers:
            return _shown(headers[name])
    return None


def _title(name: str) -> str:
    return "-".join("GitHub" if p == "github" else p.capitalize() for p in name.split("-"))


def _shown(text: str) -> str:
    return printable(text[:_SHOWN])


def status(decision: Decision) -> int:
    """The HTTP status a decision is answered with."""
    return 401 if isinstance(decision, Unauthorized) else 202
