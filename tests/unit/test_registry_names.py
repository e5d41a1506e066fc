"""A problem the registry finds itself (a token that does not resolve) names its
file as the set's source does, like the loader's problems before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.reconcile.gitcheckout import RepoNames
from syncd.registry import Registry
from tests.support.configs import minimal


def test_a_token_that_does_not_resolve_is_named_by_the_relabel_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIPCHAT_TOKEN", raising=False)
    checkout = tmp_path / "state" / "git" / "current"
    (checkout / "teams").mkdir(parents=True)
    (checkout / "teams" / "a.yaml").write_text(minimal("a"))
    config = load_config_set([checkout])
    named = Registry(relabel=RepoNames(checkout, "integrations").relabel).apply(config, "r1")
    plain = Registry().apply(config, "r1")
    assert not named.ok and not plain.ok
    assert [d.file for d in named.diagnostics] == ["integrations/teams/a.yaml"]
    assert "HIPCHAT_TOKEN" in named.diagnostics[0].message
    assert str(tmp_path) not in str(named.diagnostics[0])
    assert [d.file for d in plain.diagnostics] == [str(checkout / "teams" / "a.yaml")]
