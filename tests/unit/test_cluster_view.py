"""What /status, ``syncd status`` and /metrics say of the daemons sharing a store."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.commands.remote import render_status
from syncd.service.api import cluster_to_data
from syncd.service.metrics import ClusterGauges, ConfigGauges, Metrics

postgresql = pytest.importorskip("syncd.store.postgresql")
Cluster, Member = postgresql.Cluster, postgresql.Member


def _member(name: str, revision: str) -> object:
    return Member(f"{name}:1:ab", name, "0.2.0", revision, frozenset({"x"}), 0.0, 0.5)


def _cluster(*revisions: str, since: float | None = None) -> object:
    members = tuple(_member(f"host-{n}", r) for n, r in enumerate(revisions))
    return Cluster("host-0:1:ab", members, since)


def test_members_that_agree_show_no_skew_and_no_warning() -> None:
    data = cluster_to_data(_cluster("git:aaa", "git:aaa"), now=1000.0, skew_warning=0.0)
    assert data["revisions"] == {"git:aaa": 2}
    assert data["skew_seconds"] == 0
    assert data["skew_warning"] is None
    members = data["members"]
    assert isinstance(members, list)
    assert [m["self"] for m in members] == [True, False]


def test_a_skew_warns_only_once_it_lasted_past_the_limit() -> None:
    skewed = _cluster("git:aaa", "git:bbb", since=1000.0)
    early = cluster_to_data(skewed, now=1299.0, skew_warning=300.0)
    assert early["skew_seconds"] == 299.0
    assert early["skew_warning"] is None
    late = cluster_to_data(skewed, now=1300.0, skew_warning=300.0)
    assert "2 different revisions for 300 s" in str(late["skew_warning"])


def test_syncd_status_shows_the_members_and_the_warning() -> None:
    data = cluster_to_data(_cluster("git:aaa", "git:bbb", since=0.0), now=400.0, skew_warning=300)
    text = render_status({"cluster": data})
    assert "cluster:            2 live, 2 revision(s)" in text
    assert "git:bbb" in text
    assert "(this daemon)" in text
    assert "WARNING: the live daemons have applied 2 different revisions" in text
    assert "cluster:" not in render_status({"applied_revision": "x"})


def test_cluster_gauges_only_with_a_shared_store() -> None:
    config = ConfigGauges(True, 1.0, "ab" * 32)
    alone = Metrics().render(config, 0, {})
    assert "syncd_cluster" not in alone
    shared = Metrics().render(config, 0, {}, ClusterGauges(3, 2, 12.5))
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(shared)
        for sample in family.samples
    }
    assert values["syncd_cluster_members"] == 3
    assert values["syncd_cluster_revisions"] == 2
    assert values["syncd_cluster_revision_skew_seconds"] == 12.5
