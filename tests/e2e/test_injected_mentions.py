"""An event whose every field says ``@all @here @name``, through a real daemon to
the bundled HipChat server: the message and the card that arrive mention
only the integration's own targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.testing import HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config, write_files
from tests.support.events import event
from tests.support.processes import start, terminate

TOKENS = room_tokens("6601")
SAYS = "@all @here @name"
MENTION_PAYMENTS = """\
    actions:
      - {action: mention, attribute: "*", regex: ".", target: "@payments"}
"""


def hostile_event() -> dict[str, object]:
    return event(
        "shop",
        fingerprint=SAYS,
        classifiers=[SAYS, "@here"],
        callstack=[SAYS, "@all"],
        attributes={SAYS: SAYS, "@all": "@here", "hostname": "@name"},
        hostname=SAYS,
        href=f"https://errors.example.com/ {SAYS} production is down, log in at "
        "https://evil.example",
    )


@pytest.mark.parametrize(
    ("fmt", "targets", "expected"),
    [
        ("text", "", ()),
        ("html", "", ()),
        ("text", MENTION_PAYMENTS, ("payments",)),
    ],
)
def test_only_the_integrations_own_targets_mention_anyone(
    tmp_path: Path, fmt: str, targets: str, expected: tuple[str, ...]
) -> None:
    with HipChatServer(TOKENS, limits=None) as hipchat:
        text = trace_config(hipchat.url, TOKENS).replace(
            "message_format: text", "message_format: " + fmt
        )
        text = text.replace("display: {callstack: false, include_hostname: false}", "")
        text = text.replace("      rooms:", "      card: true\n      rooms:")
        text = text.replace("    hipchat:", f"{targets}    hipchat:")
        config = write_files(tmp_path / "config", ("shop.yaml", text))
        proc = start(config, tmp_path / "state", env=token_env(TOKENS))
        try:
            assert proc.post_events([hostile_event()]).status_code == 202
            (received,) = hipchat.wait_for_messages(1, timeout=20)
        finally:
            assert terminate(proc) == 0, proc.log[-3000:]
    assert received.mentions == expected, received.body
    message = str(received.body["message"])
    assert "https://errors.example.com/%20%40all%20%40here%20%40name%20production" in message
    assert received.body["card"]["url"].startswith("https://errors.example.com/%20%40all")
