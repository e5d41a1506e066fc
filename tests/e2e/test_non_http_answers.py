"""An endpoint that answers with something other than HTTP (a mail server's
banner, binary, a bare body): the daemon says which kind of failure it was,
and none of the peer's bytes reach /status, /metrics or the log."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from syncd.testing import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config, write_files
from tests.support.events import event
from tests.support.processes import start, terminate
from tests.support.waiting import wait_for

TOKENS = room_tokens("4401")
ANSWERS = (
    b"220 mail.example.com ESMTP peer-secret-SMTP-banner ready\r\n",
    bytes(range(256)) * 4 + b"peer-secret-BLOB",
    b"peer-secret-H09 <html>a page without a status line</html>\n",
    b"HTTP/1.1 2x0 peer-secret-STATUS\r\n\r\n",
    # A 200 with a line that is no header: delivered, with a warning.
    b"HTTP/1.1 200 OK\r\n peer-secret-HEADER \x1b[2J\r\nContent-Length: 0\r\n\r\n",
)


def assert_no_peer_bytes(text: str) -> None:
    assert "peer-secret" not in text and "ESMTP" not in text
    assert "\\x00\\x01" not in text and "\x1b" not in text and "\x00" not in text


def test_no_byte_of_a_non_http_answer_reaches_status_metrics_or_the_log(tmp_path: Path) -> None:
    with HipChatServer(TOKENS, limits=None) as peer:
        for answer in ANSWERS:
            peer.inject(Fault.answer_bytes(answer))
        config = write_files(tmp_path / "config", ("shop.yaml", trace_config(peer.url, TOKENS)))
        proc = start(config, tmp_path / "state", env=token_env(TOKENS))
        try:
            seen: list[str] = []

            def delivered() -> bool:
                seen.append(json.dumps(proc.status(), ensure_ascii=False))
                return len(peer.attempts) == len(ANSWERS)

            assert proc.post_events([event("shop")]).status_code == 202
            wait_for(delivered, timeout=30, what="every answer to be tried")
            wait_for(lambda: proc.status()["outbox_depth"] == 0, what="the item to settle")
            seen.append(json.dumps(proc.status(), ensure_ascii=False))
            metrics = requests.get(proc.url + "/metrics", timeout=10).text
        finally:
            assert terminate(proc) == 0, proc.log[-3000:]
    for text in (*seen, metrics, proc.log):
        assert_no_peer_bytes(text)
    errors = "".join(seen)
    assert "ConnectionError: ProtocolError (BadStatusLine)" in errors, errors[-2000:]
    assert "line(s) that are not headers; skipped" in proc.log  # without the line
