"""YAML safety: every unsafe or surprising construct is an error with its position."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from syncd.config import loader
from syncd.config.configset import ConfigSet
from syncd.config.loader import MAX_FILE_BYTES, load_bytes
from tests.support.configs import errors, minimal


def only_error(config: ConfigSet) -> str:
    found = errors(config)
    assert len(found) == 1, [str(d) for d in found]
    return str(found[0])


def test_duplicate_key_points_at_the_second_key(check: Callable[..., ConfigSet]) -> None:
    text = minimal() + "    state: enabled\n    state: disabled\n"
    out = only_error(check(("a.yaml", text)))
    assert out == (
        "a.yaml:12:5: error: $.integrations[0].state: duplicate key 'state' "
        "(first at line 11, col 5)"
    )


def test_anchor_and_alias_are_errors(check: Callable[..., ConfigSet]) -> None:
    text = (
        minimal()
        .replace("project: checkout", "project: &p checkout")
        .replace("name: checkout-ops", "name: *p")
    )
    found = [str(d) for d in errors(check(("a.yaml", text)))]
    assert found == [
        "a.yaml:4:14: error: YAML anchor &p is not allowed; write the value out in full",
        "a.yaml:5:11: error: YAML alias *p is not allowed; write the value out in full",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "x: &a 1\ny: *a\n",
        "x: [&a 1, *a]\n",
        "x: {k: &a 1, j: *a}\n",
        "- &a 1\n- *a\n",
        "&a x: 1\n",
    ],
)
def test_every_place_an_anchor_can_stand_is_found(line: str) -> None:
    loaded = load_bytes(line.encode(), "a.yaml")
    assert any("YAML anchor &a is not allowed" in d.message for d in loaded.diagnostics)


def test_stars_in_patterns_are_not_anchors() -> None:
    text = minimal() + '    actions:\n      - {action: submit, attribute: "*", regex: ".*"}\n'
    loaded = load_bytes(text.encode(), "a.yaml")
    assert loaded.diagnostics == []


def test_alias_bomb_is_not_expanded() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)
    ]
    loaded = load_bytes("\n".join(lines).encode(), "bomb.yaml")
    assert len(loaded.diagnostics) == 9 + 8 * 9
    assert loaded.data["i"] == [None] * 9


def test_file_over_1_mib(check: Callable[..., ConfigSet]) -> None:
    big = minimal() + "#" * MAX_FILE_BYTES + "\n"
    out = only_error(check(("big.yaml", big)))
    assert out == "big.yaml:1:1: error: file is larger than 1 MiB; split it into several files"


def test_non_utf8_byte_has_its_position(check: Callable[..., ConfigSet]) -> None:
    raw = minimal().encode().replace(b"name: checkout-ops", b"name: caf\xe9")
    out = only_error(check(("a.yaml", raw)))
    assert out == "a.yaml:5:14: error: invalid UTF-8 byte 0xe9; save as UTF-8"


def test_utf16_file(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal().encode("utf-16"))))
    assert out == "a.yaml:1:1: error: file is UTF-16; save it as UTF-8"


def test_utf8_bom_is_accepted(check: Callable[..., ConfigSet]) -> None:
    assert check(("a.yaml", b"\xef\xbb\xbf" + minimal().encode())).valid


def test_non_string_key(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    1: x\n")))
    assert out == (
        "a.yaml:11:5: error: $.integrations[0][\"1\"]: key '1' is read by YAML as the number 1; "
        'keys must be strings: quote it ("1")'
    )


def test_yaml11_boolean_key(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    on: x\n")))
    assert out.startswith("a.yaml:11:5: error: $.integrations[0].on: key 'on' is read by YAML")
    assert "the boolean true" in out


def test_complex_key(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    ? [a, b]\n    : x\n")))
    assert out == (
        "a.yaml:11:7: error: $.integrations[0]: a key must be a plain string, not a list or mapping"
    )


@pytest.mark.parametrize(
    ("line", "position", "said"),
    [
        ("      color: no", "11:14", "the boolean false, not the text 'no'"),
        ("      notify: yes", "11:15", "the boolean true, not the text 'yes'"),
    ],
)
def test_yaml11_booleans(
    check: Callable[..., ConfigSet], line: str, position: str, said: str
) -> None:
    out = only_error(check(("a.yaml", minimal() + line + "\n")))
    assert out.startswith(f"a.yaml:{position}: error: ")
    assert said in out


def test_octal_room_id(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal().replace("1234567", "0755"))))
    assert out == (
        "a.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: YAML 1.1 reads the "
        "unquoted 0755 as the octal number 493, not the text '0755'; quote it (\"0755\") "
        "if you mean the text, or write 493"
    )


def test_quoted_octal_room_id_is_fine(check: Callable[..., ConfigSet]) -> None:
    assert check(("a.yaml", minimal().replace("1234567", '"0755"'))).valid


def test_sexagesimal_duration(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    trigger:\n      frequency: 1:30\n")))
    assert out.startswith("a.yaml:12:18: error: $.integrations[0].trigger.frequency: ")
    assert "the base-60 number 90" in out


def test_date_name(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal().replace("name: checkout-ops", "name: 2024-01-01"))))
    assert out == (
        "a.yaml:5:11: error: $.integrations[0].name: YAML reads the unquoted 2024-01-01 "
        'as a date (2024-01-01); quote it ("2024-01-01")'
    )


def test_number_where_text_expected_says_why(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal().replace("name: checkout-ops", "name: 12345"))))
    assert out == (
        "a.yaml:5:11: error: $.integrations[0].name: expected a string, got an integer "
        "(12345); YAML reads the unquoted 12345 as the number 12345: quote it if you mean the text"
    )


def test_explicit_tag_is_rejected(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    state: !!binary aGVsbG8=\n")))
    assert out.startswith("a.yaml:11:12: error: $.integrations[0].state: YAML tag ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nintegrations: !!python/object/apply:os.system\n  - uid: a\n",
            "a.yaml:2:15: error: $.integrations: "
            "YAML tag tag:yaml.org,2002:python/object/apply:os.system is not supported",
        ),
        (
            "version: 1\nintegrations: !!python/object/apply:os.system [ls]\n",
            "a.yaml:2:15: error: $.integrations: "
            "YAML tag tag:yaml.org,2002:python/object/apply:os.system is not supported",
        ),
        (
            minimal().replace("      rooms:\n", "      rooms: !whatever\n"),
            "a.yaml:8:14: error: $.integrations[0].hipchat.rooms: "
            "YAML tag !whatever is not supported",
        ),
        (
            minimal().replace("  - uid:", "  - !thing\n    uid:"),
            "a.yaml:3:5: error: $.integrations[0]: YAML tag !thing is not supported",
        ),
        (
            "!root\nversion: 1\nintegrations: []\n",
            "a.yaml:1:1: error: $: YAML tag !root is not supported",
        ),
        (
            "version: 1\nintegrations: !!set {a: null}\n",
            "a.yaml:2:15: error: $.integrations: YAML tag tag:yaml.org,2002:set is not supported",
        ),
    ],
)
def test_a_tag_on_a_mapping_or_list_is_refused_at_the_tag(
    check: Callable[..., ConfigSet], text: str, expected: str
) -> None:
    """Another YAML reader may act on such a tag (``!!python/object/apply`` runs a
    command): a repository that validates must hold none."""
    assert only_error(check(("a.yaml", text))) == expected


def test_a_mapping_or_list_tagged_as_what_it_is_is_accepted(
    check: Callable[..., ConfigSet],
) -> None:
    """As ``!!str`` on a text: the tag says what YAML reads anyway."""
    text = minimal().replace("integrations:\n", "integrations: !!seq\n")
    assert check(("a.yaml", text.replace("    hipchat:", "    hipchat: !!map"))).valid


def test_merge_key(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", minimal() + "    <<: {state: enabled}\n")))
    assert out.startswith("a.yaml:11:5: error: $.integrations[0]: merge keys (<<)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nintegrations: [\n",
            "a.yaml:2:15: error: YAML syntax: '[' opened here is not closed: at line 3, col 1 "
            "(the end of the file) YAML expected a value; close it with ']'",
        ),
        (
            "version: 1\n---\nversion: 1\n",
            "a.yaml:2:1: error: YAML syntax: a second document starts here; a file holds one: "
            "move it to a file of its own",
        ),
        ("", "a.yaml:1:1: error: $: file is empty; expected 'version: 1' and 'integrations:'"),
    ],
)
def test_syntax_errors(check: Callable[..., ConfigSet], text: str, expected: str) -> None:
    assert only_error(check(("a.yaml", text))) == expected


def test_tab_indentation(check: Callable[..., ConfigSet]) -> None:
    out = only_error(check(("a.yaml", "version: 1\n\tintegrations: []\n")))
    assert out.startswith("a.yaml:2:1: error: YAML syntax: ")
    assert "tab" in out or "\\t" in out


def test_positions_for_valid_values_are_not_needed_to_load() -> None:
    loaded = load_bytes(minimal().encode(), "a.yaml")
    assert loaded.diagnostics == []
    assert loaded.position(("integrations", 0, "hipchat", "rooms", 0, "token", "env")) == (10, 24)
    assert loaded.position(("integrations", 0, "missing")) == (3, 5)


def test_what_one_file_reports_stays_its_own() -> None:
    """Files share one empty set of reported paths and traps until they add one."""
    first = load_bytes(b"version: 1\nx: yes\ny: {a: 1, a: 2}\n", "first.yaml")
    second = load_bytes(b"version: 1\n", "second.yaml")
    assert first.traps and first.reported_paths
    assert not second.traps and not second.reported_paths


ACTIONS = (
    minimal()
    + "    display:\n      classifiers: true\n    trigger:\n      event: trace\n    actions:\n"
    + '      - {action: submit, attribute: "*", regex: ".*"}\n'
    + '      - {action: filter, attribute: env, regex: "^staging$"\n'
    + '      - {action: submit, attribute: env, regex: "^prod$"}\n'
)
# Each one error, placed where a person should look first, naming where YAML found
# the text broken; the same words whichever YAML parser is installed.
SYNTAX = [
    (
        ACTIONS,
        "a.yaml:17:9: error: YAML syntax: '{' opened here is not closed: at line 18, col 7 "
        "YAML expected ',' or '}'; close it with '}'",
    ),
    (
        "a: {b: [1, 2}\n",
        "a.yaml:1:8: error: YAML syntax: '[' opened here is not closed: at line 1, col 13 "
        "YAML expected ',' or ']'; close it with ']'",
    ),
    (
        "version: 1\nintegrations:\n  - uid: a\n    project b\n    name: c\n",
        "a.yaml:4:5: error: YAML syntax: a ':' is missing after the key here: YAML read on "
        "to line 5, col 5 without finding one; write it as 'key: value'",
    ),
    (
        "version: 1\nintegrations:\n  - uid: a\n   project: b\n",
        "a.yaml:4:4: error: YAML syntax: bad indentation: this line is neither an item ('- ') "
        "of the list at line 3, col 3 nor indented under one; line it up with what it "
        "belongs to",
    ),
    (
        "a:\n    b: 1\n  c: 2\n",
        "a.yaml:3:3: error: YAML syntax: bad indentation: this line is not a key of the "
        "mapping at line 1, col 1; line it up with the keys it belongs with",
    ),
    (
        "version: 1\nintegrations:\n  - uid: a\n    project: b\n      name: c\n",
        "a.yaml:5:11: error: YAML syntax: YAML cannot start a key here: the line is indented "
        "deeper than the keys before it, or a value holds ': ' (then quote the value)",
    ),
    (
        "version: 1\nintegrations:\n  - uid: a\n\tproject: b\n",
        "a.yaml:4:1: error: YAML syntax: a tab; YAML indents with spaces only",
    ),
    (
        'version: 1\nname: "abc\nfoo: 1\n',
        'a.yaml:2:7: error: YAML syntax: the text quoted with " here is not closed: the file '
        'ends (line 4) inside it; add the closing "',
    ),
    (
        "a: [1, 2]]\n",
        "a.yaml:1:10: error: YAML syntax: this ']' closes nothing; remove it, or quote the "
        "value it is part of",
    ),
    (
        "a: @team\n",
        "a.yaml:1:4: error: YAML syntax: an unquoted value cannot start with '@'; quote the value",
    ),
]


@pytest.fixture(params=["installed", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure-python":
        monkeypatch.setattr(loader, "_Loader", yaml.SafeLoader)
        monkeypatch.setattr(loader, "_LIBYAML", False)
    return str(request.param)


@pytest.mark.parametrize(("text", "expected"), SYNTAX)
def test_a_syntax_error_is_placed_where_to_look_and_says_where_it_broke(
    parser: str, text: str, expected: str
) -> None:
    found = load_bytes(text.encode(), "a.yaml").diagnostics
    assert [str(d) for d in found] == [expected]


def test_a_backslash_escape_yaml_does_not_know_says_to_use_single_quotes() -> None:
    (found,) = load_bytes(b'a: 1\nregex: "^\\d+$"\n', "a.yaml").diagnostics
    assert str(found) == (
        "a.yaml:2:10: error: YAML syntax: inside double quotes a backslash starts an escape "
        "(\\n, \\t, ...) and this one is unknown; put the text in single quotes, where a "
        "backslash is itself ('^\\d+$'), or double the backslash"
    )
