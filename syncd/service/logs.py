"""Log lines for people, for journald and for log shippers.

One line per record on stdout. Under systemd (``JOURNAL_STREAM`` set) each
line starts with its syslog priority, ``<3>`` for an error, which journald
turns into the entry's priority; timestamps are left to journald then.
``json`` writes one object per line. Every record passes the redaction
filter before any formatter sees it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from syncd.config.secrets import RedactingFilter

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


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n")


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = _full_text(self, record)
        return f"<{priority}>{record.name}: {_one_line(text)}"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        text = _full_text(self, record)
        return f"{when} {record.levelname.lower()} {record.name}: {_one_line(text)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _full_text(self, record),
        }
        return json.dumps(entry, ensure_ascii=False)


def resolve_format(fmt: LogFormat, environ: Mapping[str, str] | None = None) -> LogFormat:
    if fmt != "auto":
        return fmt
    env = os.environ if environ is None else environ
    return "journal" if env.get("JOURNAL_STREAM") else "text"


def setup(
    secrets: Callable[[], Iterable[str]], fmt: LogFormat = "auto", level: int = logging.INFO
) -> None:
    chosen = resolve_format(fmt)
    formatter: logging.Formatter = {
        "journal": JournalFormatter(),
        "json": JsonFormatter(),
    }.get(chosen, TextFormatter())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
