"""The alert and recording rules of contrib/prometheus, judged by promtool.

``promtool check rules`` and ``promtool test rules`` must report nothing but
success; every alert has a unit test that shows it quiet and firing; each
carries what an operator reads first (summary, description, runbook); and the
thresholds live in one place. The checks are shown catching a planted fault,
so a promtool that says nothing useful cannot pass them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.hipchat.wire import DeliveryResult
from syncd.service.metrics import FAILURE_REASONS, ClusterGauges, ConfigGauges, Metrics
from tests.support.paths import ROOT
from tests.support.prometheus import RULE_TESTS, RULES, promtool

THRESHOLD = re.compile(r"^syncd:threshold:[a-z0-9_]+$")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def check_rules(path: Path) -> str:
    """What ``promtool check rules`` says beyond its success line; "" when nothing."""
    result = promtool("check", "rules", str(path))
    found = len(rules_in(path))  # only a file that parses has a success line to match
    expected = f"Checking {path}\n  SUCCESS: {found} rules found\n\n"
    if result.returncode == 0 and result.stdout == expected and not result.stderr:
        return ""
    return f"exit {result.returncode}:\n{result.stdout}{result.stderr}"


def rules_in(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def run_rule_tests(path: Path) -> str:
    """What ``promtool test rules`` says beyond its success; "" when nothing."""
    result = promtool("test", "rules", str(path))
    expected = f"Unit Testing:  {path}\n  SUCCESS\n\n"
    if result.returncode == 0 and result.stdout == expected and not result.stderr:
        return ""
    return f"exit {result.returncode}:\n{result.stdout}{result.stderr}"


def lint(exposition: str) -> str:
    """What ``promtool check metrics`` says of an exposition; "" when nothing."""
    result = promtool("check", "metrics", stdin=exposition)
    said = result.stdout + result.stderr
    return "" if result.returncode == 0 and not said else f"exit {result.returncode}:\n{said}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, spaces to hyphens,
    punctuation other than hyphens and underscores dropped."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {github_anchor(heading) for heading in HEADING.findall(markdown)}


def runbook_anchor(alert: dict[str, Any]) -> str:
    url = alert["annotations"]["runbook_url"]
    assert url.startswith("README.md#"), url
    return str(url.removeprefix("README.md#"))


def test_promtool_check_rules_reports_nothing() -> None:
    assert check_rules(RULES) == ""


def test_promtool_test_rules_passes() -> None:
    assert run_rule_tests(RULE_TESTS) == ""


@pytest.mark.parametrize(
    ("plant", "by"),
    [
        ("expr: syncd_outbox_lost_at_start == 1", "expr: syncd_outbox_lost_at_start =="),
        ("for: 10m", "for: ten minutes"),
        (
            'summary: "syncd on {{ $labels.instance }} rejects',
            'summary: "syncd on {{ $labels.instance rejects',
        ),
    ],
)
def test_check_rules_catches_a_broken_rule(tmp_path: Path, plant: str, by: str) -> None:
    text = RULES.read_text()
    assert plant in text
    broken = tmp_path / "syncd.rules.yml"
    broken.write_text(text.replace(plant, by, 1))
    assert check_rules(broken) != ""


@pytest.mark.parametrize(
    ("plant", "by"),
    [
        ("expr: vector(30)", "expr: vector(60)"),  # the latency threshold
        ("for: 2m", "for: 3m"),  # SyncdDown's
        ("min_over_time(syncd_outbox_dead_letters[10m])", "syncd_outbox_dead_letters offset 1m"),
        ('runbook_url: "README.md#syncdroomdegraded"', 'runbook_url: "README.md#rooms"'),
    ],
)
def test_rule_tests_catch_a_changed_rule(tmp_path: Path, plant: str, by: str) -> None:
    text = RULES.read_text()
    assert plant in text
    for name in (RULE_TESTS.name, RULES.name):
        shutil.copy(RULES.parent / name, tmp_path / name)
    (tmp_path / RULES.name).write_text(text.replace(plant, by, 1))
    said = run_rule_tests(tmp_path / RULE_TESTS.name)
    assert "FAILED" in said, said


def test_every_alert_is_unit_tested_quiet_and_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    quiet: set[str] = set()
    firing: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert len(names) >= 10
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_says_what_it_means_and_where_its_runbook_is() -> None:
    seen: set[str] = set()
    for alert in alerts():
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert all(str(value).strip() for value in annotations.values()), alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert "for" in alert, alert["alert"]
        anchor = runbook_anchor(alert)
        assert anchor == github_anchor(alert["alert"]), alert["alert"]
        assert anchor not in seen
        seen.add(anchor)


def thresholds() -> list[dict[str, Any]]:
    return [rule for rule in rules() if THRESHOLD.match(rule.get("record", ""))]


def test_thresholds_are_constants_that_open_the_group() -> None:
    """One place to change a number: the ``syncd:threshold:*`` records that open
    the group, each a constant, as the file's header says."""
    found = thresholds()
    assert len(found) == 4
    assert rules()[: len(found)] == found, "thresholds must open the group"
    assert all(re.fullmatch(r"vector\(\d+(\.\d+)?\)", rule["expr"]) for rule in found), found
    header = RULES.read_text().split("groups:")[0]
    assert "syncd:threshold:*" in header and "for:" in header


def test_every_threshold_is_read_by_an_alert() -> None:
    exprs = " ".join(alert["expr"] for alert in alerts())
    unread = [rule["record"] for rule in thresholds() if rule["record"] not in exprs]
    assert unread == []


def test_runbook_anchors_are_headings_of_the_readme() -> None:
    headings = anchors((ROOT / "README.md").read_text())
    missing = sorted({runbook_anchor(alert) for alert in alerts()} - headings)
    assert missing == []


def test_github_anchors_are_computed_as_github_does() -> None:
    assert github_anchor("SyncdDown") == "syncddown"
    assert github_anchor("`syncd run`: the daemon") == "syncd-run-the-daemon"
    assert github_anchor("What a config may reach") == "what-a-config-may-reach"
    assert anchors("# a\ntext # not\n### Grafana: import\n") == {"a", "grafana-import"}


def _everything_fed() -> str:
    """Every family metrics.py can write, each with samples."""
    metrics = Metrics(git=True)
    metrics.retain({"shop", "quiet"})
    metrics.received(4)
    metrics.delivery("shop", DeliveryResult("delivered", 204, "sent"), 0.2)
    for status in (400, 401, 403, 404, 408, 413, 418, 429, 503, None):
        outcome = "retry" if status in (None, 429, 503) else "permanent"
        result = DeliveryResult(outcome, status, "failed", rate_limited=status == 429)
        metrics.delivery("shop", result, 0.2)
    metrics.unverified()
    config = ConfigGauges(True, 1_764_158_400.0, "abcdef0123456789", attempts=5, failures=2)
    return metrics.render(
        config, 7, {"shop": 3}, ClusterGauges(3, 2, 12.5), rooms_degraded={"shop": 1}
    )


def test_every_family_metrics_py_writes_passes_promtool_lint() -> None:
    exposition = _everything_fed()
    reasons = set(re.findall(r'reason="([a-z_0-9]+)"', exposition))
    assert reasons == set(FAILURE_REASONS)
    for family in ("build_info", "rooms_degraded", "cluster_members", "git_fetch_total"):
        assert f"\nsyncd_{family}" in exposition, family
    assert lint(exposition) == ""


@pytest.mark.parametrize(
    "exposition",
    [
        "# HELP a_count n\n# TYPE a_count counter\na_count 1\n",
        "# HELP a_milliseconds n\n# TYPE a_milliseconds gauge\na_milliseconds 1\n",
        "# TYPE a gauge\na 1\n",
    ],
)
def test_lint_catches_a_planted_problem(exposition: str) -> None:
    assert lint(exposition) != ""
