"""The daemon's HTTP API: routes, the ingest token check, and the documents
``/status``, ``/v1/registry`` and ``/metrics`` answer with.

Each handler reads the registry's snapshot and the outbox; none changes the
active set except ``POST /-/reload``, which asks for a reconcile and waits for
it like Alertmanager's reload endpoint. Events go through ``ingest``, which
stores them before the 202 is sent.

Every answer is bounded by the request or by the config, never by their
product: a refusal lists at most ``MAX_LISTED`` problems; an acceptance lists
each event's reasons only while they are few (``ingest.DETAIL_LINES``) and
otherwise counts them per integration, at most ``MAX_SUMMARISED`` of those.
``/status`` and ``/metrics`` read counts the store keeps, so a scrape costs the
same with ten notifications waiting or a million.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from syncd.config.diagnostics import printable
from syncd.config.model import integration_to_data
from syncd.config.mutes import Mute
from syncd.config.plan import mute_to_data
from syncd.delivery.health import RoomHealthBook
from syncd.events.ingest import Accepted, Busy, Ingest, TooMany
from syncd.events.validation import Checked, check_events, event_size
from syncd.registry import Notifier, Outcome, Registry
from syncd.service import webhooks
from syncd.service.http import Handler, Request, Response, Routes
from syncd.service.metrics import ClusterGauges, ConfigGauges, Metrics
from syncd.store.contract import DeadPick, Item, Store, StoreError, StoreFull

if TYPE_CHECKING:
    from syncd.store.postgresql import Cluster

log = logging.getLogger("syncd")

# One request is one write transaction; its size bounds how long it holds the lock.
MAX_EVENTS_PER_REQUEST = 1000
MAX_LISTED = 1000
# One event as compact JSON: what routing searches and the outbox keeps per event.
MAX_EVENT_BYTES = 64 << 10
# Integrations an acceptance counts reasons for; the others are counted together.
MAX_SUMMARISED = 100
# What a 503 for a store that cannot take the request asks the client to wait.
RETRY_AFTER = "2"
# What a lone surrogate can come from in a body: a \uD800-\uDFFF escape, or its
# UTF-8-like bytes, which the JSON decoder lets through. A body with neither
# holds none, and is spared a second encoding of every event to look.
_SURROGATE_SOURCE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# How long the live daemons' revisions may disagree (a rollout) before /status warns.
SKEW_WARNING = 300.0


@runtime_checkable
class SharedStore(Protocol):
    """What a store several daemons share adds: each daemon's row, with the set it
    applied, and the live members as last read."""

    def announce(self, version: str, revision: str, uids: Collection[str]) -> None: ...

    def known_elsewhere(self, fresh: bool = False) -> frozenset[str]: ...

    def cluster(self) -> Cluster: ...


def skew_seconds(cluster: Cluster, now: float) -> float:
    """How long the live members' revisions have disagreed; 0 while they agree."""
    return 0.0 if cluster.skew_since is None else max(0.0, now - cluster.skew_since)


def cluster_to_data(cluster: Cluster, now: float, skew_warning: float) -> dict[str, object]:
    """The cluster part of ``/status``: each live member, the revisions applied,
    and a warning once they disagree for longer than ``skew_warning``."""
    skew = skew_seconds(cluster, now)
    revisions = cluster.revisions
    warning = None
    if cluster.skew_since is not None and skew >= skew_warning:
        warning = (
            f"the live daemons have applied {len(revisions)} different revisions for "
            f"{skew:.0f} s (--skew-warning {skew_warning:g} s): a rollout that has not "
            "finished, or a daemon that cannot fetch or apply the newer one"
        )
    return {
        "members": [
            {
                "id": m.id,
                "host": m.host,
                "version": m.version,
                "revision": m.revision,
                "integrations": len(m.uids),
                "heartbeat_age": round(m.heartbeat_age, 3),
                "self": m.id == cluster.me,
            }
            for m in cluster.members
        ],
        "revisions": revisions,
        "skew_seconds": round(skew, 3),
        "skew_warning": warning,
    }


def unavailable(message: str) -> Response:
    """A 503 a client retries after ``RETRY_AFTER`` seconds: nothing was stored."""
    return replace(Response.error(503, message), headers={"Retry-After": RETRY_AFTER})


def item_to_data(item: Item) -> dict[str, object]:
    """An outbox item for people: where it goes and why it waits; not the event's
    attributes, which may hold what only the room should see."""
    return {
        "id": item.id,
        "uid": item.uid,
        "room": item.room_id,
        "state": item.state,
        "attempts": item.attempts,
        "reason": item.reason,
        "created_at": item.created_at,
        "next_attempt_at": item.next_attempt_at if item.state == "pending" else None,
        "finished_at": item.finished_at,
        "project": item.event.get("project"),
        "fingerprint": item.event.get("fingerprint"),
    }


def dead_pick(body: object) -> DeadPick:
    """``{"ids": [...]}``, or ``{"all_dead": true}`` with an optional ``uid`` and ``room``."""
    if not isinstance(body, dict):
        raise ValueError('want a JSON object: {"ids": [...]} or {"all_dead": true}')
    if body.get("ids") is not None:
        return DeadPick(ids=_ids(body["ids"]))
    if body.get("all_dead") is not True:
        raise ValueError("give ids, or all_dead: true (with uid and room to narrow it)")
    uid, room = body.get("uid"), body.get("room")
    if not all(v is None or isinstance(v, str) for v in (uid, room)):
        raise ValueError("uid and room want strings")
    return DeadPick(uid=uid, room_id=room)


def _ids(ids: object) -> tuple[int, ...]:
    if not isinstance(ids, list) or not ids or not all(type(i) is int for i in ids):
        raise ValueError("ids wants a non-empty list of outbox item ids")
    return tuple(ids)


def outcome_to_data(outcome: Outcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    data: dict[str, object] = {
        "ok": outcome.ok,
        "revision": outcome.revision,
        "at": outcome.at,
        "diagnostics": [str(d) for d in outcome.diagnostics],
    }
    if outcome.plan is not None:
        data["plan"] = {
            "create": [i.uid for i in outcome.plan.create],
            "update": [u.uid for u in outcome.plan.update],
            "delete": [i.uid for i in outcome.plan.delete],
            "keep": outcome.plan.unchanged,
        }
    return data


def dead_per_integration(dead: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Dead letters per integration, from the counts per integration and room."""
    totals: dict[str, int] = {}
    for (uid, _room), count in dead.items():
        totals[uid] = totals.get(uid, 0) + count
    return totals


def _notifier_status(
    notifier: Notifier,
    health: RoomHealthBook,
    depth: int,
    dead: Mapping[tuple[str, str], int],
    dead_total: int,
) -> dict[str, object]:
    integration = notifier.integration
    rooms = {
        room.id: {
            **asdict(health.of(integration.uid, room.id)),
            "dead_letters": dead.get((integration.uid, room.id), 0),
        }
        for room in integration.rooms
    }
    return {
        "state": integration.state,
        "project": integration.project,
        "name": integration.name,
        "generation": notifier.generation,
        "queue_depth": depth,
        "dead_letters": dead_total,
        "rooms": rooms,
    }


def status_document(
    registry: Registry,
    health: RoomHealthBook,
    depth: dict[str, int],
    outbox_lost: str | None = None,
    dead: Mapping[tuple[str, str], int] | None = None,
    write_problem: str | None = None,
    now: float | None = None,
) -> dict[str, object]:
    """What ``/status`` answers and ``syncd status`` shows; ``now``: the routing
    clock's time, which says which mutes are active (None: the wall's)."""
    snap = registry.snapshot
    attempt = registry.last_attempt
    dead = dead or {}
    totals = dead_per_integration(dead)
    return {
        "applied_revision": snap.revision,
        "attempted_revision": attempt.revision if attempt else None,
        "config_hash": snap.config_hash,
        "reconcile_attempts": registry.attempts,
        "last_reconcile": outcome_to_data(attempt),
        "last_failure": outcome_to_data(registry.last_failure),
        "outbox_depth": sum(depth.values()),
        "outbox_lost_at_start": outbox_lost,
        "outbox_writable": write_problem is None,
        "outbox_write_problem": write_problem,
        "integrations": {
            uid: _notifier_status(n, health, depth.get(uid, 0), dead, totals.get(uid, 0))
            for uid, n in snap.notifiers.items()
        },
        "mutes": mutes_to_data(snap.active_mutes(time.time() if now is None else now), now),
    }


def mutes_to_data(mutes: Iterable[Mute], now: float | None) -> list[dict[str, object]]:
    """The active mutes, each with what it covers and the seconds it has left; the
    reason escaped, as every text /status shows from a config."""
    at = time.time() if now is None else now
    return [
        {
            "mute": printable(mute.name),
            "file": printable(mute.file),
            "index": mute.index,
            "uid": mute.uid,
            "project": mute.project,
            "rooms": list(mute.rooms) if mute.rooms is not None else None,
            "match": [{"attribute": m.attribute, "regex": m.regex} for m in mute.match],
            "until": mute.until_text,
            "remaining_seconds": max(0, int(mute.until - at)),
            "reason": printable(mute.reason),
        }
        for mute in mutes
    ]


@dataclass(frozen=True)
class GitHook:
    """``POST /v1/hooks/git``: a forge's push, proven by its signature (the ingest
    token is not asked: a forge cannot send it), triggers a fetch. A refusal is
    logged with why, never with the body."""

    secret: bytes = field(repr=False)
    watches: webhooks.Watches
    trigger: Callable[[], None]

    def __call__(self, request: Request) -> Response:
        decision = webhooks.decide(request.headers, request.body, self.secret, self.watches)
        if isinstance(decision, webhooks.Unauthorized):
            log.warning("git webhook refused: %s", decision.reason)
            return Response.error(webhooks.status(decision), "webhook signature refused")
        if isinstance(decision, webhooks.Trigger):
            log.info(
                "git webhook: %s push to %s (delivery %s); fetching",
                decision.forge,
                decision.ref,
                decision.delivery or "-",
            )
            self.trigger()
            return Response.json(webhooks.status(decision), {"fetch": True})
        return Response.json(webhooks.status(decision), {"fetch": False, "why": decision.reason})


@dataclass(frozen=True)
class Api:
    registry: Registry
    store: Store
    ingest: Ingest
    metrics: Metrics
    health: RoomHealthBook
    reload: Callable[[], Outcome | None]
    stopping: Callable[[], bool]
    ingest_token: str | None = field(default=None, repr=False)
    outbox_lost: str | None = None
    wake: Callable[[int], None] = lambda _count: None
    max_event_bytes: int = MAX_EVENT_BYTES
    # With a git source: its status, for /status; and the webhook, if a secret is set.
    git: Callable[[], dict[str, Any]] | None = None
    git_hook: GitHook | None = None
    # With a store several daemons share: its members, for /status and /metrics.
    shared: SharedStore | None = None
    skew_warning: float = SKEW_WARNING
    clock: Callable[[], float] = time.time

    def routes(self) -> Routes:
        """With an ingest token set, every route but the two probes requires it."""
        guarded: Routes = {
            ("POST", "/-/reload"): self._reload,
            ("GET", "/v1/registry"): self._registry,
            ("GET", "/status"): self._status,
            ("POST", "/v1/events"): self._events,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/v1/outbox"): self._outbox,
            ("POST", "/v1/outbox/retry"): self._retry,
        }
        hooks: Routes = {("POST", "/v1/hooks/git"): self.git_hook} if self.git_hook else {}
        return {
            ("GET", "/healthz"): lambda _: Response.text(200, "ok\n"),
            ("GET", "/readyz"): self._ready,
            **hooks,
            **{route: self._guard(handler) for route, handler in guarded.items()},
        }

    def _guard(self, handler: Handler) -> Handler:
        """The token checked; a store out of reach is a 503 to retry, not a 500."""

        def guarded(request: Request) -> Response:
            if not self._authorized(request):
                return Response.error(401, "a valid bearer token is required")
            try:
                return handler(request)
            except StoreError as exc:
                log.warning(
                    "%s %s: the outbox cannot answer: %s", request.method, request.path, exc
                )
                return unavailable(f"the outbox cannot answer now: {exc}")

        return guarded

    def _authorized(self, request: Request) -> bool:
        if not self.ingest_token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.ingest_token}".encode())

    def _counts(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """The queue's depth and dead letters; none while the store cannot be read
        (``write_problem`` then says why), so /status and /metrics still answer."""
        try:
            return self.store.depth(), self.store.dead_letters()
        except StoreError:
            return {}, {}

    def _metrics(self, _: Request) -> Response:
        reg = self.registry
        depth, dead_letters = self._counts()
        gauges = ConfigGauges(
            last_reload_successful=reg.last_attempt is not None and reg.last_attempt.ok,
            last_success_time=reg.last_success.at if reg.last_success else None,
            attempts=reg.attempts,
            failures=reg.failures,
            config_hash=reg.snapshot.config_hash,
            outbox_lost=self.outbox_lost is not None,
            outbox_writable=self.store.write_problem() is None,
        )
        active = reg.snapshot.notifiers
        # A removed integration's series go with it: its dead letters stay in the
        # outbox (GET /v1/outbox lists them), not in a series per uid ever seen.
        dead = {uid: n for uid, n in dead_per_integration(dead_letters).items() if uid in active}
        self.metrics.retain(active)
        degraded = {
            uid: sum(self.health.of(uid, room.id).degraded for room in n.integration.rooms)
            for uid, n in active.items()
        }
        text = self.metrics.render(
            gauges, sum(depth.values()), dead, self._cluster_gauges(), degraded
        )
        return Response.text(200, text, "text/plain; version=0.0.4")

    def _events(self, request: Request) -> Response:
        if self.stopping():
            return Response.error(503, "shutting down")
        try:
            payload = request.json()
            if _SURROGATE_SOURCE.search(request.body):
                # Lone surrogates (JSON "\ud800") are valid JSON but not text.
                json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return Response.error(400, f"body is not usable JSON: {message}")
        refused = self._refused(payload, len(request.body))
        if refused is not None:
            return refused
        checked = check_events(payload)
        if checked.problems:
            return _invalid(checked)
        return self._take(checked.events)

    def _refused(self, payload: object, body_size: int) -> Response | None:
        """A request over a size bound: too many events, or one event too large."""
        if isinstance(payload, list) and len(payload) > MAX_EVENTS_PER_REQUEST:
            return Response.error(
                413, f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(payload)}"
            )
        if body_size <= self.max_event_bytes:
            return None  # no event in it can be larger than the whole body
        events = payload if isinstance(payload, list) else [payload]
        for index, event in enumerate(events):
            size = event_size(event)
            if size > self.max_event_bytes:
                where = f"$[{index}]" if isinstance(payload, list) else "$"
                return Response.error(
                    413,
                    f"the event at {where} is {size:,} bytes as compact JSON, over the "
                    f"limit of {self.max_event_bytes:,} bytes per event",
                )
        return None

    def _take(self, events: list[dict[str, Any]]) -> Response:
        """Store the events: 202, or why not. No exception reaches the caller: one
        the store did not name is logged and answered as a 500 that says nothing
        was stored."""
        try:
            accepted = self.ingest.submit(events)
        except TooMany as exc:
            return Response.error(413, str(exc), limit=exc.limit)
        except Busy as exc:
            return replace(Response.error(429, str(exc)), headers={"Retry-After": "1"})
        except StoreFull as exc:
            log.error("could not store %d event(s): %s", len(events), exc)
            return unavailable("the outbox's disk is full: could not store the events; retry later")
        except StoreError as exc:
            log.error("could not store %d event(s): %s", len(events), exc)
            return unavailable("could not store the events; retry later")
        except Exception:
            log.exception("could not take %d event(s) in", len(events))
            return Response.error(500, "internal error: nothing was stored; retry later")
        self.metrics.received(len(events))
        # Compact: a program reads it, and indenting a thousand ids costs the
        # pure-Python encoder a quarter of the request's CPU.
        return Response.json(202, accepted_to_data(accepted), compact=True)

    def _cluster_gauges(self) -> ClusterGauges | None:
        if self.shared is None:
            return None
        cluster = self.shared.cluster()
        return ClusterGauges(
            len(cluster.members), len(cluster.revisions), skew_seconds(cluster, self.clock())
        )

    def _outbox(self, request: Request) -> Response:
        """Dead letters or pending notifications, oldest first; no event bodies."""
        state = request.query.get("state", ["dead"])[0]
        if state not in ("dead", "pending"):
            return Response.error(400, f"state wants dead or pending, got {state!r}")
        uid = request.query.get("uid", [None])[0]
        try:
            limit = int(request.query.get("limit", ["100"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LISTED:
            return Response.error(400, f"limit wants 1 to {MAX_LISTED}")
        items = self.store.items("dead" if state == "dead" else "pending", uid, limit)
        return Response.json(200, {"items": [item_to_data(item) for item in items]})

    def _retry(self, request: Request) -> Response:
        try:
            pick = dead_pick(request.json())
        except ValueError as exc:
            return Response.error(400, str(exc))
        items = self.store.retry_dead(pick)
        for item in items:
            log.info(
                "%s room %s: dead letter %d queued again on request (was: %s)",
                item.uid,
                item.room_id,
                item.id,
                item.reason,
            )
        if items:
            self.wake(len(items))
        return Response.json(200, {"retried": [item.id for item in items]})

    def _ready(self, _: Request) -> Response:
        if not self.registry.snapshot.revision:
            return Response.text(503, "not ready: no config applied yet\n")
        problem = self.store.write_problem()
        if problem is not None:
            return Response.text(503, f"not ready: the outbox cannot be written: {problem}\n")
        return Response.text(200, "ready\n")

    def _reload(self, _: Request) -> Response:
        outcome = self.reload()
        if outcome is None:
            return Response.error(504, "reload did not finish in time")
        if not outcome.ok:
            return Response.error(
                500,
                "config rejected; last-known-good stays active",
                diagnostics=[str(d) for d in outcome.diagnostics],
            )
        return Response.json(200, outcome_to_data(outcome))

    def _registry(self, _: Request) -> Response:
        snap = self.registry.snapshot
        return Response.json(
            200,
            {
                "revision": snap.revision,
                "config_hash": snap.config_hash,
                "integrations": [
                    integration_to_data(n.integration) for n in snap.notifiers.values()
                ],
                # Every mute of the set, ended ones too: ``syncd plan`` compares the
                # set, and ``/status`` is where the active ones are listed.
                "mutes": [mute_to_data(mute) for mute in snap.mutes],
            },
        )

    def _status(self, _: Request) -> Response:
        depth, dead = self._counts()
        document = status_document(
            self.registry,
            self.health,
            depth,
            self.outbox_lost,
            dead,
            self.store.write_problem(),
            self.clock(),
        )
        if self.git is not None:
            document["git"] = self.git()
        if self.shared is not None:
            document["cluster"] = cluster_to_data(
                self.shared.cluster(), self.clock(), self.skew_warning
            )
        return Response.json(200, document)


def _invalid(checked: Checked) -> Response:
    listed = [{"path": p.path, "message": p.message} for p in checked.problems]
    if checked.complete:
        return Response.error(400, checked.summary, problems=listed)
    return Response.error(
        400, checked.summary, problems=listed, events_with_problems=checked.invalid
    )


def accepted_to_data(accepted: Accepted) -> dict[str, object]:
    """The 202: ids, the count, reasons counted per integration (at most
    ``MAX_SUMMARISED`` listed), and each event's reasons when they are few."""
    summary = list(accepted.integrations.items())
    data: dict[str, object] = {
        "accepted": len(accepted.ids),
        "ids": list(accepted.ids),
        "notifications": accepted.notifications,
        "integrations": {
            uid: {"notifications": tally.notifications, "events": dict(tally.events)}
            for uid, tally in summary[:MAX_SUMMARISED]
        },
    }
    rest = summary[MAX_SUMMARISED:]
    if rest:
        data["integrations_not_listed"] = {
            "integrations": len(rest),
            "notifications": sum(tally.notifications for _, tally in rest),
        }
    if accepted.unserved:
        data["no_integration"] = accepted.unserved
    if accepted.detailed:
        data["events"] = [
            {"id": e.id, "notifications": e.queued, "why": list(e.why)} for e in accepted.events
        ]
    return data
