"""Nothing from outside the config directory is read, or shown."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.configs import minimal

SECRET_LINES = "".join(f"db_password_{n}: hunter{n}\n" for n in range(40))


def test_a_file_linked_from_outside_is_named_and_never_shown(tmp_path: Path) -> None:
    outside = tmp_path / "etc" / "secrets.yaml"
    outside.parent.mkdir()
    outside.write_text(SECRET_LINES)
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    (config / "leak.yaml").symlink_to(outside)
    result = run_cli("validate", str(config), cwd=tmp_path, env={"HIPCHAT_TOKEN": "t"})
    assert result.returncode == 1
    assert result.stdout == (
        f"{config}/leak.yaml:1:1: error: a symlink to a file outside the config directory; "
        "it is not read\n"
    )
    assert "hunter" not in result.stdout + result.stderr


def test_a_link_inside_the_config_directory_is_followed(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "..2026_11_28").mkdir(parents=True)
    (config / "..2026_11_28" / "a.yaml").write_text(minimal("a"))
    (config / "..data").symlink_to("..2026_11_28")
    (config / "a.yaml").symlink_to("..data/a.yaml")
    result = run_cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "syncd: valid (1 file checked)\n"


def test_a_directory_link_to_the_filesystem_root_is_not_walked(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    (config / "everything").symlink_to("/")
    result = run_cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_fifo_and_a_name_that_is_not_utf8_are_errors_not_hangs(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(minimal("a"))
    os.mkfifo(config / "x.yaml")
    (config / os.fsdecode(b"caf\xe9.yaml")).write_text(minimal("b"))
    result = run_cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == (
        f"{config}/caf\\xe9.yaml:1:1: error: the file name is not UTF-8; rename the file\n"
        f"{config}/x.yaml:1:1: error: is a FIFO; only regular files are read\n"
    )
    assert "Traceback" not in result.stderr
