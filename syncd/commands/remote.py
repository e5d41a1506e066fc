"""Talking to a running daemon from the command line.

What a daemon answers is printed to a terminal, and holds names and ids from
the config repository, events and servers' reasons: each is printed with its
control characters escaped (``printable``), so no escape sequence or carriage
return in it reaches the terminal.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests

from syncd.config.diagnostics import printable
from syncd.errors import UsageError


class RegistryFetchError(UsageError):
    """The daemon could not be reached or did not answer with what was asked."""


class EmitError(UsageError):
    """The daemon could not be reached or did not answer as a daemon would."""


def emit(
    base_url: str, event: dict[str, Any], *, token: str | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """Post one event; returns the status and the decoded answer."""
    url = base_url.rstrip("/") + "/v1/events"
    try:
        response = requests.post(url, json=event, headers=_auth(token), timeout=timeout)
    except requests.RequestException as exc:
        raise EmitError(_unreachable(base_url, exc)) from None
    try:
        return response.status_code, response.json()
    except ValueError:
        raise EmitError(f"{url} answered {response.status_code} without JSON") from None


def _unreachable(base_url: str, exc: requests.RequestException) -> str:
    """What a newcomer needs when nothing answers: which daemon, and the likely cause."""
    return (
        f"cannot reach {base_url} ({type(exc).__name__}): is `syncd run` started and "
        f"listening on {base_url}? (--wait-ready SECONDS waits for one starting up)"
    )


def wait_ready(
    base_url: str, seconds: float, *, token: str | None = None, poll: float = 0.1
) -> None:
    """Return once ``/readyz`` answers 200; after ``seconds``, raise what the last try met."""
    url = base_url.rstrip("/") + "/readyz"
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, headers=_auth(token), timeout=poll * 10).status_code == 200:
                return
            problem = f"{base_url} is up but not ready: no config applied yet"
        except requests.RequestException as exc:
            problem = _unreachable(base_url, exc)
        if time.monotonic() >= deadline:
            raise EmitError(f"{problem} (waited {seconds:g} s)")
        time.sleep(poll)


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get(url: str, token: str | None, timeout: float) -> requests.Response:
    try:
        response = requests.get(url, headers=_auth(token), timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryFetchError(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code == 401:
        given = "the token given was refused" if token else "it requires a token"
        raise RegistryFetchError(
            f"{url} answered 401: {given} (set SYNCD_INGEST_TOKEN or pass --token-file)"
        )
    return response


def fetch_registry(base_url: str, *, token: str | None = None, timeout: float = 10.0) -> Any:
    """The daemon's ``/v1/registry`` answer, parsed but not read: its integrations
    and mutes are taken from one answer, so that both are of one revision."""
    url = base_url.rstrip("/") + "/v1/registry"
    response = _get(url, token, timeout)
    if response.status_code != 200:
        raise RegistryFetchError(f"{url} answered {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise RegistryFetchError(
            f"{url} did not answer with a registry: {printable(str(exc))}"
        ) from None


def fetch_status(
    base_url: str, *, token: str | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/status"
    response = _get(url, token, timeout)
    try:
        payload: dict[str, Any] = response.json()
    except ValueError:
        raise RegistryFetchError(f"{url} did not answer with JSON") from None
    return payload


def degraded(status: dict[str, Any]) -> bool:
    """What ``syncd status`` exits 1 for: a failed last reconcile, an unhealthy or
    degraded room, dead letters, or an outbox lost at start."""
    last = status.get("last_reconcile") or {}
    integrations = (status.get("integrations") or {}).values()
    return (
        not last.get("ok", True)
        or bool(status.get("outbox_lost_at_start"))
        or any(_integration_degraded(info) for info in integrations)
    )


def _integration_degraded(info: dict[str, Any]) -> bool:
    rooms = (info.get("rooms") or {}).values()
    return bool(info.get("dead_letters")) or any(_health(h) != "ok" for h in rooms)


def fetch_outbox(
    base_url: str,
    state: str,
    *,
    uid: str | None = None,
    limit: int = 100,
    token: str | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """``GET /v1/outbox``: dead letters or pending notifications, oldest first."""
    query = {"state": state, "limit": str(limit), **({"uid": uid} if uid else {})}
    url = base_url.rstrip("/") + "/v1/outbox?" + urlencode(query)
    response = _get(url, token, timeout)
    payload = _answer(url, response)
    items: list[dict[str, Any]] = payload["items"]
    return items


def retry_dead(
    base_url: str, body: dict[str, Any], *, token: str | None = None, timeout: float = 10.0
) -> list[int]:
    """``POST /v1/outbox/retry``; the ids queued again."""
    url = base_url.rstrip("/") + "/v1/outbox/retry"
    try:
        response = requests.post(url, json=body, headers=_auth(token), timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryFetchError(f"cannot reach {url}: {type(exc).__name__}") from None
    retried: list[int] = _answer(url, response)["retried"]
    return retried


def _answer(url: str, response: requests.Response) -> dict[str, Any]:
    """The JSON of a 200 answer; anything else is the daemon's error, said as it said it."""
    try:
        payload: dict[str, Any] = response.json()
    except ValueError:
        raise RegistryFetchError(f"{url} answered {response.status_code} without JSON") from None
    if response.status_code != 200:
        message = (payload.get("error") or {}).get("message", response.status_code)
        raise RegistryFetchError(
            f"{url} answered {response.status_code}: {printable(str(message))}"
        )
    return payload


def clip(text: str, width: int) -> str:
    """At most ``width`` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip() + "…"


def _health(health: dict[str, Any]) -> str:
    if not health.get("healthy", True):
        return "UNHEALTHY"
    return "DEGRADED" if health.get("degraded") else "ok"


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cell(value: object, width: int | None = None) -> str:
    """A value as a table shows it: control characters escaped, then clipped."""
    text = printable(str(value))
    return text if width is None else clip(text, width)


def _room_rows(uid: str, info: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per room; the integration's own columns only on its first row."""
    rooms = info.get("rooms") or {"-": {}}
    rows: list[tuple[str, ...]] = []
    for i, (room, health) in enumerate(sorted(rooms.items())):
        own = (cell(uid), cell(info.get("state", "")), cell(info.get("queue_depth", 0)))
        rows.append(
            (
                *(own if i == 0 else ("", "", "")),
                cell(room),
                _health(health),
                cell(health.get("dead_letters", 0)),
                _when(health.get("last_delivery")),
                cell(health.get("last_error") or "-", 60),
            )
        )
    return rows


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _reconcile_lines(last: dict[str, Any]) -> list[str]:
    if not last:
        return []
    result = "ok" if last.get("ok") else "FAILED (last-known-good stays active)"
    return [
        f"last reconcile:     {result} at {_when(last.get('at'))}",
        *(f"  {cell(d)}" for d in last.get("diagnostics", [])),
    ]


def _git_lines(git: object) -> list[str]:
    """The git source, when the daemon follows one: remote and ref, the commits
    last fetched and applied, when it last fetched, and the last error."""
    if not isinstance(git, dict):
        return []
    where = f"{git.get('remote') or '-'} {git.get('ref') or '-'}"
    if git.get("path"):
        where += f" (path {git['path']})"
    lines = [
        f"git source:         {cell(where)}",
        f"  fetched:          {cell(git.get('fetched') or '-')}",
        f"  applied:          {cell(git.get('applied') or '-')}",
        f"  last fetch:       {_when(git.get('last_fetch_at'))}, last success "
        f"{_when(git.get('last_success_at'))}",
    ]
    if git.get("error"):
        failures = git.get("failures") or 0
        tries = f" ({cell(failures)} failed in a row)" if failures else ""
        lines.append(f"  ERROR{tries}: {cell(git['error'], 200)}")
    return lines


def _cluster_lines(cluster: object) -> list[str]:
    """The daemons sharing the store, when there are several: each one's host,
    version and revision, and the warning when their revisions disagree too long."""
    if not isinstance(cluster, dict):
        return []
    members = [m for m in cluster.get("members") or [] if isinstance(m, dict)]
    revisions = cluster.get("revisions") or {}
    lines = [f"cluster:            {len(members)} live, {len(revisions)} revision(s)"]
    lines.extend(_member_line(member) for member in members)
    if cluster.get("skew_warning"):
        lines.append(f"  WARNING: {cell(cluster['skew_warning'], 300)}")
    return lines


def _member_line(member: dict[str, Any]) -> str:
    me = " (this daemon)" if member.get("self") else ""
    return (
        f"  {cell(member.get('host') or '-', 40)} {cell(member.get('version') or '-', 20)} "
        f"{cell(member.get('revision') or '-', 40)}{me}"
    )


def render_status(status: dict[str, Any]) -> str:
    """The daemon's /status as a table for people."""
    rows: list[tuple[str, ...]] = [
        ("INTEGRATION", "STATE", "QUEUE", "ROOM", "HEALTH", "DEAD", "LAST DELIVERY", "LAST ERROR")
    ]
    for uid, info in sorted((status.get("integrations") or {}).items()):
        rows.extend(_room_rows(uid, info))
    lines = [
        f"applied revision:   {cell(status.get('applied_revision') or '-')}",
        f"attempted revision: {cell(status.get('attempted_revision') or '-')}",
        *_reconcile_lines(status.get("last_reconcile") or {}),
        *_git_lines(status.get("git")),
        *_cluster_lines(status.get("cluster")),
        f"outbox depth:       {cell(status.get('outbox_depth', 0))}",
        *(
            [f"OUTBOX LOST:        {cell(lost)}"]
            if (lost := status.get("outbox_lost_at_start"))
            else []
        ),
        "",
        *_table(rows),
    ]
    return "\n".join(lines) + "\n"
