"""What of a fetched commit's tree is written: the config discovery would read,
and nothing that could leave the checkout or run anything."""

from __future__ import annotations

import pytest

from syncd.config.discovery import ConfigFiles
from syncd.reconcile.gitcheckout import Entry, TreeRefused, parse_tree, select

OID = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def entry(path: str, mode: str = "100644", size: int = 10) -> Entry:
    return Entry(mode, OID, size, path)


def chosen(*entries: Entry, max_size: int = 1000, exclude: tuple[str, ...] = ()) -> list[str]:
    return [e.path for e in select(entries, ConfigFiles(exclude), max_size)]


def test_ls_tree_output_is_read_with_any_name() -> None:
    listing = (
        f"100644 blob {OID}      12\ta.yaml\0"
        f"120000 blob {OID}       11\tlink\0"
        f"160000 commit {OID}       -\tsub\0"
        f"100644 blob {OID}       3\tname with\ttab\nand newline.yaml\0"
    ).encode()
    assert parse_tree(listing) == [
        Entry("100644", OID, 12, "a.yaml"),
        Entry("120000", OID, 11, "link"),
        Entry("160000", OID, 0, "sub"),
        Entry("100644", OID, 3, "name with\ttab\nand newline.yaml"),
    ]


def test_only_the_files_discovery_reads_are_written() -> None:
    assert chosen(
        entry("a.yaml"),
        entry("team/b.yml", "100755"),
        entry("README.md"),
        entry(".hidden/c.yaml"),
        entry("build/d.yaml"),
        entry("tests/e.yaml"),
        exclude=("tests",),
    ) == ["a.yaml", "team/b.yml"]


@pytest.mark.parametrize("mode", ["120000", "160000"])
def test_a_link_or_submodule_is_passed_over_unless_config_would_be_there(mode: str) -> None:
    assert chosen(entry("a.yaml"), entry("docs", mode)) == ["a.yaml"]
    with pytest.raises(TreeRefused, match=r"b\.yaml is a"):
        chosen(entry("b.yaml", mode))


@pytest.mark.parametrize("path", ["../a.yaml", "a/../../b.yaml", "./a.yaml", "a//b.yaml", ""])
def test_a_name_that_leaves_the_directory_refuses_the_commit(path: str) -> None:
    with pytest.raises(TreeRefused, match="not a path a checkout can hold"):
        chosen(entry(path))


@pytest.mark.parametrize("path", [".git/config", ".GIT/hooks/x.yaml", "a/.Git/b.yaml"])
def test_git_s_own_directory_is_never_written(path: str) -> None:
    assert chosen(entry(path)) == []


def test_an_unknown_mode_refuses_the_commit() -> None:
    with pytest.raises(TreeRefused, match="unknown file mode 100666"):
        chosen(entry("a.yaml", "100666"))


def test_the_size_of_what_is_written_is_bounded() -> None:
    assert chosen(entry("a.yaml", size=600), entry("big.bin", size=10**9), max_size=1000)
    with pytest.raises(TreeRefused, match=r"over --git-max-size \(1000 bytes\)"):
        chosen(entry("a.yaml", size=600), entry("b.yaml", size=401), max_size=1000)


def test_paths_known_from_the_current_checkout_follow_the_same_rules() -> None:
    """The paths chosen for the current checkout are not asked of discovery again;
    what is chosen, and what refuses the commit, is as without them."""
    before = [entry("a.yaml"), entry("team/b.yml"), entry("c.yaml"), entry("README.md")]
    files = ConfigFiles(("c.yaml",))
    known = {e.path for e in select(before, files, 1000)}
    assert known == {"a.yaml", "team/b.yml"}
    after = [entry("a.yaml", size=400), entry("team/b.yml"), entry("d.yaml"), entry("x.md")]
    assert select(after, files, 1000, known) == select(after, files, 1000)
    for mode in ("120000", "160000", "100666"):
        with pytest.raises(TreeRefused, match=r"a\.yaml"):
            select([entry("a.yaml", mode)], files, 1000, known)
    with pytest.raises(TreeRefused, match="over --git-max-size"):
        select([entry("a.yaml", size=600), entry("team/b.yml", size=401)], files, 1000, known)
