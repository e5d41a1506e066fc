from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.configset import ConfigSet, load_config_set
from syncd.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

MINIMAL = """\
version: 1
integrations:
  - uid: {uid}
    project: checkout
    name: {uid}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: 1234567
          token: {{env: HIPCHAT_TOKEN}}
"""


def minimal(uid: str = "checkout-ops") -> str:
    return MINIMAL.format(uid=uid)


@pytest.fixture
def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ConfigSet]:
    """Write ``name: text`` pairs as files and validate them as one set."""

    def run(*files: tuple[str, str | bytes]) -> ConfigSet:
        for name, content in files:
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        return load_config_set([Path(".")])

    return run


def errors(config: ConfigSet) -> list[Diagnostic]:
    return [d for d in config.diagnostics if d.severity == "error"]


def run_syncd(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail the test after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)
