"""Prometheus exposition of what the daemon counts, written by prometheus-client.

Counters live here, fed by ingest and the dispatcher; gauges that describe
the present (config state, outbox depth) are read at scrape time by the
caller and passed in, so nothing is kept twice.

Series labelled by integration exist only for integrations in the active set:
a removed one's counters are dropped (:meth:`Metrics.retain`, at each scrape,
and :meth:`Metrics.on_applied`, as a set is applied), so config churn does not
grow the exposition with every uid ever seen. Each integration of that set has
its delivered and dead-letter series from the start, at 0: Prometheus' ``rate``
and an alert on dead letters rising see the first one, which a series born at
1 would hide. Failures by reason are not: ten reasons per integration would be
kept for the few that ever fail.

Each ``Metrics`` has its own registry: several daemons can share a process,
and the library's global registry would also add process and
platform metrics nobody asked for. The families are built at scrape time by
one collector rather than kept as library metric objects: the present-state
gauges are only known then, and counters carry no ``_created`` samples
without touching the library's switch for that, which is process-wide.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from syncd import __version__
from syncd.config.plan import Plan
from syncd.hipchat.wire import DeliveryResult
from syncd.registry import Snapshot

if TYPE_CHECKING:
    from syncd.reconcile.gitpoller import FetchReport

_go_float: Callable[[float], str] = floatToGoString
"""The library's own ``le`` spelling, typed here because the library leaves it bare."""

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
"""From one quick HipChat answer to ``--send-timeout``'s worth of slow ones.

A bound past a minute would only sort deliveries that waited on retries or a
paused integration, which the queue depth and dead letters already show; what
is over 60 s is the ``+Inf`` bucket less the ``le="60.0"`` one, and a p99
estimated from these buckets reads 60 then, which a threshold under it sees.
"""

_NAMED_STATUSES = frozenset({400, 401, 403, 404, 408, 413})
FAILURE_REASONS = (
    "rate_limited",
    "connection",
    "server_error",
    *(f"http_{status}" for status in sorted(_NAMED_STATUSES)),
    "http_other",
)
"""Every value the ``reason`` label can take.

The statuses named are the ones an operator acts on differently (bad
request, token, room, proxy timeout, message size); anything else a server
invents shares ``http_other``, so a hostile endpoint cannot mint series.
"""


def failure_reason(result: DeliveryResult) -> str:
    """A label from ``FAILURE_REASONS``, whatever the server said."""
    if result.rate_limited:
        return "rate_limited"
    if result.status is None:
        return "connection"
    if result.status >= 500:
        return "server_error"
    if result.status in _NAMED_STATUSES:
        return f"http_{result.status}"
    return "http_other"


@dataclass(frozen=True)
class ConfigGauges:
    last_reload_successful: bool
    last_success_time: float | None
    config_hash: str
    attempts: int = 0
    failures: int = 0
    outbox_lost: bool = False
    outbox_writable: bool = True


@dataclass(frozen=True)
class ClusterGauges:
    """The daemons sharing a store, as this one last read them."""

    members: int
    revisions: int
    skew_seconds: float


@dataclass(frozen=True)
class _Present:
    """What the caller knows at scrape time, handed to the collector for one scrape."""

    config: ConfigGauges
    outbox_depth: int
    dead_letters: Mapping[str, int]
    cluster: ClusterGauges | None = None
    rooms_degraded: Mapping[str, int] | None = None


GIT_FETCH_RESULTS = ("changed", "unchanged", "rejected", "failed")
GIT_FETCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class GitCounts:
    """The git source's fetches as of one instant; every result has a series from
    the start, so a rate over it needs no first failure to exist."""

    fetches: Mapping[str, int]
    buckets: tuple[tuple[float, int], ...]
    duration_sum: float
    duration_count: int
    last_success: float | None


@dataclass(frozen=True)
class _Counts:
    """The counters as of one instant, so a scrape never mixes two moments."""

    events_received: int
    notifications: Mapping[str, int]
    failures: Mapping[tuple[str, str], int]
    buckets: tuple[tuple[float, int], ...]
    """(upper bound, observations in that bucket alone), not yet cumulative."""
    latency_sum: float
    latency_count: int
    unverified: int = 0
    git: GitCounts | None = None
    active: frozenset[str] = frozenset()
    """The active set as last retained: its integrations' series start at 0."""
    muted: Mapping[str, int] = field(default_factory=dict)
    """Notifications (one per room) a mute held back, per integration."""


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _build_family() -> GaugeMetricFamily:
    info = GaugeMetricFamily(
        "syncd_build_info", "The running syncd's release, always 1.", labels=["version"]
    )
    info.add_metric([__version__], 1)
    return info


def _per_integration(
    name: str, help_text: str, values: Mapping[str, int], active: Collection[str]
) -> GaugeMetricFamily:
    """One sample per integration of the active set (0 when it has none) and per
    integration ``values`` names."""
    family = GaugeMetricFamily(name, help_text, labels=["integration"])
    for uid in sorted({*active, *values}):
        family.add_metric([uid], values.get(uid, 0))
    return family


def _config_families(config: ConfigGauges, unverified: int) -> Iterator[Metric]:
    yield _gauge(
        "syncd_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful.",
        int(config.last_reload_successful),
    )
    yield _gauge(
        "syncd_config_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful configuration reload.",
        config.last_success_time or 0,
    )
    attempts = CounterMetricFamily(
        "syncd_config_reload_attempts_total",
        "Configuration reload attempts, by result.",
        labels=["result"],
    )
    attempts.add_metric(["success"], config.attempts - config.failures)
    # A commit whose signature does not verify is a failed attempt counted apart.
    attempts.add_metric(["failure"], max(0, config.failures - unverified))
    if unverified:
        attempts.add_metric(["unverified"], unverified)
    yield attempts
    yield _gauge(
        "syncd_config_hash",
        "Hash of the currently applied configuration.",
        int(config.config_hash[:12], 16) if config.config_hash else 0,
    )


def _count_families(counts: _Counts) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "syncd_events_received_total", "Error events accepted.", value=counts.events_received
    )
    delivered = CounterMetricFamily(
        "syncd_notifications_total", "Notifications delivered to HipChat.", labels=["integration"]
    )
    for uid in sorted({*counts.active, *counts.notifications}):
        delivered.add_metric([uid], counts.notifications.get(uid, 0))
    yield delivered
    failed = CounterMetricFamily(
        "syncd_notifications_failed_total",
        "Failed delivery attempts, by integration and reason.",
        labels=["integration", "reason"],
    )
    for (uid, reason), count in sorted(counts.failures.items()):
        failed.add_metric([uid, reason], count)
    yield failed
    muted = CounterMetricFamily(
        "syncd_notifications_muted_total",
        "Notifications (one per room) not queued because a mute covered them.",
        labels=["integration"],
    )
    for uid in sorted({*counts.active, *counts.muted}):
        muted.add_metric([uid], counts.muted.get(uid, 0))
    yield muted


def _outbox_families(present: _Present, active: Collection[str]) -> Iterator[Metric]:
    yield _gauge(
        "syncd_outbox_depth", "Notifications waiting to be delivered.", present.outbox_depth
    )
    # An outbox that cannot be written may not have been read either: its zeros
    # would be guesses, and the counts coming back after them a false rise.
    yield _per_integration(
        "syncd_outbox_dead_letters",
        "Notifications given up on (permanent failure or --max-age), by integration.",
        present.dead_letters,
        active if present.config.outbox_writable else (),
    )
    yield _gauge(
        "syncd_outbox_lost_at_start",
        "1 when the outbox was missing or empty at start in a state dir that ran before.",
        int(present.config.outbox_lost),
    )
    yield _gauge(
        "syncd_outbox_writable",
        "0 while the outbox cannot take new writes (disk full): ingest answers 503.",
        int(present.config.outbox_writable),
    )
    if present.rooms_degraded is not None:
        yield _per_integration(
            "syncd_rooms_degraded",
            "Rooms with 3 or more failed sends in a row and no delivery since, by integration.",
            present.rooms_degraded,
            active,
        )


def _cluster_families(cluster: ClusterGauges) -> Iterator[Metric]:
    yield _gauge(
        "syncd_cluster_members",
        "Live daemons sharing this daemon's store (itself included).",
        cluster.members,
    )
    yield _gauge(
        "syncd_cluster_revisions",
        "Distinct config revisions the live daemons have applied: 1 when they agree.",
        cluster.revisions,
    )
    yield _gauge(
        "syncd_cluster_revision_skew_seconds",
        "How long the live daemons' revisions have disagreed; 0 while they agree.",
        cluster.skew_seconds,
    )


def _cumulative(buckets: Iterable[tuple[float, int]], total: int) -> list[tuple[str, float]]:
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in buckets:
        running += count
        cumulative.append((_go_float(bound), running))
    cumulative.append(("+Inf", total))
    return cumulative


def _latency_family(counts: _Counts) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "syncd_delivery_latency_seconds",
        "Time from an event's acceptance to its notification's delivery.",
        buckets=_cumulative(counts.buckets, counts.latency_count),
        sum_value=counts.latency_sum,
    )


def _git_families(git: GitCounts) -> Iterator[Metric]:
    fetches = CounterMetricFamily(
        "syncd_git_fetch_total", "Fetches of the git source, by result.", labels=["result"]
    )
    for result in GIT_FETCH_RESULTS:
        fetches.add_metric([result], git.fetches.get(result, 0))
    yield fetches
    yield HistogramMetricFamily(
        "syncd_git_fetch_duration_seconds",
        "Time one fetch of the git source took, checkout included.",
        buckets=_cumulative(git.buckets, git.duration_count),
        sum_value=git.duration_sum,
    )
    yield _gauge(
        "syncd_git_last_fetch_success_timestamp_seconds",
        "Timestamp of the last fetch of the git source that reached the remote.",
        git.last_success or 0,
    )


class _Collector:
    """Builds every family at scrape time from a snapshot of the counters.

    The present-state gauges exist only while ``scrape`` runs: the registry's
    ``collect`` takes no arguments, so ``scrape`` lends them for one call,
    one scrape at a time. Collected outside ``scrape``, only the counters show.
    """

    def __init__(self, counts: Callable[[], _Counts]) -> None:
        self._counts = counts
        self._scrape_lock = threading.Lock()
        self._present: _Present | None = None

    def scrape(self, registry: CollectorRegistry, present: _Present) -> str:
        with self._scrape_lock:
            self._present = present
            try:
                return generate_latest(registry).decode("utf-8")
            finally:
                self._present = None

    def collect(self) -> Iterator[Metric]:
        present = self._present
        counts = self._counts()
        yield _build_family()
        if present is not None:
            yield from _config_families(present.config, counts.unverified)
        yield from _count_families(counts)
        if present is not None:
            yield from _outbox_families(present, counts.active)
            if present.cluster is not None:
                yield from _cluster_families(present.cluster)
        yield _latency_family(counts)
        if counts.git is not None:
            yield from _git_families(counts.git)


class Metrics:
    """The daemon's counters and the registry they are scraped through."""

    def __init__(
        self,
        buckets: Iterable[float] = LATENCY_BUCKETS,
        *,
        git: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``git``: the daemon follows a git source, whose fetches are counted."""
        self._lock = threading.Lock()
        self._git = git
        self._wall = wall
        self._unverified = 0
        self._fetches: dict[str, int] = {}
        self._fetch_counts = [0] * len(GIT_FETCH_BUCKETS)
        self._fetch_sum = 0.0
        self._fetch_count = 0
        self._fetch_success: float | None = None
        self._bounds = tuple(sorted(buckets))
        self._events_received = 0
        self._notifications: dict[str, int] = {}
        self._muted: dict[str, int] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._bucket_counts = [0] * len(self._bounds)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._active: frozenset[str] = frozenset()
        self._collector = _Collector(self._snapshot)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)

    def received(self, n: int) -> None:
        with self._lock:
            self._events_received += n

    def delivery(self, uid: str, result: DeliveryResult, latency: float) -> None:
        with self._lock:
            if result.ok:
                self._notifications[uid] = self._notifications.get(uid, 0) + 1
                index = bisect.bisect_left(self._bounds, latency)
                if index < len(self._bucket_counts):
                    self._bucket_counts[index] += 1
                self._latency_sum += latency
                self._latency_count += 1
            else:
                key = (uid, failure_reason(result))
                self._failures[key] = self._failures.get(key, 0) + 1

    def muted(self, counts: Mapping[str, int]) -> None:
        """Ingest's ``on_muted``: notifications a mute held back, per integration."""
        with self._lock:
            for uid, count in counts.items():
                self._muted[uid] = self._muted.get(uid, 0) + count

    def unverified(self) -> None:
        """A fetched commit rejected because its signature did not verify."""
        with self._lock:
            self._unverified += 1

    def git_fetched(self, report: FetchReport) -> None:
        """A git poller's ``fetched`` hook."""
        with self._lock:
            self._fetches[report.result] = self._fetches.get(report.result, 0) + 1
            index = bisect.bisect_left(GIT_FETCH_BUCKETS, report.duration)
            if index < len(self._fetch_counts):
                self._fetch_counts[index] += 1
            self._fetch_sum += report.duration
            self._fetch_count += 1
            if report.result != "failed":
                self._fetch_success = self._wall()

    def _git_counts(self) -> GitCounts | None:
        if not self._git:
            return None
        return GitCounts(
            fetches=dict(self._fetches),
            buckets=tuple(zip(GIT_FETCH_BUCKETS, self._fetch_counts, strict=True)),
            duration_sum=self._fetch_sum,
            duration_count=self._fetch_count,
            last_success=self._fetch_success,
        )

    def retain(self, uids: Collection[str]) -> None:
        """Drop the counters of integrations not in ``uids`` (the active set), and
        show those of ``uids`` from 0 until they count."""
        with self._lock:
            self._active = frozenset(uids)
            for uid in [u for u in self._notifications if u not in uids]:
                del self._notifications[uid]
            for uid in [u for u in self._muted if u not in uids]:
                del self._muted[uid]
            for key in [k for k in self._failures if k[0] not in uids]:
                del self._failures[key]

    def on_applied(self, plan: Plan, snapshot: Snapshot) -> None:
        """A registry listener: a removed integration's counters go with it."""
        self.retain(snapshot.notifiers)

    def _snapshot(self) -> _Counts:
        with self._lock:
            return _Counts(
                events_received=self._events_received,
                notifications=dict(self._notifications),
                failures=dict(self._failures),
                buckets=tuple(zip(self._bounds, self._bucket_counts, strict=True)),
                latency_sum=self._latency_sum,
                latency_count=self._latency_count,
                unverified=self._unverified,
                git=self._git_counts(),
                active=self._active,
                muted=dict(self._muted),
            )

    def render(
        self,
        config: ConfigGauges,
        outbox_depth: int,
        dead_letters: Mapping[str, int],
        cluster: ClusterGauges | None = None,
        rooms_degraded: Mapping[str, int] | None = None,
    ) -> str:
        """``cluster``: with a shared store, its members; None with a store of its own.
        ``rooms_degraded``: per integration, its rooms that delivery finds degraded;
        None leaves the family out rather than claim every room is well."""
        degraded = None if rooms_degraded is None else dict(rooms_degraded)
        present = _Present(config, outbox_depth, dict(dead_letters), cluster, degraded)
        return self._collector.scrape(self.registry, present)
