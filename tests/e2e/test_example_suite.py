"""The shipped rule suite, suites/integrations.suite.yaml, holds for the shipped
examples/integrations.yaml, and fails as soon as a frequency there changes:
run from the repository's root as the README runs it (the command's Python
entry point, in-process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from syncd.commands.suite import run_suite
from tests.support.paths import ROOT

SUITE = Path("suites") / "integrations.suite.yaml"
CASES = [
    "new checkout errors within 5 minutes are one message, then a digest",
    "staging errors are dropped, and their group is not new afterwards",
    "search sends NYC errors at most every 1h30m per fingerprint",
    "billing is paused but still queues; its legacy room is off",
]


def test_the_example_suite_passes_on_the_example_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert run_suite(Path("examples/"), SUITE) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"PASS {name}" for name in CASES]
    assert err == "syncd: all 4 cases passed\n"


@pytest.mark.parametrize(
    ("before", "after", "failed", "row"),
    [
        ("frequency: 5m\n", "frequency: 10m\n", 0, "    + 10m  digest rooms="),
        ("frequency: 1h30m\n", "frequency: 1h\n", 2, "    +    1h  digest rooms="),
        ("frequency: 30s\n", "frequency: 0s\n", None, None),  # billing sends at once either way
        ('regex: "^staging$"', 'regex: "^stage$"', 1, "    - 0s  filtered by actions[1]"),
        ("state: disabled", "state: enabled", 3, "    + 0s  send rooms="),
    ],
)
def test_a_change_to_the_example_config_fails_the_case_it_touches(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    before: str,
    after: str,
    failed: int | None,
    row: str | None,
) -> None:
    for directory in ("examples", "suites"):
        shutil.copytree(ROOT / directory, tmp_path / directory, symlinks=True)
    example = tmp_path / "examples" / "integrations.yaml"
    assert example.read_text().count(before) == 1
    example.write_text(example.read_text().replace(before, after))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code = run_suite(Path("examples/"), SUITE)
    out, _ = capsys.readouterr()
    if failed is None:
        assert code == 0, out
        return
    assert code == 1
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert [v.startswith("FAIL ") for v in verdicts] == [i == failed for i in range(4)]
    assert verdicts[failed].startswith(f"FAIL {CASES[failed]} (suites/integrations.suite.yaml:")
    assert row is not None and row in out, out
