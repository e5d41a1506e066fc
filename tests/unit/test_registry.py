"""The registry applies whole sets or nothing and keeps runtime state across updates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.configset import ConfigSet, load_config_set
from syncd.registry import Registry
from tests.support.configs import minimal


def load(tmp_path: Path, **files: str) -> ConfigSet:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return load_config_set([tmp_path])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token-one-abc")

    def set_env(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)

    return set_env


def test_apply_creates_then_keeps_unchanged_notifiers(
    tmp_path: Path, env: Callable[[str, str], None]
) -> None:
    registry = Registry(clock=lambda: 100.0)
    first = registry.apply(load(tmp_path, a=minimal("a"), b=minimal("b")), "r1")
    assert first.ok and first.plan and len(first.plan.create) == 2
    notifier_a = registry.snapshot.notifiers["a"]
    notifier_a.state.counters["sent"] = 7

    second = registry.apply(load(tmp_path, b=minimal("b") + "    state: disabled\n"), "r2")
    assert second.ok and second.plan
    assert [u.uid for u in second.plan.update] == ["b"]
    assert registry.snapshot.notifiers["a"] is notifier_a
    assert registry.snapshot.notifiers["b"].generation == 2
    assert registry.snapshot.revision == "r2"


def test_update_keeps_runtime_state(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    registry = Registry()
    registry.apply(load(tmp_path, a=minimal("a")), "r1")
    state = registry.snapshot.notifiers["a"].state
    state.counters["aggregated"] = 3
    registry.apply(load(tmp_path, a=minimal("a") + "    display: {callstack: false}\n"), "r2")
    updated = registry.snapshot.notifiers["a"]
    assert updated.integration.display.callstack is False
    assert updated.state is state
    assert updated.state.counters == {"aggregated": 3}


def test_delete_prunes(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    registry = Registry()
    registry.apply(load(tmp_path, a=minimal("a"), b=minimal("b")), "r1")
    (tmp_path / "b.yaml").unlink()
    outcome = registry.apply(load_config_set([tmp_path]), "r2")
    assert outcome.plan and [i.uid for i in outcome.plan.delete] == ["b"]
    assert list(registry.snapshot.notifiers) == ["a"]


def test_invalid_set_changes_nothing(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    registry = Registry(clock=lambda: 5.0)
    registry.apply(load(tmp_path, a=minimal("a")), "good")
    before = registry.snapshot
    bad = registry.apply(load(tmp_path, b=minimal("b").replace("1234567", "0")), "bad")
    assert not bad.ok
    assert registry.snapshot is before
    assert registry.last_failure is bad
    assert registry.last_success is not None and registry.last_success.revision == "good"
    assert [str(d) for d in bad.diagnostics] == [
        f"{tmp_path}/b.yaml:9:15: error: $.integrations[0].hipchat.rooms[0].id: "
        "0 is less than the minimum 1"
    ]


def test_missing_secret_rejects_the_whole_set(
    tmp_path: Path, env: Callable[[str, str], None]
) -> None:
    registry = Registry()
    registry.apply(load(tmp_path, a=minimal("a")), "good")
    before = registry.snapshot
    text = minimal("b").replace("HIPCHAT_TOKEN", "HIPCHAT_NOT_SET_ANYWHERE")
    outcome = registry.apply(load(tmp_path, b=text), "bad")
    assert not outcome.ok
    assert registry.snapshot is before
    (problem,) = outcome.diagnostics
    assert (problem.file, problem.line, problem.col) == (f"{tmp_path}/b.yaml", 10, 18)
    assert problem.path == "$.integrations[0].hipchat.rooms[0].token"
    assert "HIPCHAT_NOT_SET_ANYWHERE is not set" in problem.message


def test_rotated_token_is_an_update_that_keeps_state(
    tmp_path: Path, env: Callable[[str, str], None]
) -> None:
    registry = Registry()
    config = load(tmp_path, a=minimal("a"))
    registry.apply(config, "r1")
    state = registry.snapshot.notifiers["a"].state
    env("HIPCHAT_TOKEN", "token-two-xyz")
    outcome = registry.apply(config, "r1")
    assert outcome.plan and [u.uid for u in outcome.plan.update] == ["a"]
    notifier = registry.snapshot.notifiers["a"]
    assert notifier.tokens == {"1234567": "token-two-xyz"}
    assert notifier.state is state
    assert "token-two-xyz" not in repr(notifier)


def test_listeners_see_the_plan(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    seen: list[str] = []
    registry = Registry(listeners=[lambda plan, snap: seen.append(plan.summary())])
    registry.apply(load(tmp_path, a=minimal("a")), "r1")
    assert seen == ["1 to create, 0 to update, 0 to delete, 0 unchanged"]
