"""check-jsonschema, a validator no one here wrote, agrees with ``syncd validate``.

Fixtures under ``valid/`` and ``invalid/`` must get the same verdict from both.
Fixtures under ``syncd_only/`` hold what syncd rejects beyond the schema (YAML
1.1 values and anchors, which a YAML 1.2 reader takes silently, and rules
across integrations); check-jsonschema must accept those, which proves the
schema alone does not catch them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from tests.support.paths import FIXTURES, ROOT

CASES = [*sorted(FIXTURES.glob("*/*.yaml")), ROOT / "examples" / "integrations.yaml"]


def _peer_verdicts() -> dict[str, bool]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe, "check-jsonschema is in the test extras"
    result = subprocess.run(
        [
            exe,
            "--schemafile",
            str(ROOT / "schemas" / "integrations.schema.json"),
            "--regex-variant",
            "python",
            "--output-format",
            "json",
            *map(str, CASES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    bad = {e["filename"] for e in report["errors"] + report["parse_errors"]}
    return {str(case): str(case) not in bad for case in CASES}


@pytest.fixture(scope="module")
def peer() -> dict[str, bool]:
    return _peer_verdicts()


def test_fixture_categories_are_populated() -> None:
    kinds = {case.parent.name for case in CASES}
    assert {"valid", "invalid", "syncd_only"} <= kinds
    assert sum(1 for c in CASES if c.parent.name == "invalid") >= 20


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_verdicts(case: Path, peer: dict[str, bool]) -> None:
    ours = load_config_set([case]).valid
    theirs = peer[str(case)]
    if case.parent.name == "syncd_only":
        assert (ours, theirs) == (False, True)
    else:
        assert ours == theirs
        assert ours == (case.parent.name != "invalid")
