"""Property tests: ``syncd validate`` never crashes and always points somewhere real.

Whatever bytes a user saves, validation must end in diagnostics, never in a
traceback, and every diagnostic must carry a usable position (line >= 1, col >= 1,
no further than one line past the end of the input) and a message. A file without
errors must give one model integration per entry of its ``integrations`` list.

Inputs: mutations of examples/integrations.yaml (line edits, stray characters and
bytes, indentation changes, YAML 1.1 trap values), documents built from random data
with ``yaml.safe_dump``, and two exhaustive sweeps (every node of an integration
replaced by each tricky value). Runs are derandomized so CI sees the same examples
every time; no example database is written.

Bugs already found are guarded (see "known bugs") and pinned by strict xfail tests
at the end of the file: fixing one turns its xfail into a failure, a reminder to
drop the marker and the guard.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, reject, settings
from hypothesis import strategies as st

from syncd.config import schemawalk
from syncd.config.configset import ConfigSet, assemble, check_file
from syncd.config.diagnostics import Diagnostic
from syncd.config.loader import LoadedFile, load_bytes
from syncd.config.schema import INTEGRATIONS
from syncd.config.semantics import DEFAULT_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "integrations.yaml").read_bytes()
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE)
NAME = "fuzz.yaml"
MINIMAL = b"""\
version: 1
integrations:
  - uid: checkout-ops
    project: checkout
    name: Checkout to ops
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: 1234567
          token: {env: HIPCHAT_TOKEN}
"""

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None)

# Values YAML 1.1 reads as something other than the text they look like, and
# other scalars a user may type where a string, number or mapping was expected.
TRAP_VALUES = [
    "no", "on", "off", "yes", "No", "ON", "y", "0755", "0o17", "0x1F", "0b101", "1_000",
    "1:30", "190:20:30", "2024-01-01", "2024-01-01T10:00:00Z", "~", "null", "", ".inf",
    "-.inf", ".nan", "+1", "-1", "0", "1e3", "'quoted'", '""', "[]", "{}", "[a, b]",
    "{env: X}", "{env: }", "{}: x", "!!str 42", "!!binary aGk=", "!custom x",
    "!!int x", "!!bool x", "!!float", "!!timestamp x", "!!null x", "!!map {}", "<<", "=",
    "&a x", "*a", "|", ">-", "- x", "? x", "%", "@x", "`x", "#", "true", "FALSE", "1.0",
    "300.0", "1.5", "0.0", "-0", "1e+3", "1.0e+3", "99999999999999999999",
]  # fmt: skip

# Bytes a stray keystroke, a paste or a bad encoding may leave in a file.
SPECIAL_BYTES = [
    b"\t", b"&", b"*", b"&a ", b"*a", b":", b": ", b" :", b"{", b"}", b"[", b"]", b"'",
    b'"', b"#", b"-", b"- ", b"?", b"? ", b"|", b">", b"!", b"!!", b"%", b"@", b"`", b",",
    b"\\", b"<<: ", b"---", b"--- ", b"...", b"\x00", b"\x07", b"\x1b", b"\r", b"\r\n",
    b"\xff", b"\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xef\xbb\xbf",
    "é".encode(), "ü".encode(), "\u00a0".encode(), "\u0085".encode(), "\u2028".encode(),
    "\u2029".encode(), "\ufeff".encode(), "😀".encode(), "\U0010ffff".encode(),
]  # fmt: skip

# A value after "key: ", "- ", "[" or ", " on a line: plain or double-quoted.
_VALUE = re.compile(
    rb"(?:(?<=: )|(?<=- )|(?<=\[)|(?<=, ))"
    rb'("[^"\n]*"|[^\s,{}\[\]#":](?:[^,{}\[\]#\n:]|:(?! ))*?)'
    rb"(?=[ \t]*(?:,|\]|\}|$))",
    re.MULTILINE,
)
# Line breaks as YAML counts them (libyaml and PyYAML agree on these).
_YAML_BREAK = re.compile("\r\n|[\r\n\u0085\u2028\u2029]")


def validate(loaded: LoadedFile) -> ConfigSet:
    """What ``syncd validate`` does with one file, in-process."""
    return assemble([check_file(loaded, DEFAULT_OPTIONS)])


def lines_of(raw: bytes, diagnostic: Diagnostic) -> list[str]:
    """The input's lines as YAML counts them (an invalid byte is shown as U+FFFD)."""
    return _YAML_BREAK.split(raw.decode("utf-8", errors="replace"))


def check_bytes(raw: bytes) -> ConfigSet | None:
    """Validate ``raw`` in-process and check the diagnostics."""
    loaded = load_bytes(raw, NAME)
    config = validate(loaded)
    for d in config.diagnostics:
        lines = lines_of(raw, d)
        assert d.file == NAME, d
        assert d.line >= 1 and d.col >= 1, d
        assert d.line <= len(lines) + 1, (d, len(lines))
        if d.line <= len(lines):
            assert d.col <= len(lines[d.line - 1]) + 1, (d, lines[d.line - 1])
        assert d.message.strip(), d
        assert "\n" not in d.message and "\r" not in d.message, d  # one line per diagnostic
        assert d.severity in ("error", "warning"), d
    if config.valid:
        assert isinstance(loaded.data, dict)
        items = loaded.data["integrations"]
        assert isinstance(items, list)
        assert len(config.integrations) == len(items)
    else:
        assert config.integrations == ()
    return config


def fuzz(raw: bytes) -> None:
    """``check_bytes`` inside a property; records what kind of input it was. The
    schema's errors are the same walked as checked whole."""
    same_errors_walking(raw)
    config = check_bytes(raw)
    if config is None:
        reject()
    elif config.valid:
        event("valid")
    elif any(d.message.startswith("YAML syntax") for d in config.diagnostics):
        event("YAML syntax error")
    else:
        event("YAML ok, other errors")


# --- mutations of the example text ------------------------------------------

Mutation = tuple[Any, ...]

_index = st.integers(min_value=0, max_value=10_000)
_payload = st.one_of(
    st.sampled_from(SPECIAL_BYTES),
    st.text(max_size=4).map(lambda s: s.encode("utf-8", errors="surrogatepass")),
    st.binary(min_size=1, max_size=3),
)
_mutation: st.SearchStrategy[Mutation] = st.one_of(
    st.tuples(st.just("delete"), _index),
    st.tuples(st.just("duplicate"), _index),
    st.tuples(st.just("swap"), _index, _index),
    st.tuples(st.just("insert"), _index, _index, _payload),
    st.tuples(st.just("indent"), _index, st.integers(min_value=-6, max_value=6)),
    st.tuples(st.just("tab"), _index),
    st.tuples(st.just("scalar"), _index, st.sampled_from(TRAP_VALUES)),
)


def mutate(raw: bytes, mutations: list[Mutation]) -> bytes:
    lines = raw.split(b"\n")
    for op, *args in mutations:
        if not lines:
            lines = [b""]
        i = args[0] % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = args[1] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            line = lines[i]
            col = args[1] % (len(line) + 1)
            lines[i] = line[:col] + args[2] + line[col:]
        elif op == "indent":
            delta = args[1]
            line = lines[i]
            if delta >= 0:
                lines[i] = b" " * delta + line
            else:
                stripped = line.lstrip(b" ")
                keep = max(0, len(line) - len(stripped) + delta)
                lines[i] = b" " * keep + stripped
        elif op == "tab":
            stripped = lines[i].lstrip(b" ")
            lines[i] = b"\t" + stripped
        elif op == "scalar":
            text = b"\n".join(lines)
            matches = list(_VALUE.finditer(text))
            if matches:
                m = matches[args[0] % len(matches)]
                text = text[: m.start(1)] + args[1].encode() + text[m.end(1) :]
                lines = text.split(b"\n")
    return b"\n".join(lines)


mutated_example = st.lists(_mutation, min_size=1, max_size=6).map(lambda ms: mutate(EXAMPLE, ms))


def test_example_is_valid_and_has_four_integrations() -> None:
    config = check_bytes(EXAMPLE)
    assert config is not None
    assert config.valid, config.diagnostics
    assert len(config.integrations) == 4


@settings(FUZZ, max_examples=1000)
@given(mutated_example)
def test_mutated_example_never_raises_and_points_inside_the_file(raw: bytes) -> None:
    fuzz(raw)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(TRAP_VALUES), min_size=1, max_size=3), st.data())
def test_trap_values_anywhere(values: list[str], data: st.DataObject) -> None:
    """Only scalar replacements: the file stays well-formed YAML more often."""
    matches = len(list(_VALUE.finditer(EXAMPLE)))
    indexes = data.draw(st.lists(st.integers(0, matches - 1), min_size=len(values)))
    raw = mutate(EXAMPLE, [("scalar", i, v) for i, v in zip(indexes, values, strict=False)])
    fuzz(raw)


# --- documents from random data -------------------------------------------

KEYS = sorted(
    {"version", "integrations", "uid", "project", "name", "state", "hipchat", "endpoint"}
    | {"rooms", "id", "token", "env", "file", "credential", "from", "color", "notify"}
    | {"message_format", "display", "classifiers", "callstack", "attributes", "trigger"}
    | {"attribute_list", "include_hostname", "actions", "action", "attribute", "regex"}
    | {"target", "event", "frequency", "threshold", "<<"}
)

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-2, max_value=100),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["enabled", "group", "trace", "red", "html", "5m", "@x", "^a$", "("]),
)
_key = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(), st.booleans())
_value = st.recursive(
    _scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_key, children, max_size=5),
    ),
    max_leaves=20,
)


def dump(doc: object, flow: bool | None, unicode: bool) -> bytes:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=unicode, sort_keys=False)
    return text.encode("utf-8")


_style = st.tuples(st.sampled_from([False, True, None]), st.booleans())


@FUZZ
@given(_value, _style)
def test_random_documents_never_raise(doc: object, style: tuple[bool | None, bool]) -> None:
    fuzz(dump(doc, *style))


@st.composite
def perturbed_example(draw: st.DrawFn) -> object:
    """The example's data with a few subtrees replaced, removed or added."""
    doc: Any = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        parent: Any = None
        slot: Any = None
        node = doc
        while isinstance(node, dict | list) and node and draw(st.integers(0, 5)) > 0:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, slot = node, draw(st.sampled_from(keys))
            node = node[slot]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if parent is None:
            if action == "replace":
                doc = draw(_value)
            continue
        if action == "replace":
            parent[slot] = draw(_value)
        elif action == "delete":
            del parent[slot]
        elif isinstance(parent, dict):
            parent[draw(_key)] = draw(_value)
        else:
            parent.insert(slot, draw(_value))
    return doc


@FUZZ
@given(perturbed_example(), _style)
def test_perturbed_example_data_never_raises(doc: object, style: tuple[bool | None, bool]) -> None:
    fuzz(dump(doc, *style))


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


EXAMPLE_PATHS = _paths(EXAMPLE_DATA)[1:]
_replacement = st.one_of(
    _scalar,
    st.sampled_from([0.0, 1.0, 300.0, 1e3, -0.0, 2**63, "", " ", "a\nb", "0755", "no", "@"]),
    _value,
)


@st.composite
def example_with_values_replaced(draw: st.DrawFn) -> object:
    """The example's data with one to three values (leaves or subtrees) replaced."""
    doc: Any = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        *parents, last = draw(st.sampled_from(EXAMPLE_PATHS))
        node = doc
        try:
            for part in parents:
                node = node[part]
            node[last] = draw(_replacement)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return doc


@FUZZ
@given(example_with_values_replaced(), _style)
def test_example_with_values_replaced_never_raises(
    doc: object, style: tuple[bool | None, bool]
) -> None:
    fuzz(dump(doc, *style))


# Values that a schema's type may let through but the model may not expect.
TRICKY_VALUES: list[object] = [
    None, True, 0, -1, 2**63, 0.0, 1.0, 300.0, 1.5, float("nan"), "", "no", "1:30",
    "a\nb", "é" * 101, [], [None], {}, {"env": "X"}, {1: 2},
]  # fmt: skip


# The example's first integration alone (it uses every key): the sweeps below
# validate it once per (node, value) pair.
FIRST_TEXT = EXAMPLE[: EXAMPLE.index(b"\n  # Search:")] + b"\n"
FIRST_DATA: dict[str, Any] = yaml.safe_load(FIRST_TEXT)


def test_every_node_of_an_integration_replaced_by_each_tricky_value() -> None:
    """Exhaustive, not random: every node of the integration, one value at a time."""
    assert len(FIRST_DATA["integrations"]) == 1
    for *parents, last in _paths(FIRST_DATA)[1:]:
        for value in TRICKY_VALUES:
            doc: Any = copy.deepcopy(FIRST_DATA)
            node = doc
            for part in parents:
                node = node[part]
            node[last] = value
            check_bytes(dump(doc, False, True))


def test_every_scalar_of_an_integration_text_replaced_by_each_trap_value() -> None:
    for index in range(len(list(_VALUE.finditer(FIRST_TEXT)))):
        for value in TRAP_VALUES:
            check_bytes(mutate(FIRST_TEXT, [("scalar", index, value)]))


# --- the real command ------------------------------------------------------


@settings(max_examples=3, deadline=None, derandomize=True, database=None)
@given(st.lists(mutated_example, min_size=8, max_size=8))
def test_cli_on_mutated_files_prints_no_traceback(
    tmp_path_factory: Any, files: list[bytes]
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    for n, raw in enumerate(files):
        (directory / f"f{n}.yaml").write_bytes(raw)
    (directory / "example.yaml").write_bytes(EXAMPLE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_ACTIONS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "syncd", "validate", str(directory)],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode in (0, 1), result
    assert "files checked" in result.stderr or "valid" in result.stderr, result.stderr


# --- regressions: inputs that once gave a traceback or a misplaced diagnostic


def test_integral_float_frequency_is_an_error() -> None:
    """JSON Schema's "integer" takes 300.0; syncd wants an integer or a duration."""
    raw = MINIMAL + b"    trigger: {frequency: 300.0}\n"
    config = validate(load_bytes(raw, NAME))
    assert not config.valid
    assert "expected a string or an integer, got a number (300.0)" in str(config.diagnostics[0])


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    raw = b"version: 1\nintegrations: " + b"[" * 600 + b"]" * 600 + b"\n"
    config = validate(load_bytes(raw, NAME))
    assert any("nested deeper than" in d.message for d in config.diagnostics)


def test_integral_float_room_id_is_an_error() -> None:
    raw = MINIMAL.replace(b"id: 1234567", b"id: 1.0")
    config = validate(load_bytes(raw, NAME))
    assert not config.valid, [i.rooms for i in config.integrations]


@pytest.mark.parametrize(
    "text",
    [
        "version: !!int abc\nintegrations: []\n",
        "version: !!bool abc\nintegrations: []\n",
        "version: !!timestamp abc\nintegrations: []\n",
        'version: !!int ""\nintegrations: []\n',
        "version: 1\n!x integrations: []\n",
    ],
)
def test_explicit_tags_are_diagnostics(text: str) -> None:
    loaded = load_bytes(text.encode(), NAME)
    assert loaded.diagnostics
    assert all(d.line == 1 + text.count("\n", 0, text.index("!")) for d in loaded.diagnostics)


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\ufffe"])
def test_control_character_position(char: str) -> None:
    raw = MINIMAL.replace(b"name: Checkout", f"name: Check{char}out".encode())
    [diagnostic] = load_bytes(raw, NAME).diagnostics
    assert (diagnostic.line, diagnostic.col) == (5, 16), diagnostic
    assert "\n" not in diagnostic.message, diagnostic


def test_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    from syncd.config.configset import load_config_set

    (tmp_path / "a.yaml").write_bytes(MINIMAL)
    (tmp_path / "self").symlink_to(".")
    (tmp_path / "again").symlink_to(".")
    config = load_config_set([tmp_path])
    assert config.files == (str(tmp_path / "a.yaml"),)
    assert config.valid


def _errors_found_whole(loaded: LoadedFile) -> list[str]:
    """The schema errors of the whole document as jsonschema finds them, less those at or
    below a value the loader reported: what syncd listed before it walked the document."""
    found = []
    for top in INTEGRATIONS.validator().iter_errors(loaded.data):
        for error in schemawalk.leaves(top):
            path = tuple(error.absolute_path)
            if not any(path[:depth] in loaded.reported_paths for depth in range(1, len(path) + 1)):
                found.append(repr((path, error.validator, error.validator_value)))
    return sorted(set(found))  # jsonschema's required: one error per missing key, all alike


def _errors_found_walking(loaded: LoadedFile) -> list[str]:
    found = []
    for path, error in schemawalk.failures(
        INTEGRATIONS, loaded.data, loaded.reported_paths.__contains__
    ):
        if not any(path[:depth] in loaded.reported_paths for depth in range(1, len(path) + 1)):
            found.append(repr((path, error.validator, error.validator_value)))
    return sorted(set(found))


def same_errors_walking(raw: bytes) -> None:
    loaded = load_bytes(raw, NAME)
    if not loaded.ok or INTEGRATIONS.certainly_valid(loaded.data):
        return
    assert _errors_found_walking(loaded) == _errors_found_whole(loaded)


@FUZZ
@given(example_with_values_replaced(), _style)
def test_walking_the_document_finds_the_errors_checking_it_whole_finds(
    doc: object, style: tuple[bool | None, bool]
) -> None:
    """The walk checks only what the compiled check fails, each value against its own
    subschema: the same errors, in time linear in the document."""
    same_errors_walking(dump(doc, *style))


@FUZZ
@given(perturbed_example(), _style)
def test_walking_a_perturbed_document_finds_the_same_errors(
    doc: object, style: tuple[bool | None, bool]
) -> None:
    same_errors_walking(dump(doc, *style))
