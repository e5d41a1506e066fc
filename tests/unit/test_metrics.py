"""The /metrics exposition, read back with prometheus-client's own parser.

The parser is the judge of escaping and number formatting: what it reads back
is what a Prometheus server would store.
"""

from __future__ import annotations

from collections.abc import Mapping

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd import __version__
from syncd.hipchat.wire import DeliveryResult
from syncd.service.metrics import (
    FAILURE_REASONS,
    LATENCY_BUCKETS,
    ConfigGauges,
    Metrics,
    failure_reason,
)
from tests.support.metrics import FIXED_REASONS

DELIVERED = DeliveryResult("delivered", 202, "sent")
GAUGES = ConfigGauges(
    last_reload_successful=True,
    last_success_time=1_764_158_400.25,
    config_hash="abcdef0123456789",
    attempts=4,
    failures=1,
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# name: (type, help, label names of its samples other than ``le``)
EXPECTED: dict[str, tuple[str, str, frozenset[str]]] = {
    "syncd_build_info": ("gauge", "The running syncd's release, always 1.", frozenset({"version"})),
    "syncd_config_last_reload_successful": (
        "gauge",
        "Whether the last configuration reload attempt was successful.",
        frozenset(),
    ),
    "syncd_config_last_reload_success_timestamp_seconds": (
        "gauge",
        "Timestamp of the last successful configuration reload.",
        frozenset(),
    ),
    "syncd_config_reload_attempts": (
        "counter",
        "Configuration reload attempts, by result.",
        frozenset({"result"}),
    ),
    "syncd_config_hash": ("gauge", "Hash of the currently applied configuration.", frozenset()),
    "syncd_events_received": ("counter", "Error events accepted.", frozenset()),
    "syncd_notifications": (
        "counter",
        "Notifications delivered to HipChat.",
        frozenset({"integration"}),
    ),
    "syncd_notifications_failed": (
        "counter",
        "Failed delivery attempts, by integration and reason.",
        frozenset({"integration", "reason"}),
    ),
    "syncd_notifications_muted": (
        "counter",
        "Notifications (one per room) not queued because a mute covered them.",
        frozenset({"integration"}),
    ),
    "syncd_outbox_depth": ("gauge", "Notifications waiting to be delivered.", frozenset()),
    "syncd_outbox_dead_letters": (
        "gauge",
        "Notifications given up on (permanent failure or --max-age), by integration.",
        frozenset({"integration"}),
    ),
    "syncd_outbox_lost_at_start": (
        "gauge",
        "1 when the outbox was missing or empty at start in a state dir that ran before.",
        frozenset(),
    ),
    "syncd_outbox_writable": (
        "gauge",
        "0 while the outbox cannot take new writes (disk full): ingest answers 503.",
        frozenset(),
    ),
    "syncd_delivery_latency_seconds": (
        "histogram",
        "Time from an event's acceptance to its notification's delivery.",
        frozenset(),
    ),
}


def failed(status: int | None, *, rate_limited: bool = False) -> DeliveryResult:
    outcome = "retry" if status is None or status >= 500 or rate_limited else "permanent"
    return DeliveryResult(outcome, status, "failed", rate_limited=rate_limited)


def busy_metrics() -> Metrics:
    metrics = Metrics()
    metrics.received(5)
    for latency in (0.01, 0.05, 0.3, 7.0, 5000.0):
        metrics.delivery("b", DELIVERED, latency)
    metrics.delivery("a", DELIVERED, 1.0)
    for status in (503, 404, 418, None):
        metrics.delivery("a", failed(status), 1.0)
    metrics.delivery("a", failed(429, rate_limited=True), 1.0)
    metrics.muted({"a": 2})
    return metrics


def render(
    metrics: Metrics,
    config: ConfigGauges = GAUGES,
    depth: int = 3,
    dead: Mapping[str, int] | None = None,
) -> str:
    return metrics.render(config, depth, {"a": 2, "b": 1} if dead is None else dead)


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_families_have_the_documented_names_types_help_and_labels() -> None:
    families = list(text_string_to_metric_families(render(busy_metrics())))
    assert [f.name for f in families] == list(EXPECTED)
    for family in families:
        kind, help_text, labels = EXPECTED[family.name]
        assert (family.type, family.documentation) == (kind, help_text)
        assert family.samples, family.name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample


def by_label(m: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of ``name``, keyed by their ``label``."""
    return {dict(labels)[label]: value for (n, labels), value in m.items() if n == name}


def test_values_read_back() -> None:
    m = samples(render(busy_metrics()))
    unlabelled = {name: value for (name, labels), value in m.items() if not labels}
    assert unlabelled | {"syncd_delivery_latency_seconds_sum": 0} == {
        "syncd_config_last_reload_successful": 1,
        "syncd_config_last_reload_success_timestamp_seconds": 1_764_158_400.25,
        "syncd_config_hash": int("abcdef012345", 16),
        "syncd_events_received_total": 5,
        "syncd_outbox_depth": 3,
        "syncd_outbox_lost_at_start": 0,
        "syncd_outbox_writable": 1,
        "syncd_delivery_latency_seconds_count": 6,
        "syncd_delivery_latency_seconds_sum": 0,
    }
    assert by_label(m, "syncd_config_reload_attempts_total", "result") == {
        "success": 3,
        "failure": 1,
    }
    assert by_label(m, "syncd_notifications_total", "integration") == {"a": 1, "b": 5}
    assert by_label(m, "syncd_notifications_failed_total", "reason") == {
        "server_error": 1,
        "http_404": 1,
        "http_other": 1,
        "connection": 1,
        "rate_limited": 1,
    }
    assert by_label(m, "syncd_outbox_dead_letters", "integration") == {"a": 2, "b": 1}


def test_a_fresh_daemon_reports_zeros_and_no_created_samples() -> None:
    config = ConfigGauges(False, None, "", outbox_lost=True)
    text = render(Metrics(), config, 0, {})
    m = samples(text)
    assert m[("syncd_config_last_reload_successful", ())] == 0
    assert m[("syncd_config_last_reload_success_timestamp_seconds", ())] == 0
    assert m[("syncd_config_hash", ())] == 0
    assert m[("syncd_events_received_total", ())] == 0
    assert m[("syncd_outbox_lost_at_start", ())] == 1
    assert m[("syncd_delivery_latency_seconds_count", ())] == 0
    assert "_created" not in text
    assert not any(name.startswith(("process_", "python_")) for name, _ in m)


def test_histogram_buckets_are_cumulative_and_end_at_the_count() -> None:
    m = samples(render(busy_metrics()))
    buckets = sorted(
        (float(le), value)
        for le, value in by_label(m, "syncd_delivery_latency_seconds_bucket", "le").items()
    )
    assert [bound for bound, _ in buckets] == [*LATENCY_BUCKETS, float("inf")]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts)
    by_bound = dict(buckets)
    # A bound is inclusive: 0.05 falls in le="0.05"; 5000 s is above every finite bound.
    expected = {0.05: 2, 0.5: 3, 1.0: 4, 10.0: 5, 60.0: 5, float("inf"): 6}
    assert {bound: by_bound[bound] for bound in expected} == expected
    assert m[("syncd_delivery_latency_seconds_count", ())] == 6
    assert m[("syncd_delivery_latency_seconds_sum", ())] == pytest.approx(5008.36)


@pytest.mark.parametrize(
    "status",
    [300, 302, 402, 405, 409, 410, 418, 422, 451, 499, 100, 0, -1, 204, 399],
)
def test_unlisted_statuses_share_one_reason(status: int) -> None:
    assert failure_reason(failed(status)) == "http_other"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 413])
def test_listed_statuses_keep_their_own_reason(status: int) -> None:
    assert failure_reason(failed(status)) == f"http_{status}"


def test_every_status_maps_into_the_fixed_list() -> None:
    reasons = {failure_reason(failed(status)) for status in range(-1, 1000)}
    reasons |= {failure_reason(failed(None)), failure_reason(failed(403, rate_limited=True))}
    assert reasons == FIXED_REASONS == set(FAILURE_REASONS)


def test_rate_limit_and_server_errors_keep_their_names() -> None:
    assert failure_reason(failed(429, rate_limited=True)) == "rate_limited"
    assert failure_reason(failed(403, rate_limited=True)) == "rate_limited"
    assert failure_reason(failed(None)) == "connection"
    assert failure_reason(failed(500)) == "server_error"
    assert failure_reason(failed(599)) == "server_error"


def test_a_hostile_server_adds_no_label_values() -> None:
    metrics = Metrics()
    for status in range(300, 500):
        if status not in (408, 429):
            metrics.delivery("a", failed(status), 0.1)
    m = samples(render(metrics))
    reasons = {
        dict(labels)["reason"] for name, labels in m if name == "syncd_notifications_failed_total"
    }
    assert reasons <= FIXED_REASONS
    assert len(reasons) == 6


def test_label_values_are_escaped() -> None:
    hostile = 'a"b\\c\nd'
    metrics = Metrics()
    metrics.delivery(hostile, DELIVERED, 0.1)
    metrics.delivery(hostile, failed(None), 0.1)
    text = render(metrics, dead={hostile: 4})
    assert 'integration="a\\"b\\\\c\\nd"' in text
    assert all(line.startswith(("#", "syncd_")) for line in text.splitlines())
    m = samples(text)
    assert m[("syncd_notifications_total", (("integration", hostile),))] == 1
    key = (("integration", hostile), ("reason", "connection"))
    assert m[("syncd_notifications_failed_total", key)] == 1
    assert m[("syncd_outbox_dead_letters", (("integration", hostile),))] == 4


def test_two_instances_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.received(7)
    first.delivery("a", DELIVERED, 0.2)
    first.delivery("a", failed(500), 0.2)
    m = samples(render(second))
    assert m[("syncd_events_received_total", ())] == 0
    assert m[("syncd_delivery_latency_seconds_count", ())] == 0
    assert not any(
        name in {"syncd_notifications_total", "syncd_notifications_failed_total"} for name, _ in m
    )
    assert samples(render(first))[("syncd_events_received_total", ())] == 7


def test_the_global_registry_is_left_alone() -> None:
    def global_names() -> set[str]:
        return {family.name for family in prometheus_client.REGISTRY.collect()}

    before = global_names()
    metrics = busy_metrics()
    render(metrics)
    assert global_names() == before
    assert not any(name.startswith("syncd") for name in before)
    assert "syncd_" not in prometheus_client.generate_latest().decode()


def test_each_render_shows_the_state_passed_to_it() -> None:
    metrics = Metrics()
    assert samples(render(metrics, depth=9))[("syncd_outbox_depth", ())] == 9
    after = samples(render(metrics, depth=0, dead={}))
    assert after[("syncd_outbox_depth", ())] == 0
    assert not any(name == "syncd_outbox_dead_letters" for name, _ in after)


def test_a_removed_integrations_counters_are_dropped() -> None:
    metrics = busy_metrics()
    metrics.retain({"b"})
    m = samples(render(metrics, dead={"b": 1}))
    assert not [labels for _, labels in m if ("integration", "a") in labels]
    assert m[("syncd_notifications_total", (("integration", "b"),))] == 5
    assert m[("syncd_delivery_latency_seconds_count", ())] == 6  # not per integration: kept


def test_a_full_outbox_shows_as_not_writable() -> None:
    full = ConfigGauges(True, 1.0, "ab", outbox_writable=False)
    assert samples(render(Metrics(), full))[("syncd_outbox_writable", ())] == 0
    assert samples(render(Metrics()))[("syncd_outbox_writable", ())] == 1


def test_latency_buckets_span_hipchats_answer_times() -> None:
    """From a quick answer (50 ms) to a slow one (a minute), and no further: a p99
    past the last bound reads as that bound, so an alert threshold under it fires."""
    assert LATENCY_BUCKETS[0] == 0.05
    assert LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_build_info_names_the_release() -> None:
    m = samples(render(Metrics(), dead={}))
    assert m[("syncd_build_info", (("version", __version__),))] == 1
    assert [name for name, _ in m if name == "syncd_build_info"] == ["syncd_build_info"]


def test_the_active_sets_integrations_start_at_zero() -> None:
    """A series born at 1 hides the first delivery from rate() and the first dead
    letter from an alert on their rise; the active set's start at 0."""
    metrics = Metrics()
    metrics.delivery("gone", DELIVERED, 0.1)
    metrics.retain({"quiet", "busy"})
    metrics.delivery("busy", DELIVERED, 0.1)
    m = samples(render(metrics, dead={"busy": 2}))
    assert by_label(m, "syncd_notifications_total", "integration") == {"busy": 1, "quiet": 0}
    assert by_label(m, "syncd_outbox_dead_letters", "integration") == {"busy": 2, "quiet": 0}
    assert not any(n == "syncd_notifications_failed_total" for n, _ in m)


def test_degraded_rooms_show_only_when_the_caller_counts_them() -> None:
    metrics = Metrics()
    metrics.retain({"a", "b"})
    absent = samples(render(metrics))
    assert not any(name == "syncd_rooms_degraded" for name, _ in absent)
    text = metrics.render(GAUGES, 0, {}, None, {"a": 2})
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["syncd_rooms_degraded"].type == "gauge"
    m = samples(text)
    assert m[("syncd_rooms_degraded", (("integration", "a"),))] == 2
    assert m[("syncd_rooms_degraded", (("integration", "b"),))] == 0


def test_no_zero_dead_letters_are_guessed_while_the_outbox_cannot_be_written() -> None:
    """Counts that could not be read come as none; zeros then, and the real counts
    after, would look like dead letters rising."""
    metrics = Metrics()
    metrics.retain({"a", "b"})
    unwritable = ConfigGauges(True, 1.0, "ab", outbox_writable=False)
    m = samples(render(metrics, unwritable, dead={"a": 3}))
    assert by_label(m, "syncd_outbox_dead_letters", "integration") == {"a": 3}
