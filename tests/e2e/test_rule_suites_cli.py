"""``syncd rules test --suite`` as a user runs it: a subprocess, its exit codes,
its GitHub annotations, the README's worked example as written, and the
pre-commit hook the README shows."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd import __version__
from tests.support.configs import minimal, write_files
from tests.support.gitrepo import GIT_ENV, hosted_copy
from tests.support.paths import ROOT
from tests.support.processes import run_syncd

CONFIG = minimal() + "    trigger: {event: group, frequency: 5m}\n"
SUITE = """\
version: 1
defaults: {project: checkout}
cases:
  - name: a second new group waits for the digest
    timeline:
      - at: 0s
        event: {fingerprint: a}
        expect: {checkout-ops: {send: {rooms: [1234567], title: "New error in checkout: a"}}}
      - at: 45s
        event: {fingerprint: b}
        expect: {checkout-ops: throttled}
      - at: 5m
        expect: {checkout-ops: {digest: {title: "New error in checkout: b"}}}
"""


def _suite(tmp_path: Path, suite: str = SUITE, config: str = CONFIG) -> tuple[str, ...]:
    write_files(tmp_path, ("integrations/checkout.yaml", config), ("checkout.suite.yaml", suite))
    return ("rules", "test", "--config", "integrations", "--suite", "checkout.suite.yaml")


def test_a_passing_suite_exits_0(tmp_path: Path) -> None:
    result = run_syncd(*_suite(tmp_path), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "PASS a second new group waits for the digest\n",
        "syncd: the case passed\n",
    )


def test_a_changed_frequency_fails_the_suite_with_exit_1(tmp_path: Path) -> None:
    args = _suite(tmp_path, config=CONFIG.replace("frequency: 5m", "frequency: 30s"))
    result = run_syncd(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "FAIL a second new group waits for the digest (checkout.suite.yaml:4:5)",
        "  (- expected, + happened)",
        "  checkout-ops:",
        '       0s  send rooms=["1234567"] title="New error in checkout: a"',
        "    - 45s  throttled",
        '    + 45s  send rooms=["1234567"] title="New error in checkout: b at '
        '2026-01-01T00:00:45Z"',
        '    -  5m  digest title="New error in checkout: b"',
    ]
    assert result.stderr == "syncd: 1 of 1 case failed\n"


def test_a_broken_suite_exits_2_with_file_line_col(tmp_path: Path) -> None:
    typo = SUITE.replace("{checkout-ops: throttled}", "{checkout-opz: throttled}")
    result = run_syncd(*_suite(tmp_path, typo), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == (
        'checkout.suite.yaml:11:18: error: $.cases[0].timeline[1].expect["checkout-opz"]: '
        "no integration 'checkout-opz' in the config (did you mean 'checkout-ops'?)\n"
    )
    assert result.stderr == "syncd: the suite is broken: 1 problem\n"
    result = run_syncd(*_suite(tmp_path, "version: 1\ncases: [\n"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("checkout.suite.yaml:2:8: error: YAML syntax: ")
    assert "Traceback" not in result.stdout + result.stderr


def test_format_github_annotates_the_failing_case(tmp_path: Path) -> None:
    args = _suite(tmp_path, config=CONFIG.replace("frequency: 5m", "frequency: 30s"))
    for flags, env in ((("--format", "github"), None), ((), {"GITHUB_ACTIONS": "true"})):
        result = run_syncd(*args, *flags, cwd=tmp_path, env=env)
        assert result.returncode == 1
        assert result.stdout.startswith(
            '::error file=checkout.suite.yaml,line=4,col=5,title=rule suite::case "a second '
            'new group waits for the digest" failed (- expected, + happened)%0A'
            "  checkout-ops:%0A"
        )
        assert result.stdout.count("\n") == 1
    plain = run_syncd(*args, "--format", "text", cwd=tmp_path, env={"GITHUB_ACTIONS": "true"})
    assert plain.stdout.startswith("FAIL ")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--event", "e.json"), "not allowed with argument"),
        (("--uid", "checkout-ops"), "--uid and --seen-before go with --event, not --suite"),
        (("--seen-before",), "--uid and --seen-before go with --event, not --suite"),
    ],
)
def test_the_suite_takes_none_of_the_event_flags(
    tmp_path: Path, flags: tuple[str, ...], said: str
) -> None:
    result = run_syncd(*_suite(tmp_path), *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert said in result.stderr


def test_the_event_takes_no_format_and_one_of_the_two_is_needed(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(
        '{"project": "checkout", "fingerprint": "a", "timestamp": "2026-11-26T09:00:00Z"}'
    )
    args = _suite(tmp_path)[:4]
    result = run_syncd(*args, "--event", "e.json", "--format", "github", cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "syncd rules: error: --format goes with --suite",
    )
    neither = run_syncd(*args, cwd=tmp_path)
    assert neither.returncode == 2
    assert "one of the arguments --event --suite is required" in neither.stderr


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Rule suites\n")
    end = re.search(r"\n#{2,3} ", readme[start + 1 :])
    assert end is not None
    return readme[start : start + 1 + end.start()]


def _blocks(section: str) -> list[str]:
    return re.findall(r"```\w*\n(.*?)```", section, re.S)


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks(_readme_section())
    snippet = next(b for b in blocks if b.startswith("  - uid: checkout-ops"))
    assert snippet in (ROOT / "examples" / "integrations.yaml").read_text()
    suite = next(b for b in blocks if b.startswith("# yaml-language-server"))
    assert suite == (ROOT / "suites" / "integrations.suite.yaml").read_text()
    passing, failing = (b for b in blocks if b.startswith("$ syncd rules test "))
    command, output = passing.split("\n", 1)
    result = run_syncd(*shlex.split(command)[2:], cwd=ROOT)
    assert result.returncode == 0
    assert result.stdout + result.stderr == output
    # "With frequency: 10m instead of 5m in examples/integrations.yaml"
    for directory in ("examples", "suites"):
        shutil.copytree(ROOT / directory, tmp_path / directory, symlinks=True)
    example = tmp_path / "examples" / "integrations.yaml"
    assert example.read_text().count("frequency: 5m\n") == 1
    example.write_text(example.read_text().replace("frequency: 5m\n", "frequency: 10m\n"))
    command, output = failing.split("\n", 1)
    result = run_syncd(*shlex.split(command)[2:], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout + result.stderr == output


def test_the_readme_ci_lines_pass_on_a_repository_laid_out_as_it_says(tmp_path: Path) -> None:
    lines = next(b for b in _blocks(_readme_section()) if b.startswith("syncd validate "))
    write_files(
        tmp_path,
        ("integrations/checkout.yaml", CONFIG),
        ("suites/checkout.suite.yaml", SUITE),
    )
    for line in lines.splitlines():
        words = shlex.split(line)
        assert words[0] == "syncd"
        result = run_syncd(*words[1:], cwd=tmp_path, env={"HIPCHAT_TOKEN": "t"})
        assert result.returncode == 0, line + "\n" + result.stdout + result.stderr


def _hook_snippet() -> str:
    return next(b for b in _blocks(_readme_section()) if "id: syncd-rules-suite" in b)


@pytest.mark.slow
def test_the_readme_hook_runs_the_suite_in_pre_commit(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    assert pre_commit, "pre-commit is in the test extras"
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    env.pop("GITHUB_ACTIONS", None)
    host = tmp_path / "syncd-host"
    host.mkdir()
    hosted_copy(host, env)
    snippet = _hook_snippet()
    assert f"rev: v{__version__}" in snippet
    repo = tmp_path / "ops-config"
    write_files(
        repo,
        ("integrations/checkout.yaml", CONFIG),
        ("suites/checkout.suite.yaml", SUITE),
        (
            ".pre-commit-config.yaml",
            snippet.replace("https://example.com/your-org/syncd", str(host)),
        ),
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    run = [pre_commit, "run", "--all-files", "--color", "never"]
    passed = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS a second new group waits for the digest" in passed.stdout
    slower = CONFIG.replace("frequency: 5m", "frequency: 30s")
    (repo / "integrations" / "checkout.yaml").write_text(slower)
    failed = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL a second new group waits for the digest (suites/checkout.suite.yaml:4:5)" in (
        failed.stdout
    )
