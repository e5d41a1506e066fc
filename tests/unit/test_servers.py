"""Each HipChat server gets a share of the workers, and rests as a whole when it is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.delivery.servers import Servers, server_of
from syncd.hipchat.wire import DeliveryResult
from syncd.registry import Registry, Snapshot
from tests.support.configs import minimal

UP = "https://hipchat.example.com"
OTHER = "https://chat.example.org:8443"


@pytest.fixture
def snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token-for-the-server-tests")
    (tmp_path / "a.yaml").write_text(minimal("a"))
    (tmp_path / "b.yaml").write_text(minimal("b").replace(UP, OTHER + "/"))
    registry = Registry()
    assert registry.apply(load_config_set([tmp_path]), "r1").ok
    return registry.snapshot


def test_a_server_is_scheme_host_and_port() -> None:
    assert server_of("HTTPS://HipChat.example.com/some/path") == "https://hipchat.example.com"
    assert server_of(OTHER + "/") == OTHER


def test_a_full_server_is_passed_over_until_a_slot_is_free(snapshot: Snapshot) -> None:
    servers = Servers(per_server=2)
    assert servers.take(UP, 0.0) and servers.take(UP, 0.0)
    assert not servers.take(UP, 0.0)
    assert servers.skip(snapshot, 0.0) == {"a"}
    assert servers.give_back(UP)  # it was full: wake a worker
    assert servers.skip(snapshot, 0.0) == frozenset()
    assert not servers.give_back(UP)


@pytest.mark.parametrize(
    ("result", "rests"),
    [
        (DeliveryResult("retry", None, "ConnectionError", retry_after=5), True),
        (DeliveryResult("retry", 503, "HTTP 503", retry_after=5), True),
        (DeliveryResult("retry", 502, "HTTP 502", retry_after=5), True),
        (DeliveryResult("retry", 500, "HTTP 500", retry_after=5), False),
        (DeliveryResult("retry", 429, "HTTP 429", retry_after=5, rate_limited=True), False),
        (DeliveryResult("permanent", 404, "HTTP 404"), False),
    ],
)
def test_a_server_that_is_down_rests_for_every_room(
    snapshot: Snapshot, result: DeliveryResult, rests: bool
) -> None:
    servers = Servers(per_server=4)
    servers.outcome(UP, result, retry_at=105.0)
    assert servers.skip(snapshot, 100.0) == ({"a"} if rests else frozenset())
    assert servers.take(UP, 100.0) is not rests
    assert servers.rest_ends(100.0) == (105.0 if rests else None)
    assert servers.skip(snapshot, 105.0) == frozenset()  # the rest is over: try again


def test_a_success_ends_the_rest(snapshot: Snapshot) -> None:
    servers = Servers(per_server=4)
    servers.outcome(UP, DeliveryResult("retry", 503, "HTTP 503", retry_after=60), 160.0)
    servers.outcome(UP, DeliveryResult("delivered", 204, "ok"), 0.0)
    assert servers.skip(snapshot, 100.0) == frozenset()
