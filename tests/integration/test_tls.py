"""A HipChat Server behind a private CA: hipchat.tls.ca_file, for that endpoint only."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from syncd.config.configset import load_config_set
from syncd.config.reach import Reach
from syncd.config.semantics import Options
from syncd.hipchat.wire import Message, RoomTarget
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing import HipChatServer
from tests.support.configs import minimal, write_files
from tests.support.loopclient import KINDS, make_client
from tests.support.waiting import wait_for

TOKEN = "tls-room-token-0123456789"


def https_server(ca: trustme.CA) -> HipChatServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return HipChatServer({"1234567": TOKEN}, limits=None, tls=context)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which client sends: the thread client, or the event-loop one behind it."""
    return str(request.param)


@pytest.fixture
def server(private_ca: tuple[trustme.CA, Path]) -> Iterator[HipChatServer]:
    with https_server(private_ca[0]) as running:
        yield running


MESSAGE = Message("hello over TLS", "text", "yellow", False)


def test_the_ca_file_is_trusted_for_its_endpoint_only(
    server: HipChatServer, private_ca: tuple[trustme.CA, Path], kind: str
) -> None:
    _, ca_file = private_ca
    with https_server(trustme.CA()) as stranger, make_client(kind) as client:
        trusted = client.send(RoomTarget(server.url, "1234567", TOKEN, str(ca_file)), MESSAGE)
        assert trusted.ok, trusted.reason
        # Another endpoint, signed by another CA, is not trusted through this CA file.
        other = client.send(RoomTarget(stranger.url, "1234567", TOKEN), MESSAGE)
        assert (other.outcome, other.status) == ("retry", None)
        assert "CERTIFICATE_VERIFY_FAILED" in other.reason
        # And the trusted endpoint without its CA file is not trusted either.
        plain = client.send(RoomTarget(server.url, "1234567", TOKEN), MESSAGE)
        assert "CERTIFICATE_VERIFY_FAILED" in plain.reason
        assert client.send(RoomTarget(server.url, "1234567", TOKEN, str(ca_file)), MESSAGE).ok
    assert len(server.messages) == 2


def config_with_ca(tmp_path: Path, endpoint: str, ca_file: str) -> Path:
    text = minimal("a").replace("https://hipchat.example.com", endpoint)
    text = text.replace("      rooms:", f"      tls: {{ca_file: {ca_file}}}\n      rooms:")
    return write_files(tmp_path / "config", ("a.yaml", text))


def test_the_daemon_delivers_through_a_private_ca(
    tmp_path: Path,
    server: HipChatServer,
    private_ca: tuple[trustme.CA, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", TOKEN)
    config = config_with_ca(tmp_path, server.url, str(private_ca[1]))
    reach = Reach(ca_dirs=(tmp_path,))
    daemon = Daemon(DaemonConfig(config, tmp_path / "state", port=0, reach=reach))
    assert daemon.start().ok
    try:
        event = {"project": "checkout", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
        assert daemon.ingest.submit([event]).notifications == 1
        wait_for(lambda: len(server.messages) == 1, timeout=20, what="the notification")
    finally:
        daemon.shutdown()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file: {path}"),
        ("not a certificate\n", "{path} holds no PEM certificates"),
    ],
)
def test_a_ca_file_that_is_missing_or_not_certificates_is_an_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    config = load_config_set(
        [config_with_ca(tmp_path, "https://hipchat.example.com", str(path))],
        Options(reach=Reach(ca_dirs=(tmp_path,))),
    )
    assert [d.message for d in config.diagnostics] == [message.format(path=path)]
