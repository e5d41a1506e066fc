"""YAML syntax errors in syncd's words, placed where a person should look first.

A YAML parser reports where it gave up, in its own terms ("while parsing a flow
mapping ... did not find expected ',' or '}'"), and that is often a line or
more after the mistake: an unclosed ``{`` is found broken at the next key, a
quote left open at the end of the file. So each kind of error a person makes
is recognised from the parser's context and problem (libyaml's words and the
pure-Python parser's both), and told as one diagnostic at the place to fix,
naming where the parser found the text broken. Nothing of the file's text is
repeated but a single structural character, so a token written in the wrong
place never reaches a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

Inside = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True)
class _Error:
    """A parser error with the text it was found in; marks are 0-based."""

    context: str
    problem: str
    context_mark: Any
    problem_mark: Any
    text: str
    loader: type[Any]
    inside: Inside

    def place(self, mark: Any) -> tuple[int, int]:
        return self.inside(mark.line + 1, mark.column + 1)

    def where(self, mark: Any) -> str:
        line, col = self.place(mark)
        return f"line {line}, col {col}"

    def char(self, mark: Any) -> str:
        lines = self.text.split("\n")
        return lines[mark.line][mark.column : mark.column + 1] if mark.line < len(lines) else ""

    def at_end(self, mark: Any) -> bool:
        lines = self.text.split("\n")
        offset = sum(len(line) + 1 for line in lines[: mark.line]) + mark.column
        return not self.text[offset:].strip()


Said = tuple[Any, str]  # the mark to point at, and the message


def _tab(e: _Error) -> Said:
    return e.problem_mark, "a tab; YAML indents with spaces only"


def _escape(e: _Error) -> Said:
    return e.problem_mark, (
        "inside double quotes a backslash starts an escape (\\n, \\t, ...) and this one is "
        "unknown; put the text in single quotes, where a backslash is itself ('^\\d+$'), "
        "or double the backslash"
    )


def _quote(e: _Error) -> Said:
    quote = e.char(e.context_mark) or '"'
    line, _ = e.place(e.problem_mark)
    return e.context_mark, (
        f"the text quoted with {quote} here is not closed: the file ends (line {line}) "
        f"inside it; add the closing {quote}"
    )


def _flow(e: _Error) -> Said | None:
    opener = _open_flow(e)
    if opener is None:
        return None
    start = "{" if isinstance(opener, yaml.FlowMappingStartToken) else "["
    end = "}" if start == "{" else "]"
    expected = "a value" if "node content" in e.problem else f"',' or '{end}'"
    eof = " (the end of the file)" if e.at_end(e.problem_mark) else ""
    return opener.start_mark, (
        f"'{start}' opened here is not closed: at {e.where(e.problem_mark)}{eof} YAML "
        f"expected {expected}; close it with '{end}'"
    )


def _open_flow(e: _Error) -> Any:
    """The innermost ``{`` or ``[`` still open where the parser gave up."""
    until = (e.problem_mark.line, e.problem_mark.column)
    opened: list[Any] = []
    scanner = e.loader(e.text)
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if (token.start_mark.line, token.start_mark.column) >= until:
                break
            if isinstance(token, yaml.FlowMappingStartToken | yaml.FlowSequenceStartToken):
                opened.append(token)
            elif isinstance(token, yaml.FlowMappingEndToken | yaml.FlowSequenceEndToken):
                opened = opened[:-1]
    except yaml.YAMLError:
        pass  # a later error: what was open before it is known
    finally:
        scanner.dispose()
    return opened[-1] if opened else None


def _stray_closer(e: _Error) -> Said:
    return e.problem_mark, (
        f"this '{e.char(e.problem_mark)}' closes nothing; remove it, or quote the value it "
        "is part of"
    )


def _missing_colon(e: _Error) -> Said:
    return e.context_mark, (
        f"a ':' is missing after the key here: YAML read on to {e.where(e.problem_mark)} "
        "without finding one; write it as 'key: value'"
    )


def _list_indent(e: _Error) -> Said:
    return e.problem_mark, (
        f"bad indentation: this line is neither an item ('- ') of the list at "
        f"{e.where(e.context_mark)} nor indented under one; line it up with what it belongs to"
    )


def _mapping_indent(e: _Error) -> Said:
    return e.problem_mark, (
        f"bad indentation: this line is not a key of the mapping at {e.where(e.context_mark)}; "
        "line it up with the keys it belongs with"
    )


def _key_in_value(e: _Error) -> Said:
    return e.problem_mark, (
        "YAML cannot start a key here: the line is indented deeper than the keys before it, "
        "or a value holds ': ' (then quote the value)"
    )


def _second_document(e: _Error) -> Said:
    return e.problem_mark, (
        "a second document starts here; a file holds one: move it to a file of its own"
    )


def _reserved(e: _Error) -> Said:
    return e.problem_mark, (
        f"an unquoted value cannot start with '{e.char(e.problem_mark)}'; quote the value"
    )


def _quoted(e: _Error) -> bool:
    return "quoted scalar" in e.context


# In order: the first that applies explains the error.
_KINDS: tuple[tuple[Callable[[_Error], bool], Callable[[_Error], Said | None]], ...] = (
    (lambda e: e.char(e.problem_mark) == "\t", _tab),
    (lambda e: _quoted(e) and "escape" in e.problem, _escape),
    (lambda e: _quoted(e) and "end of stream" in e.problem, _quote),
    (lambda e: "flow" in e.context and e.context_mark is not None, _flow),
    (lambda e: e.char(e.problem_mark) in ("}", "]"), _stray_closer),
    (lambda e: "simple key" in e.context and e.context_mark is not None, _missing_colon),
    (lambda e: "block collection" in e.context and e.context_mark is not None, _list_indent),
    (lambda e: "block mapping" in e.context and e.context_mark is not None, _mapping_indent),
    (lambda e: "mapping values are not allowed" in e.problem, _key_in_value),
    (lambda e: "single document" in e.context, _second_document),
    (lambda e: "cannot start any token" in e.problem, _reserved),
)


def explain(
    exc: yaml.MarkedYAMLError, text: str, loader: type[Any], inside: Inside
) -> tuple[int, int, str]:
    """Line, column and message for one syntax error."""
    error = _Error(
        exc.context or "",
        exc.problem or "",
        exc.context_mark,
        exc.problem_mark,
        text,
        loader,
        inside,
    )
    said = _said(error) if error.problem_mark is not None else None
    if said is not None:
        line, col = error.place(said[0])
        return line, col, f"YAML syntax: {said[1]}"
    return (*_raw_place(error), f"YAML syntax: {_raw_words(exc)}")


def _said(error: _Error) -> Said | None:
    for applies, explainer in _KINDS:
        if applies(error):
            said = explainer(error)
            if said is not None:
                return said
    return None


def _raw_place(error: _Error) -> tuple[int, int]:
    mark = error.problem_mark or error.context_mark
    return error.place(mark) if mark is not None else (1, 1)


def _raw_words(exc: yaml.MarkedYAMLError) -> str:
    """The parser's own words, for an error no rule above knows."""
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.context}, {exc.problem}"
    return " ".join(problem.split())
