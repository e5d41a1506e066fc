"""A plain ``pip install .`` in a fresh virtualenv carries everything syncd needs."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

from syncd import __version__
from tests.support.configs import minimal
from tests.support.paths import ROOT


@pytest.mark.slow
def test_wheel_install_validates_from_another_directory(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "a.yaml").write_text(minimal("a"))
    (work / "b.yaml").write_text(minimal("b") + "    state: paused\n")
    result = subprocess.run(
        [str(env_dir / "bin" / "syncd"), "validate"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        "b.yaml:11:12: error: $.integrations[0].state: 'paused' is not one of: "
        "enabled, disabled, stopped\n"
    )
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import syncd.config.schema as s, importlib.resources as r; "
            "print(r.files('syncd').joinpath('schemas', s.INTEGRATIONS.name))",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where
    assert not Path(where).is_symlink()
    syncd = str(env_dir / "bin" / "syncd")
    # The by-hand tour needs no checkout: its config ships in the package.
    subprocess.run([syncd, "demo", "--write-tour", "tour"], cwd=work, check=True, timeout=60)
    shipped = (ROOT / "examples" / "tour" / "tour.yaml").read_text()
    assert (work / "tour" / "tour.yaml").read_text() == shipped
    # One version, written once, is what the package and the command say.
    version = subprocess.run([syncd, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == f"syncd {__version__}\n"
    files = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(*m.files('syncd'))"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), files
