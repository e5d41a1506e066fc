"""``syncd demo``: the whole path in one command, nothing else needed.

The shipped example is copied with its endpoints pointed at a local
HipChat-compatible server and its tokens replaced by throwaway ones; the
daemon runs on it in this process, a few sample events go in through its
HTTP API, and the messages the server received are printed. It states its
endpoint policy as an operator would: tokens go to that server only, over
plain http since it is on loopback.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import requests
import yaml

from syncd.config.reach import Reach
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing.hipchat_server import HipChatServer

Out = Callable[[str], None]

SAMPLE_EVENTS: list[dict[str, Any]] = [
    {
        "project": "checkout",
        "fingerprint": "9f2c1e",
        "timestamp": "2026-11-26T09:14:03Z",
        "classifiers": ["PaymentDeclinedError"],
        "callstack": ["charge_card (payments/gateway.py:88)", "checkout (checkout/views.py:41)"],
        "attributes": {"team": "payments", "version": "4.2.1", "datacenter": "nyc"},
        "hostname": "web-7",
        "href": "https://errors.example.com/checkout/9f2c1e",
    },
    {
        "project": "checkout",
        "fingerprint": "77ab03",
        "timestamp": "2026-11-26T09:15:40Z",
        "classifiers": ["TimeoutError"],
        "callstack": ["fetch_cart (cart/store.py:12)"],
        "attributes": {"environment": "staging", "version": "4.2.1"},
        "hostname": "web-staging-1",
    },
    {
        "project": "search",
        "fingerprint": "c0ffee",
        "timestamp": "2026-11-26T09:16:02Z",
        "classifiers": ["IndexError"],
        "callstack": ["rank (search/rank.py:230)"],
        "attributes": {"datacenter": "nyc", "shard": "12"},
        "hostname": "search-3",
    },
    {
        "project": "search",
        "fingerprint": "badc0de",
        "timestamp": "2026-11-26T09:16:30Z",
        "classifiers": ["KeyError"],
        "attributes": {"datacenter": "sfo"},
    },
]


def example_text() -> str:
    return resources.files("syncd").joinpath("examples", "integrations.yaml").read_text()


def write_tour(directory: Path, out: Out = print) -> int:
    """The by-hand tour's config, shipped in the package so the tour needs no checkout."""
    shipped = resources.files("syncd").joinpath("examples", "tour", "tour.yaml")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "tour.yaml"
    target.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    out(f"wrote {target}")
    return 0


def localize(text: str, endpoint: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The example pointed at ``endpoint``: its YAML, the env to set, room id -> token."""
    data = yaml.safe_load(text)
    env: dict[str, str] = {}
    rooms: dict[str, str] = {}
    for integration in data["integrations"]:
        integration["hipchat"]["endpoint"] = endpoint
        for room in integration["hipchat"]["rooms"]:
            token = rooms.setdefault(str(room["id"]), f"demo-token-{len(rooms) + 1:02d}")
            name = f"HIPCHAT_DEMO_TOKEN_{len(env) + 1}"
            env[name] = token
            room["token"] = {"env": name}
    return yaml.safe_dump(data, sort_keys=False), env, rooms


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _deliver(daemon: Daemon, server: HipChatServer, out: Out, timeout: float) -> int:
    names = ", ".join(daemon.registry.snapshot.notifiers)
    out(f"HipChat-compatible server: {server.url}")
    out(f"syncd daemon:              {daemon.server.url}")
    out(f"integrations applied:      {names}")
    url = daemon.server.url + "/v1/events"
    answer = requests.post(url, json=SAMPLE_EVENTS, timeout=10).json()
    expected = answer["notifications"]
    out(f"sent {len(SAMPLE_EVENTS)} sample events; {expected} notifications queued:")
    # Why each event did or did not notify: the rules at work, not a fault.
    for sent, result in zip(SAMPLE_EVENTS, answer["events"], strict=True):
        out(f"  {sent['project']} {sent['classifiers'][0]} {sent['attributes']}:")
        out("".join(f"    {why}\n" for why in result["why"]).rstrip("\n"))
    out("")
    deadline = time.monotonic() + timeout
    while len(server.messages) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    for message in server.messages:
        body = message.body
        notify = ", notify" if body.get("notify") else ""
        out(f"--- room {message.room} ({body['color']}, {body['message_format']}{notify})")
        out(f"{body['message']}\n")
    delivered = len(server.messages)
    out(f"{delivered} of {expected} notifications delivered.")
    return 0 if delivered == expected else 1


def run(out: Out = print, timeout: float = 30.0) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _, _, rooms = localize(example_text(), "http://127.0.0.1")
    with (
        tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp,
        HipChatServer(rooms, limits=None) as server,
    ):
        text, env, _ = localize(example_text(), server.url)
        config_dir = Path(tmp) / "integrations"
        config_dir.mkdir()
        (config_dir / "integrations.yaml").write_text(text)
        with _environ(env):
            reach = Reach(allowed_endpoints=(server.url,), allow_http=True)
            state_dir = Path(tmp) / "state"
            daemon = Daemon(DaemonConfig(config_dir, state_dir=state_dir, port=0, reach=reach))
            try:
                outcome = daemon.start()
                if not outcome.ok:
                    for diagnostic in outcome.diagnostics:
                        out(str(diagnostic))
                    return 1
                return _deliver(daemon, server, out, timeout)
            finally:
                daemon.shutdown()
