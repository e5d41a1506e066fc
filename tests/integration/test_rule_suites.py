"""Rule suites: cases of timed events run through the daemon's ingest on a
virtual clock, each passed or failed with what differed (the command's Python
entry point, in-process; tests/e2e/test_rule_suites_cli.py runs it as a command)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.commands.suite import SuiteFormat, run_suite
from syncd.errors import handled
from tests.support.configs import write_files

Run = Callable[..., subprocess.CompletedProcess[str]]

SHOP = """\
version: 1
integrations:
  - uid: ops
    project: shop
    name: ops
    hipchat:
      endpoint: https://hipchat.example.com
      message_format: html
      rooms:
        - {{id: 1, token: {{env: HIPCHAT_T}}}}
        - {{id: war-room, token: {{env: HIPCHAT_T}}}}
    actions:
      - {{action: submit, attribute: "*", regex: ".*"}}
      - {{action: filter, attribute: environment, regex: "^staging$"}}
      - {{action: mention, attribute: team, regex: "^payments$", target: "@payments"}}
    trigger: {{event: group, frequency: {frequency}, threshold: 3}}
  - uid: old
    project: shop
    name: old room
    state: disabled
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{{id: 9, token: {{env: HIPCHAT_T}}}}]
  - uid: traces
    project: api
    name: every trace
    hipchat:
      endpoint: https://hipchat.example.com
      rooms: [{{id: 5, token: {{env: HIPCHAT_T}}}}]
    trigger: {{event: trace, frequency: 90s}}
"""


def shop(frequency: str = "5m") -> str:
    return SHOP.format(frequency=frequency)


@pytest.fixture
def suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """Write the config and the suite, and run the suite as the command does."""

    def run(
        text: str, config: str | None = None, fmt: SuiteFormat | None = None
    ) -> subprocess.CompletedProcess[str]:
        write_files(tmp_path, ("config/shop.yaml", config or shop()), ("shop.suite.yaml", text))
        with handled("rules") as outcome:
            outcome.code = run_suite(tmp_path / "config", tmp_path / "shop.suite.yaml", fmt=fmt)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["run_suite"], outcome.code, out, err)

    return run


BURST = """\
version: 1
defaults: {project: shop}
cases:
  - name: new groups within the window wait for the digest
    timeline:
      - at: 0s
        event: {fingerprint: a, attributes: {team: payments}}
        expect: {ops: send}
      - at: 45s
        event: {fingerprint: b}
        expect: {ops: throttled}
      - at: 2m
        event: {fingerprint: c}
        expect: {ops: throttled}
      - at: 5m
        expect: {ops: {digest: {title: "New error in shop: c", more: and 1 more new error group}}}
"""


def test_a_suite_catches_a_changed_frequency(suite: Run) -> None:
    assert suite(BURST).returncode == 0
    longer = suite(BURST, shop("10m"))
    assert longer.returncode == 1
    assert longer.stdout.splitlines()[1:] == [
        "  (- expected, + happened)",
        "  ops:",
        "       0s  send",
        "      45s  throttled",
        "       2m  throttled",
        '    -  5m  digest title="New error in shop: c" more="and 1 more new error group"',
        '    + 10m  digest rooms=["1", "war-room"] title="New error in shop: c at '
        '2026-01-01T00:02:00Z" more="and 1 more new error group since 2026-01-01T00:00:45Z"',
    ]
    shorter = suite(BURST, shop("1m"))
    assert shorter.returncode == 1
    assert shorter.stdout.splitlines()[2:] == [
        "  ops:",
        "       0s  send",
        "      45s  throttled",
        '    +  1m  digest rooms=["1", "war-room"] title="New error in shop: b at '
        '2026-01-01T00:00:45Z"',
        "    -  2m  throttled",
        '    +  2m  send rooms=["1", "war-room"] title="New error in shop: c at '
        '2026-01-01T00:02:00Z"',
        '    -  5m  digest title="New error in shop: c" more="and 1 more new error group"',
    ]


EVERY_KIND = """\
version: 1
start: "2026-11-26T09:00:00Z"
defaults: {project: shop, attributes: {environment: production}}
cases:
  - name: every outcome an integration can have
    timeline:
      - at: 0s
        event: {fingerprint: a, classifiers: [KeyError], attributes: {team: payments}}
        expect:
          ops:
            send:
              rooms: [war-room, 1]
              title: "New error in shop: KeyError"
              mentions: ["@payments"]
          old: disabled
      - at: 10s
        event: {fingerprint: b, attributes: {environment: staging}}
        expect: {ops: {filtered: 1}, old: disabled}
      - at: 20s
        event: {fingerprint: a}
        expect: {ops: seen_before, old: disabled}
      - at: 30s
        event: {fingerprint: c, attributes: {team: payments}}
        expect: {ops: throttled, old: disabled}
      - at: 40s
        event: {fingerprint: d}
        expect: {ops: throttled, old: disabled}
      - at: 50s
        event: {fingerprint: e}
        expect:
          ops:
            send:
              title: "New error in shop: e at 2026-11-26T09:00:50Z"
              mentions: ["@payments"]
              more: and 2 more new error groups since 2026-11-26T09:00:30Z
          old: disabled
      - at: 1m
        event: {fingerprint: f}
        expect: {ops: throttled, old: disabled}
      - at: 5m50s
        expect: {ops: {digest: {rooms: [1, war-room], title: "New error in shop: f", mentions: []}}}
"""


def test_every_outcome_kind_passes_as_it_happens(suite: Run) -> None:
    result = suite(EVERY_KIND)
    assert (result.returncode, result.stdout) == (
        0,
        "PASS every outcome an integration can have\n",
    ), result.stdout
    assert result.stderr == "syncd: the case passed\n"


SENT_AT_0 = (
    '+    0s  send rooms=["1", "war-room"] title="New error in shop: KeyError at '
    '2026-11-26T09:00:00Z" mentions=["@payments"]'
)


@pytest.mark.parametrize(
    ("written", "wrong", "shown"),
    [
        # Each kind expected where another happened: the row shows what did.
        (
            "{ops: {filtered: 1}, old: disabled}",
            "{ops: send, old: disabled}",
            "+   10s  filtered by actions[1]",
        ),
        (
            "{ops: {filtered: 1}, old: disabled}",
            "{ops: {filtered: 0}, old: disabled}",
            "+   10s  filtered by actions[1]",
        ),
        ("{ops: seen_before, old: disabled}", "{ops: send, old: disabled}", "+   20s  seen_before"),
        (
            "{ops: throttled, old: disabled}\n      - at: 40s",
            "{ops: send, old: disabled}\n      - at: 40s",
            "+   30s  throttled",
        ),
        ("{ops: seen_before, old: disabled}", "{ops: seen_before, old: send}", "+ 20s  disabled"),
        ("rooms: [war-room, 1]", "rooms: [1]", SENT_AT_0),
        ('title: "New error in shop: KeyError"', 'title: "New error in shop: a"', SENT_AT_0),
        ('mentions: ["@payments"]\n          old', "mentions: []\n          old", SENT_AT_0),
        (
            "more: and 2 more",
            "more: and 3 more",
            'more="and 2 more new error groups since 2026-11-26T09:00:30Z"',
        ),
        (
            "mentions: []}}}",
            'mentions: ["@payments"]}}}',
            '+ 5m50s  digest rooms=["1", "war-room"] title="New error in shop: f at '
            '2026-11-26T09:01:00Z" mentions=[]',
        ),
        (
            "- at: 5m50s",
            "- at: 5m49s",
            '+ 5m50s  digest rooms=["1", "war-room"] title="New error in shop: f at ',
        ),
    ],
)
def test_each_outcome_kind_fails_when_another_happens(
    suite: Run, written: str, wrong: str, shown: str
) -> None:
    assert written in EVERY_KIND
    result = suite(EVERY_KIND.replace(written, wrong, 1))
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("FAIL every outcome an integration can have (")
    assert shown in result.stdout, result.stdout
    assert result.stderr == "syncd: 1 of 1 case failed\n"


DIGEST = """\
version: 1
defaults: {project: api, fingerprint: t1}
cases:
  - name: a trace window of 90s
    timeline:
      - at: 0s
        event: {}
        expect: {traces: send}
      - at: 10s
        event: {}
        expect: {traces: throttled}
      - at: 20s
        event: {}
        expect: {traces: throttled}
      - at: 1m30s
        expect: {traces: {digest: and 1 more occurrence of this error}}
"""


def test_a_digest_is_expected_at_the_second_its_window_ends(suite: Run) -> None:
    assert suite(DIGEST).returncode == 0
    for early_or_late in ("1m29s", "1m31s", "90"):
        result = suite(DIGEST.replace("at: 1m30s", f"at: {early_or_late}"))
        if early_or_late == "90":  # whole seconds name the same second
            assert result.returncode == 0, result.stdout
            continue
        assert result.returncode == 1
        assert f"    - {early_or_late}  digest" in result.stdout
        assert '    + 1m30s  digest rooms=["5"]' in result.stdout


def test_a_digest_left_out_fails_the_case(suite: Run) -> None:
    """The clock runs on after the last event until every window has sent."""
    unlisted = DIGEST.split("      - at: 1m30s")[0]
    result = suite(unlisted)
    assert result.returncode == 1
    assert '    + 1m30s  digest rooms=["5"] title="Error in api: t1 at ' in result.stdout


def test_a_digest_due_at_an_events_second_goes_out_first(suite: Run) -> None:
    text = DIGEST.replace(
        "      - at: 1m30s\n"
        "        expect: {traces: {digest: and 1 more occurrence of this error}}",
        "      - at: 1m30s\n        event: {}\n        expect:\n"
        "          traces: [throttled, {digest: and 1 more occurrence of this error}]\n"
        "      - at: 3m\n        expect: {traces: digest}",
    )
    result = suite(text)
    assert result.returncode == 0, result.stdout


def second_case(text: str, name: str) -> str:
    """The text with its one case twice, the second under another name."""
    case = text[text.index("  - name: ") :]
    return text + case.replace(case.splitlines()[0], f"  - name: {name}", 1)


def test_each_case_starts_from_a_fresh_state(suite: Run) -> None:
    text = second_case(BURST, "the same events again")
    result = suite(text)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("PASS ") == 2


def test_integrations_not_named_are_not_checked(suite: Run) -> None:
    """``old`` is disabled at every step of BURST, which does not name it."""
    assert suite(BURST).returncode == 0
    named = BURST.replace(
        "expect: {ops: throttled}\n      - at: 2m",
        "expect: {ops: throttled, old: []}\n      - at: 2m",
    )
    result = suite(named)
    assert result.returncode == 1
    assert result.stdout.splitlines()[2:] == [
        "  old:",
        "    +  0s  disabled",
        "    + 45s  disabled",
        "    +  2m  disabled",
    ]


def test_a_broken_suite_exits_2_with_each_problem_at_its_place(suite: Run, tmp_path: Path) -> None:
    text = """\
version: 1
defaults: {project: shop}
cases:
  - name: typos
    timeline:
      - at: 1m
        event: {fingerprint: a}
        expect: {opz: send}
      - at: 30s
        event: {fingerprint: b, timestamp: yesterday}
      - at: 15d
"""
    result = suite(text)
    name = tmp_path / "shop.suite.yaml"
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{name}:8:18: error: $.cases[0].timeline[0].expect.opz: no integration 'opz' in "
        "the config (did you mean 'ops'?)",
        f"{name}:9:13: error: $.cases[0].timeline[1].at: 30s is before the step above it, "
        "at 1m: a timeline lists its steps in time order",
        f"{name}:10:16: error: $.cases[0].timeline[1].event: not a valid event, with the "
        "defaults: $.timestamp: not an RFC 3339 date-time with an offset, such as "
        "2026-11-26T09:14:03Z",
        f"{name}:11:13: error: $.cases[0].timeline[2].at: '15d' is longer than 14 days "
        "(1209600 seconds), the most allowed",
    ]
    assert result.stderr == "syncd: the suite is broken: 4 problems\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("version: 1\ncases:\n  - name: x\n    timeline: [{at: 0s\n", "4:16", "YAML syntax"),
        ("", "1:1", "$: file is empty; expected 'version: 1' and 'cases:'"),
        (
            "version: 1\ncases:\n  - name: x\n    timeline:\n"
            "      - at: 0s\n        expect: {ops: sent}\n",
            "6:23",
            "'sent' is not one of send, filtered",
        ),
        (
            "version: 1\ncases:\n  - name: x\n    timeline:\n      - at: no\n",
            "5:13",
            "YAML 1.1 reads the unquoted no",
        ),
        ("version: 1\nintegrations: []\n", "1:1", "$: missing key 'cases'"),
    ],
)
def test_a_suite_that_is_not_one_exits_2(
    suite: Run, tmp_path: Path, text: str, where: str, message: str
) -> None:
    result = suite(text)
    assert result.returncode == 2
    assert result.stdout.startswith(f"{tmp_path / 'shop.suite.yaml'}:{where}: error: ")
    assert message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_github_annotations_point_at_the_failing_case(suite: Run, tmp_path: Path) -> None:
    head, _, last = second_case(BURST, "a later digest").rpartition("at: 5m")
    result = suite(f"{head}at: 6m{last}", fmt="github")
    name = tmp_path / "shop.suite.yaml"
    assert result.returncode == 1
    first, second = result.stdout.splitlines()
    assert first == "PASS new groups within the window wait for the digest"
    assert second.startswith(
        f'::error file={name},line=17,col=5,title=rule suite::case "a later digest" failed '
        "(- expected, + happened)%0A  ops:%0A"
    )
    assert '%0A    +  5m  digest rooms=["1", "war-room"] title=' in second
    assert '%0A    -  6m  digest title="New error in shop: c" more=' in second


def test_github_annotations_place_a_broken_suites_problems(suite: Run, tmp_path: Path) -> None:
    result = suite(BURST.replace("{ops: throttled}", "{opz: throttled}", 1), fmt="github")
    assert result.returncode == 2
    assert result.stdout == (
        f"::error file={tmp_path / 'shop.suite.yaml'},line=11,col=18::"
        "$.cases[0].timeline[1].expect.opz: no integration 'opz' in the config "
        "(did you mean 'ops'?)\n"
    )


def test_names_and_event_text_reach_the_terminal_escaped(suite: Run) -> None:
    text = (
        BURST.replace("new groups within", "new \\u001b[2J groups within")
        .replace('title: "New error in shop: c"', 'title: "x"')
        .replace("{fingerprint: c}", '{fingerprint: "c\\u001b]0;owned\\u0007"}')
    )
    text = text.replace("name: new", 'name: "new').replace("the digest\n", 'the digest"\n', 1)
    result = suite(text)
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "FAIL new \\x1b[2J groups" in result.stdout
    assert "c\\u001b]0;owned\\u0007" in result.stdout


def test_a_title_reads_as_a_reader_sees_it(suite: Run) -> None:
    """The text keeps an event's "@" from mentioning anyone with a character no
    reader sees; a title is compared without it."""
    text = BURST.replace("{fingerprint: a, attributes", '{fingerprint: "x@all", attributes')
    text = text.replace(
        "expect: {ops: send}", 'expect: {ops: {send: {title: "New error in shop: x@all"}}}'
    )
    assert suite(text).returncode == 0


def test_an_invalid_config_is_a_usage_error(suite: Run) -> None:
    result = suite(BURST, shop("5 minutes"))
    assert result.returncode == 2
    assert "syncd rules: error: the config is invalid" in result.stderr


def test_a_suite_that_is_no_regular_file_is_refused_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_files(tmp_path, ("config/shop.yaml", shop()))
    fifo = tmp_path / "pipe.suite.yaml"
    os.mkfifo(fifo)
    code = run_suite(tmp_path / "config", fifo)
    assert code == 2
    assert capsys.readouterr().out == (
        f"{fifo}:1:1: error: is a FIFO; only regular files are read\n"
    )
