"""Endpoints on link-local and cloud metadata addresses, where a cloud host's own
requests get its credentials: refused as written by ``syncd validate``, and by
the daemon at send time when a name resolves there.

The send-time test runs in a network and mount namespace of its own: the
address 169.254.169.254 on its loopback interface, a HipChat test server on it,
and an ``/etc/hosts`` that names it ``hipchat.test``. Without the namespace
tool (or the rights it needs), that test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncd.testing.hipchat_server import HipChatServer
from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.paths import ROOT

TOKEN = "metadata-test-token-0001"
METADATA = "169.254.169.254"


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254",
        "http://169.254.169.254/latest",
        "https://[fe80::1]:8443",
        "https://[::ffff:169.254.169.254]",
        "https://2852039166",
        "https://0xa9.0xfe.0xa9.0xfe",
        "http://metadata.google.internal",
        "https://[fd00:ec2::254]",
    ],
)
def test_validate_refuses_a_link_local_or_metadata_endpoint_unless_allowed(
    tmp_path: Path, endpoint: str
) -> None:
    text = minimal("a").replace("https://hipchat.example.com", endpoint)
    write_files(tmp_path / "config", ("a.yaml", text))
    flags = ("--allow-http-endpoint",)
    refused = run_cli("validate", "config", *flags, cwd=tmp_path)
    assert refused.returncode == 1
    (line,) = refused.stdout.splitlines()
    assert line.startswith("config/a.yaml:7:17: error: $.integrations[0].hipchat.endpoint: ")
    assert line.endswith("; refused unless the daemon runs with --allow-link-local-endpoint")
    allowed = run_cli("validate", "config", *flags, "--allow-link-local-endpoint", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stdout


def _namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        [unshare, "--net", "--mount", "ip", "addr", "add", f"{METADATA}/32", "dev", "lo"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces_work(), reason="unshare --net --mount is not available here")
def test_a_name_that_resolves_to_a_metadata_address_gets_no_token(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    inside = subprocess.run(
        ["unshare", "--net", "--mount", sys.executable, __file__, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == 0, inside.stdout + inside.stderr
    refused, allowed = (json.loads(line) for line in inside.stdout.splitlines()[-2:])
    assert refused["attempts"] == 0
    (reason,) = refused["dead"]
    assert reason == (
        f"refused: hipchat.test resolves to {METADATA}, a link-local address, where cloud "
        "metadata services answer; nothing was sent (the daemon's "
        "--allow-link-local-endpoint allows it)"
    )
    assert TOKEN not in refused["log"]
    assert allowed == {"attempts": 1, "dead": [], "delivered": 1, "log": allowed["log"]}


def _in_the_namespace(tmp: Path) -> None:
    """Run inside ``unshare --net --mount``: the same daemon twice against a HipChat
    server on the metadata address, without and with the operator's consent; one
    line of JSON each."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"], check=True)
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{METADATA} hipchat.test\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    with HipChatServer({"1234567": TOKEN}, limits=None, host=METADATA) as server:
        endpoint = "http://hipchat.test:" + server.url.rsplit(":", 1)[1]
        text = minimal("a").replace("https://hipchat.example.com", endpoint)
        config = write_files(tmp / "config", ("a.yaml", text))
        policy = ("--allow-endpoint", endpoint, "--allow-http-endpoint")
        for extra in ((), ("--allow-link-local-endpoint",)):
            server.reset_records()
            state = tmp / f"state-{len(extra)}"
            print(json.dumps(_one_event(server, config, state, (*policy, *extra))))


def _one_event(
    server: HipChatServer, config: Path, state: Path, flags: tuple[str, ...]
) -> dict[str, Any]:
    """A daemon with ``flags`` takes one event; what became of it."""
    import requests

    from tests.support.processes import start, terminate
    from tests.support.waiting import wait_for

    proc = start(config, state, env={"HIPCHAT_TOKEN": TOKEN}, policy=flags)
    dead: list[str] = []

    def settled() -> bool:
        answer = requests.get(proc.url + "/v1/outbox?state=dead", timeout=10).json()
        dead[:] = [item["reason"] for item in answer["items"]]
        return bool(dead or server.messages)

    event = {"project": "checkout", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    try:
        assert proc.post_events([event]).status_code == 202
        wait_for(settled, timeout=30, what="a dead letter or a delivery")
    finally:
        terminate(proc)
    return {
        "attempts": len(server.attempts),
        "dead": dead,
        "delivered": len(server.messages),
        "log": proc.log,
    }


if __name__ == "__main__":
    _in_the_namespace(Path(sys.argv[1]))
