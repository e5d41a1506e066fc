"""A config file name and room ids holding newlines, carriage returns and escape
sequences: the daemon's log keeps one record to a line in every format, and
neither the log nor ``syncd status`` nor ``syncd outbox list`` passes a control
character on to the terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from syncd.testing import HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config, write_files
from tests.support.events import event
from tests.support.processes import run_syncd, start, terminate
from tests.support.waiting import wait_for

FORGED = "2030-01-01T00:00:00.000+00:00 info syncd.reconcile.reconciler: applied forged"
FILE_NAME = f"shop\n{FORGED}\n\x1b[31mred\x1b[0m\r\x1b]0;title\x07.yaml"
# YAML's escapes: ESC, CR, and a C1 CSI.
ROOM_YAML = '"room\\e[2J\\rforged\\x9b31m"'
ROOM = "room\x1b[2J\rforged\x9b31m"
ROOM_SHOWN = "room\\x1b[2J\\rforged\\x9b31m"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
TOKENS = room_tokens("5501")
LINE_START = {
    "text": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (debug|info|warning|error) "),
    "journal": re.compile(r"<[2-7]>[a-z_.]+: "),
}


def config(tmp_path: Path, endpoint: str) -> Path:
    text = trace_config(endpoint, TOKENS).replace("{id: 5501,", f"{{id: {ROOM_YAML},")
    return write_files(tmp_path / "config", (FILE_NAME, text))


def assert_one_record_a_line(log: str, fmt: str) -> None:
    lines = log.splitlines()
    assert lines
    for line in lines:
        assert RAW.search(line) is None, repr(line)
        if fmt == "json":
            json.loads(line)
        else:
            assert LINE_START[fmt].match(line), repr(line)


@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
def test_names_and_ids_never_split_a_log_record_or_reach_a_terminal(
    tmp_path: Path, fmt: str
) -> None:
    with HipChatServer(TOKENS, limits=None) as hipchat:  # knows no such room: a 404
        proc = start(
            config(tmp_path, hipchat.url),
            tmp_path / "state",
            "--log-format",
            fmt,
            env=token_env(TOKENS),
        )
        try:
            assert proc.post_events([event("shop")]).status_code == 202
            wait_for(lambda: "dead-lettered" in proc.log, timeout=20, what="the dead letter")
            # A file the reload rejects: its name is in each of its diagnostics.
            (tmp_path / "config" / f"x{FILE_NAME}").write_text("version: 1\nintegrations: [1]\n")
            wait_for(lambda: "rejected" in proc.log, timeout=20, what="the rejected reload")
            status = run_syncd("status", "--url", proc.url, cwd=tmp_path)
            dead = run_syncd("outbox", "list", "--dead", "--url", proc.url, cwd=tmp_path)
        finally:
            assert terminate(proc) == 0, proc.log[-3000:]
    assert_one_record_a_line(proc.log, fmt)
    if fmt == "json":  # escaped as JSON escapes, so a reader gets the value back
        logged = "".join(json.loads(line)["message"] for line in proc.log.splitlines())
        assert "[31mred" in logged and ROOM in logged
    else:
        assert "\\x1b[31mred" in proc.log  # the file name, escaped, in the diagnostics
        assert ROOM_SHOWN in proc.log
    for shown in (status, dead):
        assert RAW.search(shown.stdout + shown.stderr) is None, shown.stdout + shown.stderr
        assert ROOM_SHOWN in shown.stdout
