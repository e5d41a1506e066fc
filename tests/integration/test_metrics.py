"""/metrics in Prometheus text format, read back with the reference parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import Fault, HipChatServer
from tests.support.daemons import TEST_REACH
from tests.support.metrics import FIXED_REASONS
from tests.support.waiting import wait_for

TOKEN = "metrics-room-token"
FAILED = "syncd_notifications_failed_total"
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, HipChatServer]]:
    monkeypatch.setenv("HIPCHAT_METRICS_TOKEN", TOKEN)
    with HipChatServer({"77": TOKEN}, limits=None) as server:
        config = tmp_path / "config"
        config.mkdir()
        (config / "a.yaml").write_text(
            "version: 1\nintegrations:\n  - uid: m\n    project: p\n    name: m\n"
            "    trigger: {event: trace}\n"
            f"    hipchat:\n      endpoint: {server.url}\n"
            "      rooms: [{id: 77, token: {env: HIPCHAT_METRICS_TOKEN}}]\n"
        )
        daemon = Daemon(
            DaemonConfig(
                config,
                state_dir=tmp_path / "state",
                port=0,
                retry_base=0.01,
                retry_cap=0.02,
                reach=TEST_REACH,
            )
        )
        daemon.start()
        yield daemon, server
        daemon.shutdown()


def scrape(daemon: Daemon) -> Scrape:
    response = requests.get(daemon.server.url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_after_deliveries_and_failures(rig: tuple[Daemon, HipChatServer]) -> None:
    daemon, server = rig
    server.inject(Fault.server_error(500), times=2)
    server.inject(Fault.rate_limited(retry_after="0"), times=1)
    event = {"project": "p", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    assert requests.post(daemon.server.url + "/v1/events", json=[event] * 3, timeout=5).ok
    server.wait_for_messages(3, timeout=20)
    wait_for(lambda: scrape(daemon)[("syncd_notifications_total", (("integration", "m"),))] == 3)
    m = scrape(daemon)
    assert m[("syncd_config_last_reload_successful", ())] == 1
    assert m[("syncd_config_last_reload_success_timestamp_seconds", ())] > 1.7e9
    assert m[("syncd_config_hash", ())] > 0
    assert m[("syncd_events_received_total", ())] == 3
    failed = "syncd_notifications_failed_total"
    assert m[(failed, (("integration", "m"), ("reason", "server_error")))] == 2
    assert m[(failed, (("integration", "m"), ("reason", "rate_limited")))] == 1
    assert m[("syncd_delivery_latency_seconds_count", ())] == 3
    assert m[("syncd_delivery_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    wait_for(lambda: scrape(daemon)[("syncd_outbox_depth", ())] == 0)


def test_failed_reload_shows_in_metrics(rig: tuple[Daemon, HipChatServer]) -> None:
    daemon, _ = rig
    before = scrape(daemon)[("syncd_config_hash", ())]
    (daemon.config.config_dir / "b.yaml").write_text("version: 1\nintegrations: [\n")
    assert daemon.reload() is not None
    m = scrape(daemon)
    assert m[("syncd_config_last_reload_successful", ())] == 0
    assert m[("syncd_config_hash", ())] == before


def failures(m: Scrape) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (name, labels), value in m.items() if name == FAILED}


def test_unlisted_statuses_do_not_grow_the_reason_label(
    rig: tuple[Daemon, HipChatServer],
) -> None:
    """A server answering odd statuses must not mint a time series per status."""
    daemon, server = rig
    for code in (418, 451, 499):
        server.inject(Fault.status(code), times=1)
    event = {"project": "p", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    assert requests.post(daemon.server.url + "/v1/events", json=[event] * 3, timeout=5).ok
    wait_for(lambda: sum(failures(scrape(daemon)).values()) == 3, timeout=20)
    wait_for(lambda: scrape(daemon)[("syncd_outbox_dead_letters", (("integration", "m"),))] == 3)
    m = scrape(daemon)
    reasons = {dict(labels)["reason"] for labels in failures(m)}
    assert reasons <= FIXED_REASONS
    assert failures(m) == {(("integration", "m"), ("reason", "http_other")): 3}
    assert not any(name.endswith("_created") for name, _ in m)


def test_a_removed_integrations_series_go_with_it(rig: tuple[Daemon, HipChatServer]) -> None:
    """Config churn must not grow the exposition with a series per uid ever seen."""
    daemon, server = rig
    server.inject(Fault.server_error(500), times=1)
    server.inject(Fault.status(404), times=1)
    event = {"project": "p", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    assert requests.post(daemon.server.url + "/v1/events", json=[event] * 3, timeout=5).ok
    wait_for(lambda: scrape(daemon).get(("syncd_notifications_total", (("integration", "m"),))))
    wait_for(lambda: scrape(daemon).get(("syncd_outbox_dead_letters", (("integration", "m"),))))
    config = daemon.config.config_dir / "a.yaml"
    config.write_text(config.read_text().replace("uid: m", "uid: renamed"))
    outcome = daemon.reload()
    assert outcome is not None and outcome.ok, outcome
    m = scrape(daemon)
    assert not [labels for _, labels in m if ("integration", "m") in labels]
    assert m[("syncd_outbox_writable", ())] == 1
