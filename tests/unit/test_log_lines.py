"""One record is one log line, whatever its message, arguments or traceback hold."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from syncd.service.logs import MAX_LINE_BYTES, JournalFormatter, JsonFormatter, TextFormatter

# Every kind of character that moves a cursor, starts an escape sequence or ends a line.
HOSTILE = "".join(
    (
        "a\n2030-01-01T00:00:00.000+00:00 info syncd.reconcile: applied forged",
        "\r\x1b[2J\x1b]0;title\x07\x00\t\x0b\x0c\x7f",
        "\x85\x9b31m\u2028\u2029\udcff.yaml",
    )
)
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
FORMATTERS = {"text": TextFormatter(), "journal": JournalFormatter(), "json": JsonFormatter()}


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("syncd.test", logging.ERROR, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
@pytest.mark.parametrize("exc", [False, True])
def test_control_characters_in_a_record_are_escaped(fmt: str, exc: bool) -> None:
    line = FORMATTERS[fmt].format(record(f"file {HOSTILE} in %s: %r", HOSTILE, HOSTILE, exc=exc))
    assert RAW.search(line) is None, line
    assert line.encode("utf-8")  # a file name that is not UTF-8 cannot stop the line
    if fmt == "json":
        message = json.loads(line)["message"]
        assert message.startswith(f"file {HOSTILE} in {HOSTILE}: ")  # JSON keeps the value
    else:
        assert "\\x1b[2J" in line and "\\n2030-01-01" in line and "\\u2028" in line
        assert line.startswith("<3>syncd.test: file a\\n" if fmt == "journal" else "20")


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
@pytest.mark.parametrize("filler", ["x", "\x1b", "\u00e9", "\U0001f600", "\u2028"])
def test_a_line_never_outgrows_what_journald_reads_as_one(fmt: str, filler: str) -> None:
    line = FORMATTERS[fmt].format(record("%s", filler * 100_000))
    assert len(line.encode("utf-8")) <= MAX_LINE_BYTES
    assert re.search(r" \[\d+ (bytes|characters) cut\]", line)
    if fmt == "json":
        assert json.loads(line)["message"].startswith(filler * 100)


def test_a_short_line_is_left_whole() -> None:
    line = TextFormatter().format(record("room %s: %s", "ops-é", "HTTP 401 Unauthorized"))
    assert line.endswith(" error syncd.test: room ops-é: HTTP 401 Unauthorized")
