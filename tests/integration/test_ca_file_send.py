"""A CA file that stopped being a regular file after its set was applied: the
send fails at once, as a permanent failure, instead of a worker waiting for
ever on a FIFO that the TLS library opens blocking."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from syncd.hipchat.wire import DeliveryResult, Message, RoomTarget
from syncd.testing import HipChatServer
from tests.support.loopclient import KINDS, make_client

TOKEN = "ca-file-send-token-0001"


@pytest.mark.parametrize("kind", KINDS)
def test_a_fifo_in_place_of_the_ca_file_fails_the_send_at_once(tmp_path: Path, kind: str) -> None:
    os.mkfifo(tmp_path / "bundle.pem")
    results: list[DeliveryResult] = []
    with HipChatServer({"1": TOKEN}, limits=None) as server, make_client(kind) as client:
        url = server.url.replace("http://", "https://")
        target = RoomTarget(url, "1", TOKEN, str(tmp_path / "bundle.pem"))
        message = Message("hello", "text", "yellow", False)
        sender = threading.Thread(
            target=lambda: results.append(client.send(target, message)), daemon=True
        )
        sender.start()
        sender.join(timeout=20)
        assert not sender.is_alive(), "the send is stuck on the FIFO"
        assert server.attempts == []
    (result,) = results
    assert result.outcome == "permanent"
    assert result.reason == f"CA file {tmp_path}/bundle.pem is no longer a regular file"
