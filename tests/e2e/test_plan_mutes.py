"""``syncd plan`` on a change that only mutes or unmutes rooms: the reviewer of
the pull request sees it, and the exit status says "changes". On the example
with its mutes taken in, against a directory and against a running daemon (and
one older than mutes, whose registry has no ``mutes``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.support.cli import run_cli
from tests.support.example import Example, example
from tests.support.muted_example import WEEK, uncommented_mutes, utc
from tests.support.processes import spawn, wait_listening

CANARY = (
    "integrations.yaml mutes[0]: integration checkout-ops, rooms [Checkout War Room], "
    'match environment ~ "^canary$", until {until} (in {left}), '
    "reason: canary rollout of checkout v2; the ops room still sees every error"
)
BILLING = (
    "integrations.yaml mutes[1]: project billing, every room, until {until} (in {left}), "
    "reason: billing ledger migration"
)


def with_mutes(ex: Example, name: str, until: str) -> Path:
    """A copy of the example's config dir with its mutes, each ending at ``until``."""
    text = (ex.config_dir / "integrations.yaml").read_text(encoding="utf-8")
    directory = ex.config_dir.parent / name
    directory.mkdir()
    (directory / "integrations.yaml").write_text(uncommented_mutes(text, until), encoding="utf-8")
    return directory


def left(printed: str) -> str:
    """``6 days 23 hours`` or ``7 days``: a week less the seconds the test took."""
    return printed.split("(in ", 1)[1].split(")", 1)[0]


def test_plan_against_config_lists_mutes_added_changed_and_removed(tmp_path: Path) -> None:
    ex = example(tmp_path)
    until = utc(time.time() + WEEK)
    muted = with_mutes(ex, "muted", until)
    plan = ("plan", *ex.flags)

    added = run_cli(
        *plan, "--config", str(muted), "--against-config", str(ex.config_dir), cwd=tmp_path
    )
    assert added.returncode == 1, added.stdout + added.stderr
    lines = added.stdout.splitlines()
    assert lines[0] in {
        "+ mute " + CANARY.format(until=until, left=span) for span in ("7 days", "6 days 23 hours")
    }, lines[0]
    assert lines[1] == "+ mute " + BILLING.format(until=until, left=left(lines[1]))
    assert lines[2] == (
        "Plan: 0 to create, 0 to update, 0 to delete, 4 unchanged; "
        "mutes: 2 to add, 0 to change, 0 to remove, 0 unchanged."
    )

    removed = run_cli(
        *plan, "--config", str(ex.config_dir), "--against-config", str(muted), cwd=tmp_path
    )
    assert removed.returncode == 1
    assert removed.stdout.startswith(
        "- unmute integrations.yaml mutes[0]: integration checkout-ops"
    )
    assert "\n- unmute integrations.yaml mutes[1]: project billing" in removed.stdout

    later = with_mutes(ex, "later", utc(time.time() + 2 * WEEK))
    changed = run_cli(*plan, "--config", str(later), "--against-config", str(muted), cwd=tmp_path)
    assert changed.returncode == 1
    assert changed.stdout.count("\n    until: ") == 2
    assert changed.stdout.startswith("~ mute integrations.yaml mutes[0]: integration checkout-ops")

    same = run_cli(*plan, "--config", str(muted), "--against-config", str(muted), cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith(f"No changes against {muted}.\n")


def test_plan_formats_show_the_mutes(tmp_path: Path) -> None:
    ex = example(tmp_path)
    muted = with_mutes(ex, "muted", utc(time.time() + WEEK))
    args = ("plan", *ex.flags, "--config", str(muted), "--against-config", str(ex.config_dir))
    as_json = run_cli(*args, "--format", "json", cwd=tmp_path)
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["changed"] is True
    assert [m["mute"] for m in document["mutes"]["add"]] == [
        "integrations.yaml mutes[0]",
        "integrations.yaml mutes[1]",
    ]
    assert document["mutes"]["add"][1]["project"] == "billing"
    assert document["integrations"]["unchanged"] == 4
    markdown = run_cli(*args, "--format", "markdown", cwd=tmp_path)
    assert markdown.returncode == 1
    assert f"### syncd plan against {ex.config_dir}\n\n```diff\n+ mute " in markdown.stdout


@contextmanager
def older_daemon(answer: dict[str, object]) -> Iterator[str]:
    """A daemon of before mutes, as far as ``/v1/registry`` goes: ``answer``."""
    body = json.dumps(answer).encode()

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/v1/registry" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_plan_against_a_daemon_sees_its_mutes(tmp_path: Path) -> None:
    ex = example(tmp_path)
    muted = with_mutes(ex, "muted", utc(time.time() + WEEK))
    proc = wait_listening(spawn(muted, tmp_path / "state", *ex.flags, env=ex.env))
    try:
        registry = requests.get(proc.url + "/v1/registry", timeout=10)
        assert [m["file"] for m in registry.json()["mutes"]] == ["integrations.yaml"] * 2
        for token in ex.rooms.values():
            assert token not in registry.text
        plan = ("plan", *ex.flags, "--against", proc.url)
        same = run_cli(*plan, "--config", str(muted), cwd=tmp_path, env=ex.env)
        assert same.returncode == 0, same.stdout + same.stderr
        assert same.stdout.startswith(f"No changes against {proc.url}.\n")
        unmuted = run_cli(*plan, "--config", str(ex.config_dir), cwd=tmp_path, env=ex.env)
        assert unmuted.returncode == 1, unmuted.stdout + unmuted.stderr
        assert unmuted.stdout.count("- unmute integrations.yaml mutes[") == 2
        assert "mutes: 0 to add, 0 to change, 2 to remove, 0 unchanged." in unmuted.stdout
        older = {k: v for k, v in registry.json().items() if k != "mutes"}
    finally:
        proc.stop()
    with older_daemon(older) as url:
        against_older = run_cli(
            "plan", *ex.flags, "--config", str(muted), "--against", url, cwd=tmp_path
        )
    assert against_older.returncode == 1, against_older.stdout + against_older.stderr
    assert against_older.stdout.count("+ mute integrations.yaml mutes[") == 2
    assert "0 to update, 0 to delete, 4 unchanged; mutes: 2 to add" in against_older.stdout
