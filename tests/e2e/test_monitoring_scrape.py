"""The monitoring kit against real processes: ``syncd run`` on the example config,
scraped by Debian's Prometheus with the ingest token from a credentials file,
the rules of contrib/prometheus loaded and the dashboard of contrib/grafana
queried.

A room of the example answers 401, so dead letters appear and the dead-letter
alert must fire through Prometheus itself; no other alert may. The rules
Prometheus loads are the shipped file with every ``for:`` cut to seconds,
rewritten from it rather than copied by hand. Every panel query must run and
show data, and name only series syncd writes (or that the rules record).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from syncd.service.metrics import ConfigGauges, Metrics
from syncd.testing.hipchat_server import Fault, HipChatServer
from tests.support.example import Example, example
from tests.support.gitrepo import make_repo
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture, asked for by name)
from tests.support.processes import (
    FAST_RETRY,
    TEST_POLICY,
    Proc,
    collect,
    start,
    terminate,
    wait_listening,
)
from tests.support.prometheus import (
    DASHBOARD,
    RULES,
    Prometheus,
    promtool,
    require,
    running,
    scrape_config,
)
from tests.support.waiting import wait_for

TOKEN = "scrape-token-5f1c9e"
SEARCH = ("search-digest", "7654321")  # the example's integration and room for project search
DEAD_LETTER_ALERT = "SyncdDeadLettersIncreasing"
# Families metrics.py writes only when the daemon feeds them: none now.
AWAITING_FEED: frozenset[str] = frozenset()
# What the dashboard must show: config state and revision, events in, sent and
# failed per integration, queue depth, dead letters, latency, degraded rooms.
COVERED = frozenset(
    {
        "syncd_config_last_reload_successful",
        "syncd_config_hash",
        "syncd_events_received_total",
        "syncd_notifications_total",
        "syncd_notifications_failed_total",
        "syncd_outbox_depth",
        "syncd_outbox_dead_letters",
        "syncd_delivery_latency_seconds_bucket",
        "syncd_rooms_degraded",
    }
)
# What a dashboard query must not leave as a Grafana variable.
GRAFANA_VARIABLES = {"$job": "syncd", "$instance": ".*", "$__rate_interval": "1m"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


@dataclass(frozen=True)
class Syncd:
    proc: Proc
    token_file: Path

    @property
    def target(self) -> str:
        return self.proc.url.removeprefix("http://")

    def get(self, path: str, *, token: str | None = TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.proc.url + path, headers=headers, timeout=10)

    def metrics(self) -> str:
        answer = self.get("/metrics")
        assert answer.status_code == 200, answer.text
        return answer.text

    def dead_letters(self) -> int:
        status = self.get("/status").json()
        return int(status["integrations"][SEARCH[0]]["dead_letters"])

    def post_search_events(self, count: int) -> None:
        events = [
            {
                "project": "search",
                "fingerprint": f"scrape-{n}",
                "timestamp": "2026-11-26T12:00:00Z",
                "attributes": {"datacenter": "nyc"},
            }
            for n in range(count)
        ]
        answer = requests.post(
            self.proc.url + "/v1/events",
            json=events,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text


def sample_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: what is left once strings,
    label matchers, ranges, grouping clauses, function calls and keywords are."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def test_the_dashboard_takes_its_datasource_as_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (datasource,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    uids = {
        (panel["title"], target["datasource"]["uid"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert {uid for _, uid in uids} == {"${datasource}"}, uids
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, query) for every target, Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (panel["title"], expr)
            queries.append((panel["title"], expr))
    return queries


def unknown_names(named: set[str], exported: set[str]) -> set[str]:
    """Of ``named``, what neither ``exported`` nor the rules' records hold, nor a
    family metrics.py writes once fed (which must not be in ``exported`` yet)."""
    assert exported & AWAITING_FEED == set(), "fed now: take it out of AWAITING_FEED"
    fed = Metrics().render(ConfigGauges(True, 1.0, "ab"), 0, {}, None, {"a": 1})
    assert sample_names(fed) >= AWAITING_FEED
    return named - exported - recorded_names() - AWAITING_FEED


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def quick_rules(directory: Path, duration: str = "2s") -> Path:
    """The shipped rules with every ``for:`` cut to ``duration``, nothing else changed."""
    text = RULES.read_text()
    quick, count = re.subn(r"(?m)^(\s+for:[ \t]*)\S+[ \t]*$", rf"\g<1>{duration}", text)
    before = yaml.safe_load(text)["groups"]
    after = yaml.safe_load(quick)["groups"]
    alerts = [rule for group in before for rule in group["rules"] if "alert" in rule]
    assert count == len(alerts) >= 10
    for old_group, new_group in zip(before, after, strict=True):
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            assert new == ({**old, "for": duration} if "alert" in old else old)
    path = directory / "syncd.rules.yml"
    path.write_text(quick)
    return path


def write_token(tmp_path: Path) -> Path:
    path = tmp_path / "metrics-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def example_rooms(tmp_path: Path) -> dict[str, str]:
    return example(tmp_path / "probe").rooms


def syncd_on_directory(tmp_path: Path, ex: Example) -> Syncd:
    token = write_token(tmp_path)
    proc = start(
        ex.config_dir, tmp_path / "state", *ex.flags, "--ingest-token-file", str(token), env=ex.env
    )
    return Syncd(proc, token)


def syncd_on_git_and_store(tmp_path: Path, ex: Example, store: str) -> Syncd:
    """``syncd run --git`` on a repository holding the example, its queue in a
    shared PostgreSQL store: every family syncd can write, git and cluster too."""
    work = make_repo(tmp_path / "work")
    (work.path / "integrations.yaml").write_text((ex.config_dir / "integrations.yaml").read_text())
    work.commit_all("the example")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    token = write_token(tmp_path)
    command = [sys.executable, "-m", "syncd", "run", "--git", bare.as_uri(), "--store", store]
    command += ["--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0"]
    command += [*TEST_POLICY, *FAST_RETRY, *ex.flags, "--ingest-token-file", str(token)]
    popen = subprocess.Popen(
        command,
        env={**os.environ, **ex.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Syncd(wait_listening(collect(popen)), token)


def stop(syncd: Syncd) -> None:
    assert terminate(syncd.proc) == 0, syncd.proc.log[-3000:]
    assert TOKEN not in syncd.proc.log


@pytest.fixture
def hipchat(tmp_path: Path) -> Iterator[HipChatServer]:
    with HipChatServer(example_rooms(tmp_path), limits=None) as server:
        yield server


def _syncd_names_in(prometheus: Prometheus) -> set[str]:
    names = prometheus.api("label/__name__/values", **{"match[]": '{job="syncd"}'})
    return {name for name in names if name.startswith("syncd_")}


@pytest.mark.slow
def test_prometheus_scrapes_syncd_and_the_dead_letter_alert_fires(
    tmp_path: Path, hipchat: HipChatServer
) -> None:
    require("prometheus")
    ex = example(tmp_path, hipchat.url)
    syncd = syncd_on_directory(tmp_path, ex)
    try:
        assert syncd.get("/metrics", token=None).status_code == 401
        config = scrape_config([syncd.target], syncd.token_file, [quick_rules(tmp_path)])
        with running(tmp_path / "prometheus", config) as prometheus:
            series = f'syncd_outbox_dead_letters{{job="syncd", integration="{SEARCH[0]}"}}'
            wait_for(
                lambda: prometheus.value('up{job="syncd"}') == 1,
                timeout=30,
                what="a successful scrape, token and all",
            )
            wait_for(
                lambda: prometheus.value(series) == 0,
                timeout=30,
                what="the dead letters scraped at 0 before any",
            )
            assert prometheus.value("syncd:threshold:delivery_latency_p99_seconds") == 30

            hipchat.inject(Fault.status(401, "Invalid OAuth session"), times=3, room=SEARCH[1])
            syncd.post_search_events(4)
            wait_for(lambda: syncd.dead_letters() == 3, timeout=30, what="3 dead letters")
            wait_for(lambda: len(hipchat.messages_for(SEARCH[1])) == 1, timeout=30)
            wait_for(lambda: prometheus.value(series) == 3, timeout=30, what="3 scraped")

            wait_for(
                lambda: prometheus.firing(DEAD_LETTER_ALERT),
                timeout=60,
                what=f"{DEAD_LETTER_ALERT} firing",
            )
            (alert,) = prometheus.firing(DEAD_LETTER_ALERT)
            assert alert["labels"]["integration"] == SEARCH[0]
            assert alert["labels"]["severity"] == "warning"
            assert alert["annotations"]["runbook_url"] == "README.md#syncddeadlettersincreasing"
            assert "3 dead letters" in alert["annotations"]["description"]
            active = {a["labels"]["alertname"] for a in prometheus.alerts()}
            assert active == {DEAD_LETTER_ALERT}, prometheus.alerts()

            wait_for(
                lambda: _syncd_names_in(prometheus) == sample_names(syncd.metrics()),
                timeout=30,
                what="every series of /metrics in Prometheus",
            )
            assert {"syncd_build_info", "syncd_notifications_failed_total"} <= _syncd_names_in(
                prometheus
            )
    finally:
        stop(syncd)


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'sum by (integration, reason) (rate(syncd_a_total{job="x", le="0.5"}[5m] offset 1m))'
        " / on(instance) group_left() max without (le) (b:rule:p99 > bool 0.99)"
        ' or vector(1) unless count(count_values("hash", syncd_c)) and 1e3 * inf'
    )
    assert metric_names(expr) == {"syncd_a_total", "b:rule:p99", "syncd_c"}


@pytest.mark.slow
def test_every_dashboard_query_runs_shows_data_and_names_syncds_series(
    tmp_path: Path, hipchat: HipChatServer, request: pytest.FixtureRequest
) -> None:
    queries = panel_queries()
    named = set().union(*(metric_names(expr) for _, expr in queries))
    assert named >= COVERED, "a topic the dashboard must show is missing"
    require("prometheus")
    store = request.getfixturevalue("postgres_url")
    ex = example(tmp_path, hipchat.url)
    syncd = syncd_on_git_and_store(tmp_path, ex, store)
    try:
        hipchat.inject(Fault.status(401, "Invalid OAuth session"), times=1, room=SEARCH[1])
        hipchat.inject(Fault.server_error(500), times=1, room=SEARCH[1])
        syncd.post_search_events(4)
        wait_for(lambda: len(hipchat.messages_for(SEARCH[1])) == 3, timeout=30)
        assert unknown_names(named, sample_names(syncd.metrics())) == set()

        config = scrape_config([syncd.target], syncd.token_file, [RULES])
        with running(tmp_path / "prometheus", config) as prometheus:
            wait_for(lambda: prometheus.value('up{job="syncd"}') == 1, timeout=30)

            def empty() -> list[str]:
                return [
                    f"{title}: {expr}"
                    for title, expr in queries
                    if not prometheus.query(expr) and not metric_names(expr) & AWAITING_FEED
                ]

            try:
                wait_for(lambda: not empty(), timeout=60, what="data in every panel")
            except pytest.fail.Exception:
                pytest.fail(f"panels without data after 60 s: {empty()}")
            for _, expr in queries:
                prometheus.query(expr)  # every query answers "success", data or not
    finally:
        stop(syncd)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["directory", "git and shared store"])
def test_promtool_finds_nothing_to_say_of_a_running_daemons_metrics(
    tmp_path: Path, hipchat: HipChatServer, request: pytest.FixtureRequest, source: str
) -> None:
    require("promtool")
    ex = example(tmp_path, hipchat.url)
    if source == "directory":
        syncd = syncd_on_directory(tmp_path, ex)
    else:
        syncd = syncd_on_git_and_store(tmp_path, ex, request.getfixturevalue("postgres_url"))
    try:
        hipchat.inject(Fault.status(401, "Invalid OAuth session"), times=1, room=SEARCH[1])
        hipchat.inject(Fault.rate_limited(retry_after="0"), times=1, room=SEARCH[1])
        syncd.post_search_events(3)
        wait_for(lambda: len(hipchat.messages_for(SEARCH[1])) == 2, timeout=30)
        exposition = syncd.metrics()
        names = sample_names(exposition)
        assert {"syncd_build_info", "syncd_notifications_failed_total"} <= names
        if source != "directory":
            assert {"syncd_cluster_members", "syncd_git_fetch_total"} <= names
        result = promtool("check", "metrics", stdin=exposition)
        assert (result.returncode, result.stdout + result.stderr) == (0, "")
    finally:
        stop(syncd)
