"""10,000 random mutations of examples/integrations.yaml through ``syncd validate``, in-process.

Four kinds of damage, 2,500 examples each (derandomized, so every run checks the
same inputs): raw byte edits, line edits, token edits, and whole-file changes
(line endings, encodings, byte-order marks, documents and directives, splices).
Whatever the bytes, validation must end in diagnostics, never an exception, and
each diagnostic must point inside the file: line >= 1 and col >= 1, the line one
of the file's lines (as YAML counts line breaks), the column at most one past
that line's end.

The regression test at the end pins a bug these found: a problem at the end of a
file without a final line break (a YAML syntax error, an empty document after
``---``) was placed at column 1 of the line after the last one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config.configset import ConfigSet, assemble, check_file
from syncd.config.loader import load_bytes
from syncd.config.semantics import DEFAULT_OPTIONS

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "integrations.yaml").read_bytes()
NAME = "mutated.yaml"
PER_KIND = 2_500
SETTINGS = settings(
    max_examples=PER_KIND,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
Op = tuple[Any, ...]
_BREAKS = re.compile("\r\n|[\r\n\u0085\u2028\u2029]")


def validate(raw: bytes) -> ConfigSet:
    """What ``syncd validate`` does with one file, and checks of its diagnostics."""
    loaded = load_bytes(raw, NAME)
    config = assemble([check_file(loaded, DEFAULT_OPTIONS)])
    lines = _BREAKS.split(raw.decode("utf-8", errors="replace"))
    for d in config.diagnostics:
        where = f"{d} (the file has {len(lines)} lines)"
        assert d.file == NAME, where
        assert d.line >= 1 and d.col >= 1, where
        assert d.line <= len(lines), where
        assert d.col <= len(lines[d.line - 1]) + 1, f"{where}; line: {lines[d.line - 1]!r}"
        assert d.message.strip(), where
    if not config.valid:
        assert any(d.severity == "error" for d in config.diagnostics)
    return config


def test_the_example_is_valid() -> None:
    assert validate(EXAMPLE).valid


# --- 1. bytes ----------------------------------------------------------------

STRAY = [
    b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x7f", b"\x80", b"\xc0\xaf",
    b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xef\xbf\xbe", b"\xf0\x9f\x98", b"\xff\xfe",
    b"\t", b"\r", b"\n", b"\r\n", b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9",
    b"\xc2\xa0", b"\xe3\x80\x80", b"'", b'"', b"\\", b"#", b"&", b"*", b"!", b"%", b"@",
    b"`", b"|", b">", b"?", b":", b"-", b",", b"[", b"]", b"{", b"}", b"<<", b"~",
]  # fmt: skip
_offset = st.integers(min_value=0, max_value=len(EXAMPLE))
_inserted = st.one_of(st.sampled_from(STRAY), st.binary(min_size=1, max_size=8))
_byte_op = st.one_of(
    st.tuples(st.just("insert"), _offset, _inserted),
    st.tuples(st.just("delete"), _offset, st.integers(1, 40)),
    st.tuples(st.just("overwrite"), _offset, st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("truncate"), _offset),
    st.tuples(st.just("flip"), _offset, st.integers(0, 7)),
)


def byte_edit(raw: bytes, ops: list[Op]) -> bytes:
    data = bytearray(raw)
    for op, at, *args in ops:
        at = min(at, len(data))
        if op == "insert":
            data[at:at] = args[0]
        elif op == "delete":
            del data[at : at + args[0]]
        elif op == "overwrite":
            data[at : at + len(args[0])] = args[0]
        elif op == "truncate":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] ^= 1 << args[0]
    return bytes(data)


@SETTINGS
@given(st.lists(_byte_op, min_size=1, max_size=4))
def test_byte_edits(ops: list[Op]) -> None:
    validate(byte_edit(EXAMPLE, ops))


# --- 2. lines ----------------------------------------------------------------

_line = st.integers(min_value=0, max_value=200)
_line_op = st.one_of(
    st.tuples(st.just("delete"), _line),
    st.tuples(st.just("duplicate"), _line),
    st.tuples(st.just("move"), _line, _line, st.integers(1, 8)),
    st.tuples(st.just("indent"), _line, st.integers(-8, 8)),
    st.tuples(st.just("indent-block"), _line, st.integers(2, 10), st.integers(-4, 4)),
    st.tuples(st.just("join"), _line),
    st.tuples(st.just("split"), _line, st.integers(0, 60)),
    st.tuples(st.just("comment"), _line),
    st.tuples(st.just("uncomment"), _line),
    st.tuples(st.just("tabs"), _line),
    st.tuples(st.just("trailing"), _line, st.sampled_from([b" ", b"\t", b" #", b" \\", b":"])),
)


def line_edit(raw: bytes, ops: list[Op]) -> bytes:
    lines = raw.split(b"\n")
    for op, i, *args in ops:
        if not lines:
            lines = [b""]
        i %= len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "move":
            block = lines[i : i + args[1]]
            del lines[i : i + args[1]]
            j = args[0] % (len(lines) + 1)
            lines[j:j] = block
        elif op == "indent":
            lines[i] = _reindent(lines[i], args[0])
        elif op == "indent-block":
            for k in range(i, min(len(lines), i + args[0])):
                lines[k] = _reindent(lines[k], args[1])
        elif op == "join" and i + 1 < len(lines):
            lines[i : i + 2] = [lines[i] + b" " + lines[i + 1].lstrip()]
        elif op == "split":
            col = args[0] % (len(lines[i]) + 1)
            lines[i : i + 1] = [lines[i][:col], lines[i][col:]]
        elif op == "comment":
            lines[i] = b"# " + lines[i]
        elif op == "uncomment":
            lines[i] = re.sub(rb"^(\s*)#\s?", rb"\1", lines[i])
        elif op == "tabs":
            lines[i] = re.sub(rb"^( {2})+", lambda m: b"\t" * (len(m.group()) // 2), lines[i])
        elif op == "trailing":
            lines[i] += args[0]
    return b"\n".join(lines)


def _reindent(line: bytes, delta: int) -> bytes:
    stripped = line.lstrip(b" ")
    return b" " * max(0, len(line) - len(stripped) + delta) + stripped


@SETTINGS
@given(st.lists(_line_op, min_size=1, max_size=6))
def test_line_edits(ops: list[Op]) -> None:
    validate(line_edit(EXAMPLE, ops))


# --- 3. tokens -----------------------------------------------------------------

_TOKEN = re.compile(rb"[A-Za-z0-9_.@^$*/:-]+|\"[^\"\n]*\"|[^\sA-Za-z0-9]")
TOKENS = [m.group() for m in _TOKEN.finditer(EXAMPLE)]
REPLACEMENTS = [
    *sorted(set(TOKENS)),
    b"no", b"yes", b"on", b"off", b"~", b"null", b"0755", b"0x1F", b"1:30", b"2024-01-01",
    b".inf", b".nan", b"1e3", b"-0", b"99999999999999999999", b"!!str", b"!!binary",
    b"!!python/object", b"&anchor", b"*anchor", b"<<", b"? ", b"- ", b"|", b">-", b"'",
    b'"', b"''", b'""', b"[", b"]", b"{", b"}", b"{}", b"[]", b": ", b",", b"#", b"%YAML",
    b"---", b"...", b"\\", b"\\u0000", b'"\\x00"', b'"\\ud800"', b"\xe2\x80\x8b", b"",
    b"x" * 300, b"(", b"[a-", b"(?P<", b"*+", b"@", b"@@", b"{env: }", b"{file: rel}",
    b"{credential: ../x}", b"http://user:pw@h", b"ftp://h", b"https://", b"uid", b"project",
]  # fmt: skip
_token_op = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.sampled_from(REPLACEMENTS)),
    st.tuples(st.just("swap"), st.integers(0, 10_000), st.integers(0, 10_000)),
    st.tuples(st.just("remove"), st.integers(0, 10_000)),
    st.tuples(st.just("repeat"), st.integers(0, 10_000), st.integers(2, 5)),
)


def token_edit(raw: bytes, ops: list[Op]) -> bytes:
    for op, k, *args in ops:
        spans = [m.span() for m in _TOKEN.finditer(raw)]
        if not spans:
            break
        start, end = spans[k % len(spans)]
        if op == "replace":
            raw = raw[:start] + args[0] + raw[end:]
        elif op == "swap":
            s2, e2 = spans[args[0] % len(spans)]
            (s1, e1), (s2, e2) = sorted([(start, end), (s2, e2)])
            if e1 <= s2:
                raw = raw[:s1] + raw[s2:e2] + raw[e1:s2] + raw[s1:e1] + raw[e2:]
        elif op == "remove":
            raw = raw[:start] + raw[end:]
        elif op == "repeat":
            raw = raw[:start] + raw[start:end] * args[0] + raw[end:]
    return raw


@SETTINGS
@given(st.lists(_token_op, min_size=1, max_size=4))
def test_token_edits(ops: list[Op]) -> None:
    validate(token_edit(EXAMPLE, ops))


# --- 4. whole-file changes and splices -------------------------------------------

_whole = st.sampled_from(
    [
        "none", "crlf", "cr", "nel", "ls", "bom", "utf16", "utf16le", "utf32", "latin1",
        "documents", "directive", "end-marker", "tabs", "no-final-newline", "double",
        "flow", "nul-terminated", "blank", "only-comments",
    ]
)  # fmt: skip


def whole_edit(raw: bytes, kind: str) -> bytes:
    if kind == "crlf":
        return raw.replace(b"\n", b"\r\n")
    if kind == "cr":
        return raw.replace(b"\n", b"\r")
    if kind == "nel":
        return raw.replace(b"\n", "\u0085".encode())
    if kind == "ls":
        return raw.replace(b"\n", "\u2028".encode())
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    if kind == "utf16":
        return raw.decode("utf-8", "replace").encode("utf-16")
    if kind == "utf16le":
        return raw.decode("utf-8", "replace").encode("utf-16-le")
    if kind == "utf32":
        return raw.decode("utf-8", "replace").encode("utf-32")
    if kind == "latin1":
        return raw.replace(b"ops", "\u00e9qu\u00efpe".encode("latin-1"))
    if kind == "documents":
        middle = raw.find(b"\n  - uid: search")
        return raw[:middle] + b"\n---\n" + raw[middle:] if middle > 0 else raw + b"---\n"
    if kind == "directive":
        return b"%YAML 1.1\n%TAG ! tag:example.com,2000:\n---\n" + raw
    if kind == "end-marker":
        return raw + b"...\n" + raw
    if kind == "tabs":
        return raw.replace(b"  ", b"\t")
    if kind == "no-final-newline":
        return raw.rstrip(b"\n")
    if kind == "double":
        return raw + raw
    if kind == "flow":
        return b"{" + raw.replace(b"\n", b", ") + b"}"
    if kind == "nul-terminated":
        return raw + b"\0"
    if kind == "blank":
        return b"\n" * 5 + raw + b"\n \n\t\n"
    if kind == "only-comments":
        return b"\n".join(b"# " + line for line in raw.split(b"\n"))
    return raw


_splice = st.tuples(st.integers(0, len(EXAMPLE)), st.integers(0, 400), st.integers(0, len(EXAMPLE)))


def splice(raw: bytes, where: tuple[int, int, int]) -> bytes:
    start, length, at = where
    chunk = EXAMPLE[start : start + length]
    at = min(at, len(raw))
    return raw[:at] + chunk + raw[at:]


@SETTINGS
@given(
    _whole,
    st.lists(_splice, max_size=2),
    st.lists(_byte_op, max_size=2),
    st.booleans(),
)
def test_whole_file_changes_and_splices(
    kind: str, splices: list[tuple[int, int, int]], ops: list[Op], whole_first: bool
) -> None:
    raw = EXAMPLE
    if whole_first:
        raw = whole_edit(raw, kind)
    for where in splices:
        raw = splice(raw, where)
    raw = byte_edit(raw, ops)
    if not whole_first:
        raw = whole_edit(raw, kind)
    validate(raw)


# --- regressions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"version: 1\ni",
        b"[",
        b"version: 1\nintegrations: [",
        b"version: 1\nintegrations:\n  - {",
        b"---",
        b"%YAML 1.1\n---\n# nothing",
    ],
)
def test_syntax_error_at_the_end_of_a_file_without_final_newline_is_inside(raw: bytes) -> None:
    validate(raw)
