"""Fixtures shared by every kind of test; the helpers they use live in tests.support."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from syncd.config.configset import ConfigSet, load_config_set
from tests.support.configs import write_files
from tests.support.gitrepo import GitRepo, make_repo


@pytest.fixture
def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ConfigSet]:
    """Write ``name: text`` pairs as files and validate them as one set."""

    def run(*files: tuple[str, str | bytes]) -> ConfigSet:
        write_files(tmp_path, *files)
        monkeypatch.chdir(tmp_path)
        return load_config_set([Path(".")])

    return run


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """A fresh repository on branch main, with the user's git config kept out."""
    return make_repo(tmp_path / "repo")


KINDS = ("unit", "integration", "e2e", "reliability")


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A CA of the test's own, and its certificate as a PEM file."""
    ca = trustme.CA()
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its kind, from its directory; reliability runs are slow."""
    for item in items:
        kind = next((k for k in KINDS if f"/tests/{k}/" in str(item.path)), None)
        if kind is not None:
            item.add_marker(kind)
        if kind == "reliability":
            item.add_marker(pytest.mark.slow)
