"""At most MAX_FILE_DIAGNOSTICS problems are listed per file and MAX_SET_DIAGNOSTICS
per set, errors first, the rest counted in one last line, wherever a set's
diagnostics go: validate's formats, and the set the daemon's loader gives (which
the log, /status and a reload's answer show)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.diagnostics import (
    MAX_FILE_DIAGNOSTICS,
    MAX_SET_DIAGNOSTICS,
    MAX_TEXT,
    Diagnostic,
    report,
    summary,
)
from syncd.config.filecache import ConfigLoader
from tests.support.configs import minimal, write_files


def unknown_keys(count: int) -> str:
    return minimal() + "".join(f"    k{n:05}: 1\n" for n in range(count))


def test_a_file_lists_its_first_problems_and_counts_the_rest_in_one_last_line(
    check: Callable[..., ConfigSet],
) -> None:
    config = check(("a.yaml", unknown_keys(MAX_FILE_DIAGNOSTICS + 50)))
    listed = list(config.diagnostics)
    assert len(listed) == MAX_FILE_DIAGNOSTICS + 1
    assert [d.line for d in listed[:-1]] == list(range(11, 11 + MAX_FILE_DIAGNOSTICS))
    last = listed[-1]
    assert str(last) == (
        f"a.yaml:{11 + MAX_FILE_DIAGNOSTICS}:5: error: and 50 more problems in this file "
        f"(50 errors) not listed: at most {MAX_FILE_DIAGNOSTICS} are listed per file, "
        "errors first; the first of them is here"
    )
    assert not config.valid
    assert (config.found.errors, config.found.omitted) == (MAX_FILE_DIAGNOSTICS + 50, 50)


def test_an_error_is_never_left_out_for_a_warning(check: Callable[..., ConfigSet]) -> None:
    """A hundred warnings first in the file, an error last: the error is listed."""
    room = "        - id: {n}\n          token: plain-{n}\n"
    rooms = "".join(room.format(n=n) for n in range(1, MAX_FILE_DIAGNOSTICS + 1))
    text = minimal().split("        - id:")[0] + rooms + "    colour: red\n"
    config = check(("a.yaml", text))
    assert config.found.warnings == MAX_FILE_DIAGNOSTICS
    errors = [d for d in config.diagnostics if d.severity == "error"]
    assert [d.path for d in errors] == ["$.integrations[0].colour"]
    assert config.diagnostics[-1].message.startswith("and 1 more problem in this file (1 warning)")
    assert config.diagnostics[-1].severity == "warning"


def test_a_set_lists_at_most_its_cap_and_counts_the_rest(tmp_path: Path) -> None:
    files = MAX_SET_DIAGNOSTICS // MAX_FILE_DIAGNOSTICS + 3
    for n in range(files):
        text = unknown_keys(MAX_FILE_DIAGNOSTICS + 5).replace("checkout-ops", f"u{n}")
        write_files(tmp_path, (f"f{n:02}.yaml", text))
    config = load_config_set([tmp_path])
    problems = [d for d in config.diagnostics if not d.message.startswith("and ")]
    assert len(problems) == MAX_SET_DIAGNOSTICS
    last = config.diagnostics[-1]
    # Each problem is counted once: the files listed whole count their own 5 more.
    listed_files = MAX_SET_DIAGNOSTICS // MAX_FILE_DIAGNOSTICS
    files_lines = [d for d in config.diagnostics if "more problems in this file" in d.message]
    assert len(files_lines) == listed_files
    hidden = files * (MAX_FILE_DIAGNOSTICS + 5) - MAX_SET_DIAGNOSTICS - 5 * listed_files
    assert last.message.startswith(f"and {hidden:,} more problems in this set")
    assert config.found.omitted == files * (MAX_FILE_DIAGNOSTICS + 5) - MAX_SET_DIAGNOSTICS
    assert f"at most {MAX_SET_DIAGNOSTICS:,} are listed per set" in last.message
    assert config.found.errors == files * (MAX_FILE_DIAGNOSTICS + 5)
    assert config.found.error_files == files
    assert len(config.diagnostics) < MAX_SET_DIAGNOSTICS + files + 2


def test_four_thousand_copies_of_one_uid_give_bounded_diagnostics(
    check: Callable[..., ConfigSet],
) -> None:
    """The issue's 60 KB file: 787 MB and 252 MB of output before."""
    config = check(("a.yaml", "version: 1\nintegrations:\n" + "  - {uid: a}\n" * 4600))
    assert len(config.diagnostics) == MAX_FILE_DIAGNOSTICS + 1
    assert sum(len(str(d)) for d in config.diagnostics) < 200 * (MAX_FILE_DIAGNOSTICS + 1)
    # 4,600 clashes, and each item lacks project, name and hipchat.
    assert config.found.errors == 4600 * 4
    for fmt in ("text", "github", "json"):
        out = report(list(config.diagnostics), fmt, 1, counts=config.found)
        assert len(out) < 64 * 1024


def test_the_daemons_loader_caps_the_same_way(tmp_path: Path) -> None:
    write_files(tmp_path, ("a.yaml", unknown_keys(3 * MAX_FILE_DIAGNOSTICS)))
    write_files(tmp_path, ("b.yaml", "version: 1\nintegrations:\n" + "  - {uid: a}\n" * 300))
    loader = ConfigLoader()
    daemon = loader.load([tmp_path])
    assert daemon.diagnostics == load_config_set([tmp_path]).diagnostics
    assert daemon.found == load_config_set([tmp_path]).found
    assert len(daemon.diagnostics) == 2 * (MAX_FILE_DIAGNOSTICS + 1)
    (tmp_path / "b.yaml").write_text(minimal("b"))
    again = loader.load([tmp_path], changed=["b.yaml"])
    assert again.diagnostics == load_config_set([tmp_path]).diagnostics


def test_reports_count_every_problem_found_not_only_those_listed(
    check: Callable[..., ConfigSet],
) -> None:
    config = check(("a.yaml", unknown_keys(MAX_FILE_DIAGNOSTICS + 7)))
    listed = list(config.diagnostics)
    said = summary(listed, 1, counts=config.found)
    assert said == f"{MAX_FILE_DIAGNOSTICS + 7} errors in 1 file, 7 not listed (1 file checked)"
    document = json.loads(report(listed, "json", 1, counts=config.found))
    assert (document["errors"], document["not_listed"]) == (MAX_FILE_DIAGNOSTICS + 7, 7)
    assert len(document["diagnostics"]) == MAX_FILE_DIAGNOSTICS + 1
    github = report(listed, "github", 1, counts=config.found).splitlines()
    assert github[-1].startswith("::error file=a.yaml,line=")
    assert "and 7 more problems in this file" in github[-1]


def test_a_list_under_the_caps_is_unchanged() -> None:
    found = [Diagnostic("a.yaml", n, 1, "", "x") for n in range(3)]
    assert summary(found, 1) == "3 errors in 1 file (1 file checked)"


def test_a_listed_diagnostic_is_bounded_in_size(check: Callable[..., ConfigSet]) -> None:
    """A key of 200,000 characters is quoted in its message and its path."""
    config = check(("a.yaml", minimal() + f"    ? {'k' * 200_000}\n    : 1\n"))
    (found,) = config.diagnostics
    assert len(found.path) <= MAX_TEXT and len(found.message) <= MAX_TEXT
    assert found.message.startswith("unknown key 'kkkk")
    assert found.message.endswith(" more characters)")
