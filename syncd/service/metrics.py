"""Prometheus text exposition of what the daemon counts.

Counters live here, fed by ingest and the dispatcher; gauges that describe
the present (config state, outbox depth) are read at scrape time by the
caller and passed in, so nothing is kept twice.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from syncd.hipchat.wire import DeliveryResult

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def failure_reason(result: DeliveryResult) -> str:
    """A label with few values, whatever the server said."""
    if result.rate_limited:
        return "rate_limited"
    if result.status is None:
        return "connection"
    if result.status >= 500:
        return "server_error"
    return f"http_{result.status}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(frozen=True)
class ConfigGauges:
    last_reload_successful: bool
    last_success_time: float | None
    config_hash: str
    attempts: int = 0
    failures: int = 0
    outbox_lost: bool = False


class Metrics:
    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(sorted(buckets))
        self.events_received = 0
        self.notifications: dict[str, int] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self._bucket_counts = [0] * len(self._buckets)
        self._latency_sum = 0.0
        self._latency_count = 0

    def received(self, n: int) -> None:
        with self._lock:
            self.events_received += n

    def delivery(self, uid: str, result: DeliveryResult, latency: float) -> None:
        with self._lock:
            if result.ok:
                self.notifications[uid] = self.notifications.get(uid, 0) + 1
                index = bisect.bisect_left(self._buckets, latency)
                if index < len(self._bucket_counts):
                    self._bucket_counts[index] += 1
                self._latency_sum += latency
                self._latency_count += 1
            else:
                key = (uid, failure_reason(result))
                self.failures[key] = self.failures.get(key, 0) + 1

    def render(
        self, config: ConfigGauges, outbox_depth: int, dead_letters: Mapping[str, int]
    ) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        metric(
            "syncd_config_last_reload_successful",
            "gauge",
            "Whether the last configuration reload attempt was successful.",
        )
        out.append(f"syncd_config_last_reload_successful {int(config.last_reload_successful)}")
        metric(
            "syncd_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Timestamp of the last successful configuration reload.",
        )
        success = config.last_success_time or 0
        out.append(f"syncd_config_last_reload_success_timestamp_seconds {_number(success)}")
        metric(
            "syncd_config_reload_attempts_total",
            "counter",
            "Configuration reload attempts, by result.",
        )
        out.append(
            f'syncd_config_reload_attempts_total{{result="success"}} '
            f"{config.attempts - config.failures}"
        )
        out.append(f'syncd_config_reload_attempts_total{{result="failure"}} {config.failures}')
        metric("syncd_config_hash", "gauge", "Hash of the currently applied configuration.")
        value = int(config.config_hash[:12], 16) if config.config_hash else 0
        out.append(f"syncd_config_hash {value}")
        with self._lock:
            metric("syncd_events_received_total", "counter", "Error events accepted.")
            out.append(f"syncd_events_received_total {self.events_received}")
            metric("syncd_notifications_total", "counter", "Notifications delivered to HipChat.")
            for uid, count in sorted(self.notifications.items()):
                out.append(f"syncd_notifications_total{_labels({'integration': uid})} {count}")
            metric(
                "syncd_notifications_failed_total",
                "counter",
                "Failed delivery attempts, by integration and reason.",
            )
            for (uid, reason), count in sorted(self.failures.items()):
                labels = _labels({"integration": uid, "reason": reason})
                out.append(f"syncd_notifications_failed_total{labels} {count}")
            metric("syncd_outbox_depth", "gauge", "Notifications waiting to be delivered.")
            out.append(f"syncd_outbox_depth {outbox_depth}")
            metric(
                "syncd_outbox_dead_letters",
                "gauge",
                "Notifications given up on (permanent failure or --max-age), by integration.",
            )
            for uid, count in sorted(dead_letters.items()):
                out.append(f"syncd_outbox_dead_letters{_labels({'integration': uid})} {count}")
            metric(
                "syncd_outbox_lost_at_start",
                "gauge",
                "1 when the outbox was missing or empty at start in a state dir that ran before.",
            )
            out.append(f"syncd_outbox_lost_at_start {int(config.outbox_lost)}")
            metric(
                "syncd_delivery_latency_seconds",
                "histogram",
                "Time from an event's acceptance to its notification's delivery.",
            )
            cumulative = 0
            for bound, count in zip(self._buckets, self._bucket_counts, strict=True):
                cumulative += count
                le = _labels({"le": _number(bound)})
                out.append(f"syncd_delivery_latency_seconds_bucket{le} {cumulative}")
            total = self._latency_count
            out.append(f'syncd_delivery_latency_seconds_bucket{{le="+Inf"}} {total}')
            out.append(f"syncd_delivery_latency_seconds_sum {_number(self._latency_sum)}")
            out.append(f"syncd_delivery_latency_seconds_count {total}")
        return "\n".join(out) + "\n"
