"""``syncd validate`` as a user runs it: real files, exit codes and output, the
command run in-process (its process adds nothing but start-up time here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from syncd.config.diagnostics import MAX_FILE_DIAGNOSTICS
from tests.support.cli import run_cli
from tests.support.configs import minimal
from tests.support.paths import ROOT
from tests.support.processes import run_syncd


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_directory_exits_0(tmp_path: Path) -> None:
    write(tmp_path, "integrations/a.yaml", minimal("a"))
    write(tmp_path, "integrations/b.yml", minimal("b"))
    result = run_cli("validate", "integrations", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "syncd: valid (2 files checked)\n"


def test_default_path_is_the_current_directory_and_skips_hidden_dirs(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a"))
    write(tmp_path, ".git/config.yaml", "not: [valid")
    write(tmp_path, "..data/a.yaml", minimal("a"))
    write(tmp_path, "notes.txt", "ignored")
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stderr == "syncd: valid (1 file checked)\n"


def test_every_error_of_every_file_in_one_run(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a").replace("1234567", "0"))
    write(tmp_path, "b.yaml", minimal("a").replace("name: a", "name: b") + "    colour: red\n")
    write(tmp_path, "c.yaml", "version: 1\nintegrations: [\n")
    result = run_cli("validate", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "a.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'a'; also defined at b.yaml:3:10",
        "a.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: 0 is less than the minimum 1",
        "b.yaml:3:10: error: $.integrations[0].uid: duplicate uid 'a'; also defined at a.yaml:3:10",
        "b.yaml:11:5: error: $.integrations[0].colour: unknown key 'colour' "
        "(expected one of: uid, project, name, state, hipchat, display, actions, trigger)",
        "c.yaml:2:15: error: YAML syntax: '[' opened here is not closed: at line 3, col 1 "
        "(the end of the file) YAML expected a value; close it with ']'",
    ]
    assert result.stderr == "syncd: 5 errors in 3 files (3 files checked)\n"


def test_json_format(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a").replace("checkout-ops", "x") + "    state: nope\n")
    result = run_cli("validate", "--format", "json", "a.yaml", cwd=tmp_path)
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    assert payload["files_checked"] == 1
    assert payload["diagnostics"] == [
        {
            "file": "a.yaml",
            "line": 11,
            "col": 12,
            "path": "$.integrations[0].state",
            "message": "'nope' is not one of: enabled, disabled, stopped",
            "severity": "error",
        }
    ]


def test_github_format_is_automatic_under_actions(tmp_path: Path) -> None:
    write(tmp_path, "a,b.yaml", minimal("a") + "    state: 100%\n")
    result = run_cli("validate", cwd=tmp_path, env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    assert result.stdout == (
        "::error file=a%2Cb.yaml,line=11,col=12::$.integrations[0].state: "
        "'100%25' is not one of: enabled, disabled, stopped\n"
    )


def test_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a").replace("{env: HIPCHAT_TOKEN}", "literal-token-123"))
    relaxed = run_cli("validate", cwd=tmp_path)
    assert relaxed.returncode == 0
    assert "a.yaml:10:18: warning: $.integrations[0].hipchat.rooms[0].token:" in relaxed.stdout
    assert "literal-token-123" not in relaxed.stdout + relaxed.stderr
    strict = run_cli("validate", "--strict", cwd=tmp_path)
    assert strict.returncode == 1
    allowed = run_cli("validate", "--strict", "--allow-plaintext-tokens", cwd=tmp_path)
    assert allowed.returncode == 0
    assert allowed.stdout == ""


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_cli("validate", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "syncd validate: error: no such file or directory: nope.yaml\n"
    assert run_cli("validate", "--format", "xml", cwd=tmp_path).returncode == 2
    assert run_cli("frobnicate", cwd=tmp_path).returncode == 2


def test_unreadable_input_never_gives_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "link.yaml").symlink_to(tmp_path / "gone.yaml")
    result = run_cli("validate", "bin.yaml", "link.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [
        "bin.yaml:3:115: error: invalid UTF-8 byte 0x80; save as UTF-8",
        "link.yaml:1:1: error: cannot read file: No such file or directory",
    ]


def test_each_missing_key_once_and_a_foreign_file_as_one_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "version: 1\nintegrations: [{uid: x}]\n")
    write(tmp_path, "deploy.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = run_cli("validate", ".", cwd=tmp_path)
    assert result.stdout.splitlines() == [
        "a.yaml:2:16: error: $.integrations[0]: missing key 'hipchat'",
        "a.yaml:2:16: error: $.integrations[0]: missing key 'name'",
        "a.yaml:2:16: error: $.integrations[0]: missing key 'project'",
        "deploy.yaml:1:1: error: not an integrations file: it has neither 'version' nor "
        "'integrations'; leave it out with --exclude GLOB",
    ]
    excluded = run_cli("validate", ".", "--exclude", "deploy.yaml", cwd=tmp_path)
    assert "deploy.yaml" not in excluded.stdout
    assert excluded.stderr == "syncd: 3 errors in 1 file (1 file checked)\n"


def test_suggestions_are_valid_values_and_tabs_are_named(tmp_path: Path) -> None:
    text = minimal("a").replace("    hipchat:\n", "    state: on\n    hipchat:\n")
    text = text.replace("      rooms:\n", "      color: grey\n      notify: yes\n      rooms:\n")
    write(tmp_path, "a.yaml", text)
    write(tmp_path, "t.yaml", "version: 1\nintegrations:\n\t- uid: x\n")
    result = run_cli("validate", ".", cwd=tmp_path)
    assert result.stdout.splitlines() == [
        "a.yaml:6:12: error: $.integrations[0].state: YAML 1.1 reads the unquoted on as the "
        "boolean true, not the text 'on'; neither is valid here: 'on' is not one of: "
        "enabled, disabled, stopped",
        "a.yaml:9:14: error: $.integrations[0].hipchat.color: 'grey' is not one of: yellow, "
        "green, red, purple, gray, random (did you mean 'gray'?)",
        "a.yaml:10:15: error: $.integrations[0].hipchat.notify: YAML 1.1 reads the unquoted "
        "yes as the boolean true, not the text 'yes'; write true",
        "t.yaml:3:1: error: YAML syntax: a tab; YAML indents with spaces only",
    ]


def test_a_directory_without_yaml_fails_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = run_cli("validate", "empty", cwd=tmp_path)
    assert (empty.returncode, empty.stderr) == (
        1,
        "syncd: no YAML files found (--allow-empty to pass)\n",
    )
    allowed = run_cli("validate", "--allow-empty", "empty", cwd=tmp_path)
    assert allowed.returncode == 0


def test_a_valid_file_is_checked_without_importing_jsonschema(tmp_path: Path) -> None:
    """Importing jsonschema costs more than checking a file, so a valid file never
    pays for it, nor one whose errors syncd finds by itself; an error below an
    ``if``/``then`` does, for its message."""
    text = (ROOT / "examples" / "integrations.yaml").read_text()
    good = write(tmp_path, "good.yaml", text)
    bad = write(tmp_path, "bad.yaml", text.replace("state: enabled", "state: enabeld", 1))
    mention = text.replace('regex: "^payments$", target: "@payments"', 'regex: "^payments$"')
    branch = write(tmp_path, "branch.yaml", mention)
    probe = (
        "import sys\n"
        "from syncd.cli import main\n"
        "code = main(['validate', sys.argv[1]])\n"
        "print(code, 'jsonschema' in sys.modules)\n"
    )
    for path, expected in ((good, "0 False"), (bad, "1 False"), (branch, "1 True")):
        result = subprocess.run(
            [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.splitlines()[-1] == expected, result.stdout + result.stderr


def test_a_strict_failure_says_it_failed_on_warnings(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a") + "    trigger: {threshold: 5}\n")
    relaxed = run_cli("validate", cwd=tmp_path)
    assert (relaxed.returncode, relaxed.stderr) == (0, "syncd: valid, 1 warning (1 file checked)\n")
    strict = run_cli("validate", "--strict", cwd=tmp_path)
    assert strict.returncode == 1
    assert strict.stdout.startswith("a.yaml:11:26: warning: $.integrations[0].trigger.threshold: ")
    assert strict.stderr == (
        "syncd: failed: 1 warning in 1 file, and --strict fails the run on warnings "
        "(1 file checked)\n"
    )


def test_machine_formats_keep_stdout_clean_and_still_count(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", minimal("a"))
    write(tmp_path, "b.yaml", minimal("b") + "    trigger: {threshold: 5}\n")
    as_json = run_cli("validate", "--format", "json", "--strict", cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert (as_json.returncode, as_json.stderr) == (1, "")
    assert (document["files_checked"], document["valid"], document["passed"]) == (2, True, False)
    github = run_cli("validate", "--format", "github", cwd=tmp_path)
    assert github.returncode == 0
    assert [line[:10] for line in github.stdout.splitlines()] == ["::warning "]
    assert github.stderr == "syncd: valid, 1 warning (2 files checked)\n"


def test_a_build_copy_of_the_checkout_is_not_read(tmp_path: Path) -> None:
    """``pip install .`` leaves build/lib/...: a second copy of every file, every uid
    a duplicate, unless it is left out."""
    write(tmp_path, "integrations/a.yaml", minimal("a"))
    write(tmp_path, "build/lib/integrations/a.yaml", minimal("a"))
    write(tmp_path, "tests/fixtures/deep/x.yaml", "not: [valid")
    result = run_cli("validate", "--exclude", "tests/*", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "syncd: valid (1 file checked)\n"


def test_a_file_name_with_a_line_break_and_escapes_prints_on_one_escaped_line(
    tmp_path: Path,
) -> None:
    """Such a name reached the terminal raw: a forged line, colours, a cursor moved."""
    name = "evil\n\x1b[2Ksyncd: valid\x1b[0m\r\u2028.yaml"
    write(tmp_path, name, minimal("a") + "    stat: enabled\n")
    shown = "evil\\n\\x1b[2Ksyncd: valid\\x1b[0m\\r\\u2028.yaml"
    text = run_cli("validate", ".", cwd=tmp_path)
    assert text.stdout == (
        f"{shown}:11:5: error: $.integrations[0].stat: unknown key 'stat' (did you mean 'state'?)\n"
    )
    github = run_cli("validate", ".", "--format", "github", cwd=tmp_path)
    assert github.stdout.count("\n") == 1 and "\x1b" not in github.stdout
    assert github.stdout.startswith("::error file=evil\\n\\x1b[2Ksyncd%3A valid\\x1b[0m\\r")
    document = json.loads(run_cli("validate", ".", "--format", "json", cwd=tmp_path).stdout)
    assert document["diagnostics"][0]["file"] == name


def test_thousands_of_yaml_11_traps_are_checked_in_linear_time_and_listed_up_to_the_cap(
    tmp_path: Path,
) -> None:
    """8 KB of ``no`` took 120 s of CPU, each trap a copy of the whole document checked
    again; a fresh process, as a pre-commit hook runs it."""
    write(tmp_path, "a.yaml", "version: 1\nintegrations: [" + ", ".join(["no"] * 2000) + "]\n")
    result = run_syncd("validate", "a.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == MAX_FILE_DIAGNOSTICS + 1
    assert lines[0] == (
        "a.yaml:2:16: error: $.integrations[0]: YAML 1.1 reads the unquoted no as the boolean "
        "false, not the text 'no'; neither is valid here: expected a mapping, got a string ('no')"
    )
    assert lines[-1].startswith("a.yaml:2:416: error: and 1,900 more problems in this file")
    assert result.stderr == "syncd: 2,000 errors in 1 file, 1,900 not listed (1 file checked)\n"


def test_four_thousand_copies_of_a_uid_give_a_short_answer(tmp_path: Path) -> None:
    """60 KB gave 787 MB of memory and 252 MB of output."""
    write(tmp_path, "a.yaml", "version: 1\nintegrations:\n" + "  - {uid: a}\n" * 4600)
    for fmt in ("text", "github", "json"):
        result = run_syncd("validate", "--format", fmt, "a.yaml", cwd=tmp_path)
        assert result.returncode == 1
        assert len(result.stdout) < 32 * 1024, fmt
    document = json.loads(result.stdout)
    assert (document["errors"], document["not_listed"]) == (4 * 4600, 4 * 4600 - 100)
    assert len(document["diagnostics"]) == MAX_FILE_DIAGNOSTICS + 1


def test_the_operator_sets_the_action_bounds_on_the_command_line(tmp_path: Path) -> None:
    actions = "    actions:\n" + "".join(
        f'      - {{action: filter, attribute: team, regex: "^t{i}$"}}\n' for i in range(3)
    )
    write(tmp_path, "a.yaml", minimal("a") + actions)
    assert run_cli("validate", ".", cwd=tmp_path).returncode == 0
    tight = run_cli("validate", ".", "--max-actions", "2", cwd=tmp_path)
    assert tight.returncode == 1
    assert "at most 2 (the operator's --max-actions)" in tight.stdout
    small = run_cli("validate", ".", "--max-pattern-bytes", "8", cwd=tmp_path)
    assert "at most 8 (the operator's --max-pattern-bytes)" in small.stdout
    refused = run_cli("validate", ".", "--max-actions", "0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--max-actions wants 1 or more, got 0" in refused.stderr
