"""Action regexes, compiled by RE2: matching time grows linearly with the input.

A backtracking engine (Python's ``re``) can take time exponential in the
length of an attribute for patterns such as ``^(a+)+$``; one event would stall
every integration. RE2, which Alertmanager and Grafana use through Go's
regexp, has no backtracking and refuses the two features that need it,
backreferences and lookaround; :func:`compile_pattern` says what to write
instead. RE2's own error log is switched off: the diagnostic is ours.
"""

from __future__ import annotations

from functools import lru_cache

import re2

_HINTS = (
    (
        "invalid escape sequence: \\",
        "backreferences (\\1) need backtracking, which RE2 does not do; "
        "match the repeated text explicitly",
    ),
    (
        "invalid named capture group",
        "a named group is written (?P<name>...)",
    ),
    (
        "invalid perl operator: (?<",
        "lookbehind needs backtracking, which RE2 does not do; "
        "match the text before as part of the pattern, or use a second action",
    ),
    (
        "invalid perl operator: (?=",
        "lookahead needs backtracking, which RE2 does not do; "
        "match the text after as part of the pattern, or use a second action",
    ),
    (
        "invalid perl operator: (?!",
        "negative lookahead needs backtracking, which RE2 does not do; "
        "add a filter action for what must not match instead",
    ),
)


class PatternError(ValueError):
    """A regex RE2 cannot compile; the message says why and, where it can, what to write."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


_OPTIONS = _options()


def explain(reason: str) -> str:
    """RE2's error text, with a hint for the syntax it leaves out on purpose."""
    for start, hint in _HINTS:
        if reason.startswith(start):
            return f"{reason} ({hint})"
    return reason


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re2._Regexp[str]:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else exc
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise PatternError(explain(reason)) from None
