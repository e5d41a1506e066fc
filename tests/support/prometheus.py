"""Prometheus and promtool as the machine has them, for the tests of the
monitoring kit (contrib/prometheus, contrib/grafana).

Debian's ``prometheus`` package installs both. Without them the tests skip,
saying why; under CI (``CI=true``) they fail instead, so a run that should have
checked the rules and the scrape cannot pass without them.

A Prometheus server is a subprocess on a free loopback port with its own
storage directory, killed when the test ends; what it says goes to a file
the test's failure message quotes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.paths import ROOT
from tests.support.waiting import wait_for

RULES = ROOT / "contrib" / "prometheus" / "syncd.rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "syncd.rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "syncd.json"
INSTALL_HINT = "Debian: apt-get install prometheus"
# Tries at a free port: another process may take the one picked before
# Prometheus binds it.
PORT_TRIES = 5


def require(binary: str) -> str:
    """The path of ``binary``; the test skips when there is none (fails under CI)."""
    path = shutil.which(binary)
    if path is None:
        reason = f"no {binary} on PATH ({INSTALL_HINT})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS``, its output captured."""
    return subprocess.run(
        [require("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape_config(
    targets: list[str], credentials_file: Path, rule_files: list[Path], interval: str = "1s"
) -> str:
    """A Prometheus config scraping syncd as the README shows, at ``interval``."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "syncd",
                "authorization": {"credentials_file": str(credentials_file)},
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful answer from the HTTP API."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (``[]`` when it selects nothing)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def value(self, expr: str) -> float | None:
        """The single sample ``expr`` selects, or None when it selects none."""
        samples = self.query(expr)
        assert len(samples) <= 1, samples
        return float(samples[0]["value"][1]) if samples else None

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts, pending and firing."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [
            alert
            for alert in self.alerts()
            if alert["state"] == "firing" and alert["labels"]["alertname"] == name
        ]


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _start(binary: str, config: Path, data: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    """A Prometheus that answers ``/-/ready``, on the first free port that works."""
    for _ in range(PORT_TRIES):
        url = f"http://127.0.0.1:{free_port()}"
        with log.open("w") as out:
            popen = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address={url.removeprefix('http://')}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        wait_for(
            lambda: popen.poll() is not None or _ready(url),  # noqa: B023  (called at once)
            timeout=60,
            what="Prometheus to be ready",
        )
        if popen.poll() is None:
            return popen, url
        if "address already in use" not in log.read_text(errors="replace"):
            pytest.fail(f"Prometheus exited {popen.returncode}: {log.read_text()[-4000:]}")
    pytest.fail(f"Prometheus found no free port in {PORT_TRIES} tries")


@contextmanager
def running(directory: Path, config_text: str) -> Iterator[Prometheus]:
    """Prometheus on ``config_text`` with its storage in ``directory``; killed after."""
    binary = require("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config, log = directory / "prometheus.yml", directory / "prometheus.log"
    config.write_text(config_text)
    check = promtool("check", "config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    popen, url = _start(binary, config, directory / "data", log)
    try:
        yield Prometheus(url, log)
    except BaseException:
        print(f"Prometheus said:\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        popen.kill()
        popen.wait(timeout=10)
