"""``syncd rules test --suite``: cases of timed events against a config, each
passed or failed with what differed, for a pre-commit hook and CI.

Beyond one event from a fresh state (``--event``): a case says what each
integration it names does over time (sends, filters, throttles, digests at the
second a window ends), and runs through the daemon's own ingest on a virtual
clock (``syncd.events.timeline``), so a changed frequency or action fails it.
Nothing is sent and no token is read. Exit 0 when every case passes, 1 when
one fails, 2 when the suite is broken (its problems at ``file:line:col``, as
``syncd validate`` prints them) or the config is invalid.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from syncd.commands.configdir import load_valid
from syncd.commands.validate import default_format
from syncd.config import semantics
from syncd.config.diagnostics import Diagnostic, printable, report
from syncd.config.loader import LoadedFile, NotARegularFile, load_bytes, read_regular
from syncd.config.model import Integration
from syncd.config.reach import Reach
from syncd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from syncd.events.suite import Case, differences, read_suite
from syncd.events.timeline import Timeline
from syncd.hipchat.render import render_message

SuiteFormat = Literal["text", "github"]
# Larger than a config file's cap: a thousand cases of ten events is some 2 MiB.
MAX_SUITE_BYTES = 16 << 20
LEGEND = "(- expected, + happened)"
# Large enough that nothing is cut: the title and the count line never are,
# and with nothing else cut either, the count line is the one a count adds.
_WHOLE = 1 << 30


def run_suite(
    config_dir: Path,
    suite_file: Path,
    *,
    fmt: SuiteFormat | None = None,
    exclude: tuple[str, ...] = (),
) -> int:
    """Each case's verdict on stdout, the count on stderr; the exit code."""
    # A suite's data and timelines hold no reference cycles: the cyclic collector
    # only costs time here (a third of it on 1,000 cases), as in validate.
    gc.disable()
    try:
        return _run(config_dir, suite_file, fmt, exclude)
    finally:
        gc.enable()


def _run(
    config_dir: Path, suite_file: Path, fmt: SuiteFormat | None, exclude: tuple[str, ...]
) -> int:
    shown: SuiteFormat = fmt or ("github" if default_format() == "github" else "text")
    # Nothing is sent: where the config's tokens could go is the daemon's question.
    reach = Reach(allow_http=True, allow_link_local=True, expired_mutes="warning")
    options = semantics.Options(allow_plaintext_tokens=True, reach=reach, exclude=exclude)
    config = load_valid(config_dir, options)
    suite, problems = read_suite(load_suite(suite_file), {i.uid for i in config.integrations})
    if suite is None:
        sys.stdout.write(report(problems, shown, 1))
        print(f"syncd: the suite is broken: {_count(len(problems), 'problem')}", file=sys.stderr)
        return EXIT_USAGE
    timeline = Timeline(config, message_text)
    failed = 0
    for case in suite.cases:
        lines = differences(case, timeline.run(case.events, suite.start))
        failed += bool(lines)
        sys.stdout.write(verdict(case, lines, shown))
    total = len(suite.cases)
    said = f"{failed} of {_count(total, 'case')} failed" if failed else _passed(total)
    print(f"syncd: {said}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def message_text(
    event: Mapping[str, Any], integration: Integration, count: int, since: float | None
) -> str:
    """The text HipChat would receive, rendered as delivery renders it, uncut."""
    return render_message(event, integration, count=count, since=since, limit=_WHOLE).text


def load_suite(path: Path) -> LoadedFile:
    """The file's data with its positions; a file that cannot be read is one problem."""
    name = str(path)
    try:
        raw = read_regular(path, MAX_SUITE_BYTES + 1)
    except NotARegularFile as exc:
        return _unread(name, f"{exc}; only regular files are read")
    except OSError as exc:
        return _unread(name, f"cannot read file: {exc.strerror or exc}")
    if len(raw) > MAX_SUITE_BYTES:
        return _unread(name, f"file is larger than {MAX_SUITE_BYTES >> 20} MiB; split it")
    return load_bytes(raw, name)


def _unread(name: str, message: str) -> LoadedFile:
    loaded = LoadedFile(name)
    loaded.problems.add(Diagnostic(name, 1, 1, "", message))
    return loaded


def verdict(case: Case, lines: Sequence[str], fmt: SuiteFormat) -> str:
    """``PASS name``; a failure with where the case is and what differed: as text,
    or as a GitHub annotation at the case's line."""
    name = printable(case.name)
    if not lines:
        return f"PASS {name}\n"
    if fmt == "github":
        where = f"file={_property(case.file)},line={case.line},col={case.col}"
        text = [f'case "{name}" failed {LEGEND}', *(f"  {line}" for line in lines)]
        return f"::error {where},title={_property('rule suite')}::{_data(text)}\n"
    place = printable(f"{case.file}:{case.line}:{case.col}")
    return "".join(
        [f"FAIL {name} ({place})\n", f"  {LEGEND}\n", *(f"  {line}\n" for line in lines)]
    )


def _data(lines: Sequence[str]) -> str:
    """A workflow command's message: each line escaped, the breaks written as %0A."""
    return "%0A".join(printable(line).replace("%", "%25") for line in lines)


def _property(text: str) -> str:
    return _data([text]).replace(":", "%3A").replace(",", "%2C")


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _passed(total: int) -> str:
    return "the case passed" if total == 1 else f"all {_count(total, 'case')} passed"
