"""Log lines for people, for journald and for log shippers.

One line per record on stdout. Under systemd (``JOURNAL_STREAM`` set) each
line starts with its syslog priority, ``<3>`` for an error, which journald
turns into the entry's priority; timestamps are left to journald then.
``json`` writes one object per line. Every record passes the redaction
filter before any formatter sees it.

One record is one line whatever it holds: a file name, a room id or a
server's reason may come from anyone, and a newline in it would forge a
record, an escape sequence rewrite the operator's terminal. So the
formatters, not the call sites, escape control characters (C0, DEL, C1,
U+2028 and U+2029) in the whole line, message, arguments and traceback
alike: the text and journal formats as ``\\x1b``, JSON as ``\\u001b``.
journald also ends an entry at a NUL byte and splits a line longer than its
``LineMax`` (48 KiB) into entries of their own, each read for a ``<N>``
priority: a line is cut at ``MAX_LINE_BYTES``, so no part of a record
starts a line of its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from syncd.config.diagnostics import printable
from syncd.config.secrets import RedactingFilter, Redactor

LogFormat = Literal["auto", "text", "journal", "json"]

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _full_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        text += "\n" + record.exc_text
    return text


# Well below journald's default LineMax (48 KiB): a longer line would go on as
# an entry of its own.
MAX_LINE_BYTES = 32 * 1024
_CUT_NOTE = 40  # room for " [123456789 bytes cut]"


def _one_line(text: str) -> str:
    """A whole line for the text and journal formats: control characters escaped,
    a lone surrogate (a file name that is not UTF-8) as ``\\udcff``, cut to size."""
    data = printable(text).encode("utf-8", "backslashreplace")
    if len(data) <= MAX_LINE_BYTES:
        return data.decode("utf-8")
    kept = data[: MAX_LINE_BYTES - _CUT_NOTE].decode("utf-8", "ignore")
    return f"{kept} [{len(data) - len(kept.encode('utf-8'))} bytes cut]"


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = _full_text(self, record)
        return f"<{priority}>" + _one_line(f"{record.name}: {text}")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        text = _full_text(self, record)
        return _one_line(f"{when} {record.levelname.lower()} {record.name}: {text}")


# What JSON may hold raw in a string but a terminal or a JavaScript reader would
# act on, and lone surrogates, which cannot be written as UTF-8; json.dumps
# escapes C0 itself.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# No character takes more than this in the JSON line (``\\u001b``).
_JSON_CHAR_BYTES = 6


def _json_line(entry: dict[str, str]) -> str:
    line = json.dumps(entry, ensure_ascii=False)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = _full_text(self, record)
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        line = _json_line(entry)
        if len(line) * 4 > MAX_LINE_BYTES and len(line.encode("utf-8")) > MAX_LINE_BYTES:
            keep = (MAX_LINE_BYTES - 1024) // _JSON_CHAR_BYTES
            entry["message"] = f"{message[:keep]} [{len(message) - keep} characters cut]"
            line = _json_line(entry)
        return line


def resolve_format(fmt: LogFormat, environ: Mapping[str, str] | None = None) -> LogFormat:
    if fmt != "auto":
        return fmt
    env = os.environ if environ is None else environ
    return "journal" if env.get("JOURNAL_STREAM") else "text"


def setup(
    redactors: Callable[[], Iterable[Redactor]],
    fmt: LogFormat = "auto",
    level: int = logging.INFO,
) -> None:
    chosen = resolve_format(fmt)
    formatter: logging.Formatter = {
        "journal": JournalFormatter(),
        "json": JsonFormatter(),
    }.get(chosen, TextFormatter())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(redactors))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
