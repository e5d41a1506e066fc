"""Which files are config: ``--exclude`` globs and the directories never entered.

One rule (``ConfigFiles``) serves discovery, the daemon's file cache and its
watcher, so it is tested here on paths alone, and on a tree for discovery.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from syncd.config.discovery import ConfigFiles, discover
from syncd.reconcile.pathfilter import relevant_to
from tests.support.configs import write_files


@pytest.mark.parametrize(
    ("glob", "path", "excluded"),
    [
        # A glob with a directory part excludes everything below what it matches.
        ("tests/*", "tests/a.yaml", True),
        ("tests/*", "tests/a/b.yaml", True),
        ("tests/*", "tests.yaml", False),
        ("tests/**", "tests/a.yaml", True),
        ("tests/**", "tests/a/b/c.yaml", True),
        ("tests/**", "a.yaml", False),
        ("team/**/k8s.yaml", "team/k8s.yaml", True),
        ("team/**/k8s.yaml", "team/a/b/k8s.yaml", True),
        ("team/**/k8s.yaml", "team/a/b/other.yaml", False),
        ("**/k8s.yaml", "a/b/k8s.yaml", True),
        # It matches at any depth, as the README has it (deploy/* from the right)...
        ("deploy/*", "deploy/k8s.yaml", True),
        ("deploy/*", "other/deploy/k8s.yaml", True),
        ("deploy/*", "deployment/k8s.yaml", False),
        ("tests/**", "other/tests/a.yaml", True),
        # ...unless it starts with '/': then only from the directory checked.
        ("/tests/**", "other/tests/a.yaml", False),
        ("/tests/*", "tests/a/b.yaml", True),
        # Without '/', a name: the file's or any directory's on the way.
        ("*.values.yaml", "chart.values.yaml", True),
        ("*.values.yaml", "team/chart.values.yaml", True),
        ("*.values.yaml", "values.yaml", False),
        ("deploy", "team/deploy/k8s.yaml", True),
        ("deploy.yaml", "team/deploy.yaml", True),
        # A trailing '/' matches directories only.
        ("deploy/", "deploy/k8s.yaml", True),
        ("a.yaml/", "a.yaml", False),
        # '*' and '?' stay within a name; case counts.
        ("tests*yaml", "tests/a.yaml", False),
        ("t?sts/*", "tests/a.yaml", True),
        ("[!t]*/a.yaml", "x/a.yaml", True),
        ("Deploy/*", "deploy/k8s.yaml", False),
        ("", "a.yaml", False),
    ],
)
def test_exclude_globs(glob: str, path: str, excluded: bool) -> None:
    files = ConfigFiles(exclude=(glob,))
    assert files.holds(PurePosixPath(path)) is not excluded
    assert relevant_to(files)(path, is_directory=False) is not excluded


@pytest.mark.parametrize(
    "name",
    ["build", "dist", "venv", "node_modules", "__pycache__", "site-packages", ".venv", ".tox"],
)
def test_build_and_environment_directories_are_not_entered(name: str) -> None:
    files = ConfigFiles()
    assert not files.enters(name)
    assert not files.holds(PurePosixPath(name, "lib", "integrations.yaml"))
    assert not relevant_to(files)(f"{name}/a.yaml", is_directory=False)


@pytest.mark.parametrize("name", ["team", "builds", "distribution", "rebuild"])
def test_other_directories_are_entered(name: str) -> None:
    assert ConfigFiles().enters(name)


def test_a_build_copy_is_read_only_when_named(tmp_path: Path) -> None:
    """``pip install .`` leaves a copy of the checkout's YAML under build/: it must not
    clash with the originals, but a path given on the command line is read."""
    write_files(
        tmp_path,
        ("integrations/a.yaml", "a: 1\n"),
        ("build/lib/integrations/a.yaml", "a: 1\n"),
        ("dist/a.yaml", "a: 1\n"),
        ("node_modules/pkg/action.yml", "a: 1\n"),
        ("venv/lib/site-packages/pkg/a.yaml", "a: 1\n"),
    )
    assert discover([tmp_path]) == [tmp_path / "integrations" / "a.yaml"]
    assert discover([tmp_path / "build"]) == [tmp_path / "build/lib/integrations/a.yaml"]
    assert discover([tmp_path / "dist" / "a.yaml"]) == [tmp_path / "dist" / "a.yaml"]


def test_exclude_applies_below_the_directory_given(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        ("a.yaml", "a: 1\n"),
        ("tests/b.yaml", "a: 1\n"),
        ("tests/nested/c.yaml", "a: 1\n"),
    )
    assert discover([tmp_path], ConfigFiles(exclude=("tests/*",))) == [tmp_path / "a.yaml"]
