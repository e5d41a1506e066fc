"""The registry applies whole sets or nothing; an update keeps what delivery learnt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.filecache import ConfigLoader
from syncd.delivery.health import RoomHealthBook
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

    second = registry.apply(load(tmp_path, b=minimal("b") + "    state: disabled\n"), "r2")
    assert second.ok and second.plan
    assert [u.uid for u in second.plan.update] == ["b"]
    assert registry.snapshot.notifiers["a"] is notifier_a
    assert registry.snapshot.notifiers["b"].generation == 2
    assert registry.snapshot.revision == "r2"


def test_an_update_keeps_its_rooms_health(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    health = RoomHealthBook()
    registry = Registry(listeners=[health.on_applied])
    registry.apply(load(tmp_path, a=minimal("a")), "r1")
    health.failed("a", "1234567", 1.0, "HTTP 404 Not Found", permanent=True)
    registry.apply(load(tmp_path, a=minimal("a") + "    display: {callstack: false}\n"), "r2")
    updated = registry.snapshot.notifiers["a"]
    assert updated.integration.display.callstack is False
    assert updated.generation == 2
    assert not health.of("a", "1234567").healthy


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
    health = RoomHealthBook()
    registry = Registry(listeners=[health.on_applied])
    config = load(tmp_path, a=minimal("a"))
    registry.apply(config, "r1")
    health.failed("a", "1234567", 1.0, "HTTP 401 Unauthorized", permanent=True)
    env("HIPCHAT_TOKEN", "token-two-xyz")
    outcome = registry.apply(config, "r1")
    assert outcome.plan and [u.uid for u in outcome.plan.update] == ["a"]
    notifier = registry.snapshot.notifiers["a"]
    assert notifier.tokens == {"1234567": "token-two-xyz"}
    assert not health.of("a", "1234567").healthy
    assert "token-two-xyz" not in repr(notifier) + repr(registry.snapshot)


def test_listeners_see_the_plan(tmp_path: Path, env: Callable[[str, str], None]) -> None:
    seen: list[str] = []
    registry = Registry(listeners=[lambda plan, snap: seen.append(plan.summary())])
    registry.apply(load(tmp_path, a=minimal("a")), "r1")
    assert seen == ["1 to create, 0 to update, 0 to delete, 0 unchanged"]


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "delete", "rotate"]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.sampled_from(["a", "b", "c", "d", "dup", "broken", "stopped"]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_named_changes_serve_what_a_full_apply_serves(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str]]
) -> None:
    """One registry fed the loader's changes (the daemon after a file event), one
    given every file each time (a fresh start): after each step they serve the
    same notifiers, in the same order, with the same tokens; a rotated token
    reaches the first only with the file that names it, as documented. Each
    set's log redaction, changed from the last set's by what the step touched,
    masks that set's tokens (shared by files, rotated, dropped), no others."""
    root = tmp_path_factory.mktemp("config")
    loader = ConfigLoader()
    fast, full = Registry(), Registry()
    with pytest.MonkeyPatch.context() as patch:
        for name in "abcd":
            patch.setenv(f"HIPCHAT_TOKEN_{name}", "token-zero")
        fast.apply(loader.load([root]), "r0")
        for number, (kind, name, what) in enumerate(steps):
            path = root / f"{name}.yaml"
            if kind == "write":
                path.write_text(_text(name, what))
            elif kind == "delete":
                path.unlink(missing_ok=True)
            else:
                # The token the file names, rotated with an edit of the file.
                patch.setenv(f"HIPCHAT_TOKEN_{name}", f"token-{number}")
                if path.exists():
                    path.write_text(path.read_text() + f"# rotated {number}\n")
            config = loader.load([root], changed=[path.name])
            fast_outcome = fast.apply(config, f"r{number}", reuse_tokens=True)
            full_outcome = full.apply(load_config_set([root]), f"r{number}")
            assert fast_outcome.ok == full_outcome.ok
            served = {
                u: (n.integration, dict(n.tokens)) for u, n in fast.snapshot.notifiers.items()
            }
            wanted = {
                u: (n.integration, dict(n.tokens)) for u, n in full.snapshot.notifiers.items()
            }
            assert list(served) == list(wanted)
            assert served == wanted
            tokens = {"token-zero", *(f"token-{n}" for n in range(number + 1))}
            for registry in (fast, full):
                notifiers = registry.snapshot.notifiers.values()
                held = {t for n in notifiers for t in n.tokens.values()}
                masked = {t for t in tokens if registry.snapshot.redactor.redact(t) == "***"}
                assert masked == held & tokens, "the log masks the set's tokens, no others"


def _text(name: str, what: str) -> str:
    """The file ``name``: broken, or one integration whose token is the file's own."""
    if what == "broken":
        return "version: 1\nintegrations: [\n"
    uid = {"dup": "a", "stopped": name}.get(what, what)
    text = minimal(uid).replace("HIPCHAT_TOKEN", f"HIPCHAT_TOKEN_{name}")
    return text + ("    state: stopped\n" if what == "stopped" else "")


def test_a_reader_that_sees_a_new_set_sees_the_attempt_that_applied_it(
    tmp_path: Path, env: Callable[[str, str], None]
) -> None:
    """/status reads the set, then the last attempt: once the new set can be seen,
    the attempt must be the one that applied it, not the failure before it."""
    registry = Registry()
    seen: list[tuple[str, object]] = []
    registry.add_watcher(lambda snapshot: seen.append((snapshot.revision, registry.last_attempt)))
    registry.apply(load(tmp_path, a=minimal("a")), "good")
    registry.apply(load(tmp_path, b=minimal("b").replace("1234567", "0")), "bad")
    registry.apply(load(tmp_path, b=minimal("b")), "fixed")
    assert [(revision, getattr(attempt, "revision", None)) for revision, attempt in seen] == [
        ("good", "good"),
        ("fixed", "fixed"),
    ]
    assert registry.last_failure is not None and registry.failures == 1
    restored = registry.restore(load(tmp_path, b=minimal("b") + "    state: disabled\n"), "saved")
    assert restored.ok and registry.last_attempt is not None
    assert registry.last_attempt.revision == "fixed"  # a restore is not an attempt
