"""The README's Mutes section: its worked example run as written in a temp dir (with
its ``until`` moved to a week from now, as the README asks of whoever runs it),
printing what the README shows; and its table naming every key of a mute, each
required or not as the schema says."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from syncd.config.schema import INTEGRATIONS
from tests.support.readme import readme_section, run_script
from tests.support.schemas import schema_properties

SHOWN_UNTIL = "2026-12-10T09:00:00Z"


def mutes_section() -> str:
    return readme_section("## Mutes\n")


def test_the_worked_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    script, shown = re.findall(r"```(?:sh|text)\n(.*?)```", mutes_section(), re.S)[:2]
    assert script.count(SHOWN_UNTIL) == 1 and shown.count(SHOWN_UNTIL) == 1
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    done = run_script(script.replace(SHOWN_UNTIL, until), tmp_path, pipefail=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown.replace(SHOWN_UNTIL, until)
    assert done.stderr == "syncd: valid (1 file checked)\n"


def test_the_same_example_with_its_mute_past_fails_validate_unless_allowed(
    tmp_path: Path,
) -> None:
    script = re.findall(r"```sh\n(.*?)```", mutes_section(), re.S)[0]
    setup = script.split("syncd validate")[0].replace(SHOWN_UNTIL, "2020-01-01T00:00:00Z")

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return run_script(setup + command, tmp_path)

    refused = run("syncd validate .")
    assert refused.returncode == 1
    assert "teams/pay.yaml:17:12: error: $.mutes[0].until: 2020-01-01T00:00:00Z is past" in (
        refused.stdout
    )
    allowed = run("syncd validate . --allow-expired-mutes")
    assert allowed.returncode == 0, allowed.stdout
    assert "teams/pay.yaml:17:12: warning: $.mutes[0].until" in allowed.stdout


def test_the_table_names_every_key_of_a_mute_as_the_schema_requires_it() -> None:
    rows = dict(re.findall(r"^\| `(mutes\[\][^`]*)` \| [^|]* \| ([^|]*) \|", mutes_section(), re.M))
    mute = INTEGRATIONS.document()["properties"]["mutes"]["items"]
    match = mute["properties"]["match"]["items"]
    keys = {
        path: path.rpartition(".")[2] in (match if "match[]" in path else mute)["required"]
        for path, _ in schema_properties(INTEGRATIONS.document()["properties"]["mutes"], "mutes")
    }
    assert set(keys) == set(rows)
    for key, required in keys.items():
        assert rows[key].startswith("required") == required, key
