"""Several ``syncd run --store`` daemons see each other: members, their revisions,
and a rollout where they disagree. Real daemons, a real PostgreSQL and the
HipChat test server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.testing.hipchat_server import HipChatServer
from tests.support import postgres
from tests.support.configs import trace_config
from tests.support.delivery import numbers
from tests.support.events import numbered_events
from tests.support.metrics import scraped
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.processes import Proc, start, terminate
from tests.support.waiting import wait_for

TOKENS = {"3001": "cluster-token-3001", "3002": "cluster-token-3002"}
ENV = {f"HIPCHAT_TOKEN_{room}": token for room, token in TOKENS.items()}


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


def _config(root: Path, text: str) -> Path:
    root.mkdir()
    (root / "set.yaml").write_text(text)
    return root


def _members(proc: Proc) -> list[dict[str, object]]:
    cluster = proc.status().get("cluster") or {}
    members: list[dict[str, object]] = cluster.get("members", [])
    return members


def _metric(proc: Proc, name: str) -> float | None:
    return scraped(proc.url).get(name)


@pytest.mark.slow
def test_a_rollout_leaves_an_integration_to_the_daemon_that_knows_it(
    tmp_path: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    """Daemon A runs a revision with the ``shop-trace`` integration, daemon B one
    without it (it has not fetched it yet). B neither cancels shop-trace's queued
    items at its start nor claims them: A delivers every one. B shows the
    cluster, its two revisions, and how long they have disagreed."""
    new = _config(tmp_path / "new", trace_config(hipchat.url, ["3001"]))
    old = _config(tmp_path / "old", trace_config(hipchat.url, ["3002"], uid="other-trace"))
    store = ("--store", postgres_url)
    hipchat.misbehave(latency=0.2)
    procs: list[Proc] = []
    try:
        first = start(new, tmp_path / "state-a", *store, env=ENV)
        procs.append(first)
        wait_for(lambda: len(_members(first)) == 1, timeout=20, what="A in the cluster")
        assert first.post_events(numbered_events(0, 30)).status_code == 202
        second = start(old, tmp_path / "state-b", *store, "--skew-warning", "2", env=ENV)
        procs.append(second)
        wait_for(lambda: len(_members(second)) == 2, timeout=20, what="B sees both")
        hipchat.wait_for_messages(30, room="3001", timeout=60)
        assert Counter(numbers(hipchat, "3001")) == Counter(range(30))
        cancelled = postgres.execute(
            postgres_url, "SELECT count(*) FROM outbox WHERE state = 'cancelled'"
        )
        assert cancelled[0][0] == 0
        wait_for(
            lambda: second.status()["cluster"]["skew_seconds"] > 0,
            timeout=20,
            what="the skew measured",
        )
        wait_for(
            lambda: second.status()["cluster"]["skew_warning"] is not None,
            timeout=20,
            what="the warning once the revisions disagreed past --skew-warning 2",
        )
        assert first.status()["cluster"]["skew_warning"] is None  # A keeps the default 300 s
        cluster = second.status()["cluster"]
        assert len(cluster["revisions"]) == 2, cluster
        assert {m["revision"] for m in cluster["members"]} == set(cluster["revisions"])
        assert sum(1 for m in cluster["members"] if m["self"]) == 1
        assert _metric(second, "syncd_cluster_members") == 2
        assert _metric(second, "syncd_cluster_revisions") == 2
        assert (_metric(second, "syncd_cluster_revision_skew_seconds") or 0) > 0
    finally:
        for proc in procs:
            terminate(proc)
    for proc in procs:
        assert "Traceback" not in proc.log, proc.log
        assert "cancelled" not in proc.log, proc.log


@pytest.mark.slow
def test_members_on_one_revision_show_no_skew_and_a_stopped_one_leaves(
    tmp_path: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    config = _config(tmp_path / "config", trace_config(hipchat.url, ["3001"]))
    store = ("--store", postgres_url)
    procs: list[Proc] = []
    try:
        procs = [start(config, tmp_path / f"state-{n}", *store, env=ENV) for n in range(2)]
        first, second = procs
        wait_for(lambda: len(_members(first)) == 2, timeout=20, what="both members")
        cluster = first.status()["cluster"]
        assert len(cluster["revisions"]) == 1
        assert cluster["skew_warning"] is None
        assert _metric(first, "syncd_cluster_revision_skew_seconds") == 0
        hosts = {m["host"] for m in cluster["members"]}
        assert len(hosts) == 1 and all(m["version"] for m in cluster["members"])
        terminate(second)
        wait_for(lambda: len(_members(first)) == 1, timeout=20, what="B gone")
    finally:
        for proc in procs:
            terminate(proc)
