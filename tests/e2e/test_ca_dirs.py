"""``hipchat.tls.ca_file`` and token files: read as regular files only, and a CA
file only inside ``--ca-dir``. A FIFO once held the reconcile for ever, and
``/etc/shadow`` answered "holds no PEM certificates", telling a committer that
it exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from tests.support.cli import run_cli
from tests.support.configs import minimal, write_files
from tests.support.processes import run_syncd, spawn
from tests.support.waiting import wait_for

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def with_ca(tmp_path: Path, ca_file: str) -> Path:
    text = minimal("a").replace(
        "      rooms:", f"      tls: {{ca_file: {ca_file!r}}}\n      rooms:"
    )
    return write_files(tmp_path / "config", ("a.yaml", text))


def errors_of(stdout: str) -> list[str]:
    """Each diagnostic's message, after its place."""
    return [line.split(": ", 3)[3] for line in stdout.splitlines()]


def test_a_fifo_inside_a_ca_dir_is_an_error_at_once(tmp_path: Path) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    os.mkfifo(cas / "bundle.pem")
    config = with_ca(tmp_path, str(cas / "bundle.pem"))
    result = run_syncd("validate", str(config), "--ca-dir", str(cas), cwd=tmp_path)
    assert result.returncode == 1
    assert errors_of(result.stdout) == [
        f"{cas}/bundle.pem is a FIFO; a CA bundle is a regular file"
    ]


def test_a_ca_file_outside_the_ca_dirs_gets_one_answer_whether_or_not_it_exists(
    tmp_path: Path,
) -> None:
    cas, outside = tmp_path / "cas", tmp_path / "outside"
    cas.mkdir()
    outside.mkdir()
    trustme.CA().cert_pem.write_to_path(str(outside / "real.pem"))
    (cas / "link.pem").symlink_to("/etc/shadow")
    answers = {}
    for path in (
        "/etc/shadow",
        "/etc/no-such-file",
        str(outside / "real.pem"),
        str(outside / "missing.pem"),
        f"{cas}/../outside/real.pem",
        str(cas / "link.pem"),
    ):
        config = with_ca(tmp_path / path.replace("/", "_"), path)
        result = run_cli("validate", str(config), "--ca-dir", str(cas), cwd=tmp_path)
        (message,) = errors_of(result.stdout)
        answers[path] = message.replace(path, "PATH")
    assert set(answers.values()) == {f"PATH is not inside --ca-dir {cas}"}, answers


def test_the_default_ca_dirs_are_the_systems(tmp_path: Path) -> None:
    config = with_ca(tmp_path / "a", "/etc/shadow")
    result = run_cli("validate", str(config), cwd=tmp_path)
    assert errors_of(result.stdout) == [
        "/etc/shadow is not inside --ca-dir /etc/ssl, /etc/pki, /usr/local/share/ca-certificates"
    ]
    if SYSTEM_BUNDLE.is_file():
        config = with_ca(tmp_path / "b", str(SYSTEM_BUNDLE))
        assert run_cli("validate", str(config), cwd=tmp_path).returncode == 0


def test_a_bundle_inside_a_ca_dir_is_valid_and_checked(tmp_path: Path) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    trustme.CA().cert_pem.write_to_path(str(cas / "private.pem"))
    (cas / "alias.pem").symlink_to("private.pem")
    (cas / "notes.txt").write_text("not a certificate\n")
    for name in ("private.pem", "alias.pem"):
        config = with_ca(tmp_path / name, str(cas / name))
        result = run_cli("validate", str(config), "--ca-dir", str(cas), cwd=tmp_path)
        assert result.returncode == 0, result.stdout
    config = with_ca(tmp_path / "notes", str(cas / "notes.txt"))
    result = run_cli("validate", str(config), "--ca-dir", str(cas), cwd=tmp_path)
    assert errors_of(result.stdout) == [f"{cas}/notes.txt holds no PEM certificates"]


@pytest.mark.parametrize("kind", ["ca_file", "token_file"])
def test_a_fifo_never_holds_the_daemons_reconcile(tmp_path: Path, kind: str) -> None:
    fifos = tmp_path / "fifos"
    fifos.mkdir()
    os.mkfifo(fifos / "fifo")
    if kind == "ca_file":
        config = with_ca(tmp_path, str(fifos / "fifo"))
    else:
        text = minimal("a").replace("{env: HIPCHAT_TOKEN}", f"{{file: {fifos}/fifo}}")
        config = write_files(tmp_path / "config", ("a.yaml", text))
    flags = ("--ca-dir", str(fifos), "--secrets-dir", str(fifos))
    proc = spawn(config, tmp_path / "state", *flags, env={"HIPCHAT_TOKEN": "t0ken-fifo"})
    try:
        assert proc.popen.wait(timeout=30) == 1
    finally:
        proc.stop()
    wait_for(lambda: "no valid config" in proc.log, what="the refusal in the log")
    assert "is a FIFO" in proc.log
