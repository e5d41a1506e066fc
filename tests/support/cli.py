"""``syncd`` run in this process, for tests of what a command prints and returns.

A subprocess adds an interpreter's start-up and nothing else to such a test;
where the process itself is the point (signals, exit on a fatal error,
packaging, pre-commit) tests use ``processes.run_syncd`` instead. Same
arguments and the same result type as that, so a test can use either.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from syncd.cli import main


@contextmanager
def _environment(cwd: Path, env: dict[str, str] | None) -> Iterator[None]:
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.pop("GITHUB_ACTIONS", None)
    os.environ.update(env or {})
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    with _environment(cwd, env), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["syncd", *args], code, out.getvalue(), err.getvalue())
