"""Each HipChat server gets a share of the workers, and rests as a whole when it is down;
a server is its addresses, however its endpoints write it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from syncd.config.configset import load_config_set
from syncd.config.reach import Reach
from syncd.config.semantics import Options
from syncd.delivery.servers import (
    FORGET_AFTER,
    ServerAddresses,
    Servers,
    address_of,
    server_of,
)
from syncd.hipchat.wire import DeliveryResult
from syncd.registry import Registry, Snapshot
from tests.support.configs import minimal

UP = "https://hipchat.example.com"
OTHER = "https://chat.example.org:8443"
DNS = {
    "hipchat.example.com": ["192.0.2.10"],
    "chat.example.org": ["198.51.100.7", "2001:db8::7"],
    "alias.example.net": ["198.51.100.7"],
    "localhost": ["::1", "127.0.0.1"],
}


class Resolver:
    """A DNS that answers from a table and counts the questions."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(DNS if table is None else table)
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return self.table.get(host, [])


def servers(per_server: int, resolver: Resolver | None = None, refresh: float = 60.0) -> Servers:
    return Servers(per_server, ServerAddresses(resolver or Resolver(), refresh))


def registry_of(tmp_path: Path, endpoints: dict[str, str]) -> Snapshot:
    for uid, endpoint in endpoints.items():
        (tmp_path / f"{uid}.yaml").write_text(minimal(uid).replace(UP, endpoint))
    registry = Registry()
    options = Options(reach=Reach(allow_http=True))
    assert registry.apply(load_config_set([tmp_path], options), "r1").ok
    return registry.snapshot


@pytest.fixture
def snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token-for-the-server-tests")
    return registry_of(tmp_path, {"a": UP, "b": OTHER + "/"})


def test_a_server_is_scheme_host_and_a_port_written_one_way() -> None:
    assert server_of("HTTPS://HipChat.example.com/some/path") == "https://hipchat.example.com:443"
    assert server_of(OTHER + "/") == OTHER
    assert server_of("https://hipchat.example.com.:0443/v2") == "https://hipchat.example.com:443"
    assert server_of("http://[2001:DB8::1]:080") == "http://[2001:db8::1]:80"


def test_every_loopback_and_unspecified_address_is_this_machine() -> None:
    local = {address_of(a, 8080) for a in ("127.0.0.1", "127.0.1.1", "::1", "0.0.0.0", "::")}
    assert local == {"local:8080"}
    assert address_of("::ffff:192.0.2.1", 443) == "192.0.2.1:443"
    assert address_of("2001:db8:0::1", 443) == "[2001:db8::1]:443"


def test_a_full_server_is_passed_over_until_a_slot_is_free(snapshot: Snapshot) -> None:
    shares = servers(per_server=2)
    up = server_of(UP)
    assert shares.take(up, 0.0) and shares.take(up, 0.0)
    assert not shares.take(up, 0.0)
    assert shares.skip(snapshot, 0.0) == {"a"}
    assert shares.give_back(up)  # it was full: wake a worker
    assert shares.skip(snapshot, 0.0) == frozenset()
    shares.drained()  # a claim found nothing waiting
    assert not shares.give_back(up)


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
    shares = servers(per_server=4)
    up = server_of(UP)
    shares.outcome(up, result, retry_at=105.0)
    assert shares.skip(snapshot, 100.0) == ({"a"} if rests else frozenset())
    assert shares.take(up, 100.0) is not rests
    assert shares.rest_ends(100.0) == (105.0 if rests else None)
    assert shares.skip(snapshot, 105.0) == frozenset()  # the rest is over: try again


def test_a_success_ends_the_rest(snapshot: Snapshot) -> None:
    shares = servers(per_server=4)
    up = server_of(UP)
    shares.outcome(up, DeliveryResult("retry", 503, "HTTP 503", retry_after=60), 160.0)
    shares.outcome(up, DeliveryResult("delivered", 204, "ok"), 0.0)
    assert shares.skip(snapshot, 100.0) == frozenset()


ALIASES = (
    "http://127.0.0.1:8080",
    "http://localhost:8080",
    "http://127.0.0.1:08080/",
    "http://LOCALHOST.:8080",
    "http://[::1]:8080",
    "http://0.0.0.0:8080",
)


def test_every_way_of_writing_one_server_shares_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token-for-the-server-tests")
    uids = {f"alias{n}": endpoint for n, endpoint in enumerate(ALIASES)}
    snapshot = registry_of(tmp_path, {**uids, "legit": "http://192.0.2.80:8080"})
    shares = servers(per_server=3)
    taken = [shares.take(server_of(e), 0.0) for e in ALIASES]
    assert taken == [True, True, True, False, False, False]
    assert shares.skip(snapshot, 0.0) == set(uids)
    assert shares.take(server_of("http://192.0.2.80:8080"), 0.0)
    # Another port of the same machine is another server.
    assert shares.take(server_of("http://127.0.0.1:8081"), 0.0)


def test_a_second_name_of_an_address_and_a_name_with_several_share_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIPCHAT_TOKEN", "token-for-the-server-tests")
    snapshot = registry_of(
        tmp_path,
        {
            "a": "https://alias.example.net:8443",
            "b": OTHER,
            "c": "https://[2001:db8::7]:8443",
        },
    )
    shares = servers(per_server=2)
    assert shares.take(server_of(OTHER), 0.0)  # counts against both its addresses
    assert shares.take(server_of("https://alias.example.net:8443"), 0.0)
    assert shares.skip(snapshot, 0.0) == {"a", "b"}  # 198.51.100.7 is full
    assert shares.take(server_of("https://[2001:db8::7]:8443"), 0.0)
    assert shares.skip(snapshot, 0.0) == {"a", "b", "c"}
    shares.outcome(
        server_of("https://alias.example.net:8443"),
        DeliveryResult("retry", 503, "HTTP 503", retry_after=5),
        5.0,
    )
    assert shares.give_back(server_of("https://alias.example.net:8443"))
    assert shares.skip(snapshot, 1.0) == {"a", "b", "c"}  # resting, though not full


def test_names_are_looked_up_once_per_refresh_not_per_send() -> None:
    resolver = Resolver()
    shares = servers(per_server=100, resolver=resolver, refresh=60.0)
    up = server_of(UP)
    for n in range(50):
        assert shares.take(up, float(n))
        shares.give_back(up)
    assert shares.take(server_of("http://127.0.0.1:8080"), 0.0)  # an address: no question
    assert resolver.asked == ["hipchat.example.com"]
    resolver.table["hipchat.example.com"] = ["192.0.2.99"]
    assert shares.take(up, 61.0)
    assert resolver.asked == ["hipchat.example.com"] * 2
    assert shares.addresses.current(up) == frozenset({"192.0.2.99:443"})


def test_a_slot_taken_before_a_name_moved_is_given_back_where_it_was_taken() -> None:
    resolver = Resolver()
    shares = servers(per_server=1, resolver=resolver, refresh=60.0)
    up = server_of(UP)
    assert shares.take(up, 0.0)  # counted against 192.0.2.10
    resolver.table["hipchat.example.com"] = ["192.0.2.99"]
    assert shares.take(up, 61.0)  # the name moved: 192.0.2.99 has a free slot
    assert shares.give_back(up) and shares.give_back(up)
    assert shares.take(server_of("https://192.0.2.10"), 62.0)
    assert shares.take(up, 62.0)


def test_a_name_that_does_not_resolve_is_its_own_server() -> None:
    resolver = Resolver({})
    shares = servers(per_server=1, resolver=resolver)
    assert shares.take(server_of("https://nowhere.invalid"), 0.0)
    assert not shares.take(server_of("https://NOWHERE.invalid:443/"), 0.0)
    assert shares.take(server_of("https://elsewhere.invalid"), 0.0)
    assert resolver.asked == ["nowhere.invalid", "elsewhere.invalid"]


def test_servers_no_longer_sent_to_are_forgotten_past_a_bound() -> None:
    resolver = Resolver({})
    addresses = ServerAddresses(resolver, refresh=60.0)
    for n in range(FORGET_AFTER):
        addresses.key(f"https://old-{n}.invalid:443", 0.0)
    addresses.key("https://new.invalid:443", 100.0)  # the old ones are a period stale
    assert [server for server, _ in addresses.known()] == ["https://new.invalid:443"]
