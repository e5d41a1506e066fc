"""``syncd hipchat-server --rate-limits``: the command enforces the limits it is given."""

from __future__ import annotations

import signal

import pytest
import requests

from tests.e2e.test_hipchat_server_command import TOKEN, Server


@pytest.mark.parametrize(
    ("flags", "refused"),
    [((), None), (("--rate-limits", "hipchat"), 429), (("--rate-limits", "server"), 403)],
)
def test_the_31st_message_in_a_minute_is_refused_only_when_asked(
    flags: tuple[str, ...], refused: int | None
) -> None:
    server = Server("--room", f"1={TOKEN}", *flags)
    try:
        with requests.Session() as session:
            url = f"{server.url}/v2/room/1/notification"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            codes = [
                session.post(url, json={"message": "hi"}, headers=auth, timeout=5).status_code
                for _ in range(31)
            ]
        assert codes[:30] == [204] * 30
        assert codes[30] == (refused or 204)
    finally:
        server.popen.send_signal(signal.SIGTERM)
        assert server.popen.wait(timeout=20) == 0
