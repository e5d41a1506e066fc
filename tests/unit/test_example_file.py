"""Every comment of examples/integrations.yaml, as a case: what it says is what happens."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.config.configset import ConfigSet, load_config_set
from syncd.config.model import Integration
from syncd.events.routing import Routing, judge, route_event
from syncd.hipchat.render import render_message
from syncd.store.contract import Window
from tests.support.paths import ROOT

NOW = 1_000_000.0


@pytest.fixture(scope="module")
def example() -> ConfigSet:
    config = load_config_set([ROOT / "examples" / "integrations.yaml"])
    assert config.valid, [str(d) for d in config.diagnostics]
    return config


def of(config: ConfigSet, project: str) -> list[Integration]:
    return [i for i in config.integrations if i.project == project]


def event(project: str, fingerprint: str = "fp", **attributes: str) -> dict[str, Any]:
    return {
        "project": project,
        "fingerprint": fingerprint,
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": ["KeyError"],
        "callstack": ["charge() at pay.py:42"],
        "attributes": attributes,
    }


def route(
    integrations: list[Integration],
    evt: dict[str, Any],
    *,
    new_group: bool = True,
    windows: dict[str, Window] | None = None,
) -> Routing:
    judged = judge(evt, integrations)
    return route_event(evt, judged, new_group=new_group, windows=windows or {}, now=NOW)


def test_checkout_every_new_error_group_goes_to_the_ops_room_red_and_loud(
    example: ConfigSet,
) -> None:
    checkout = of(example, "checkout")
    routed = route(checkout, event("checkout", environment="production"))
    assert [(i.uid, i.room_id, i.mentions) for i in routed.items] == [
        ("checkout-ops", "1234567", ()),
        ("checkout-ops", "Checkout War Room", ()),
    ]
    message = render_message(routed.items[0].event, checkout[0])
    assert (message.color, message.notify) == ("red", True)
    assert route(checkout, event("checkout"), new_group=False).items == ()


def test_checkout_payment_errors_mention_the_payments_team(example: ConfigSet) -> None:
    checkout = of(example, "checkout")
    routed = route(checkout, event("checkout", team="payments"))
    assert {i.mentions for i in routed.items} == {("@payments",)}
    message = render_message(routed.items[0].event, checkout[0], ["@payments"])
    assert message.text.startswith("@payments")


def test_checkout_errors_from_staging_are_dropped_even_for_payments(example: ConfigSet) -> None:
    checkout = of(example, "checkout")
    for attributes in ({"environment": "staging"}, {"environment": "staging", "team": "payments"}):
        routed = route(checkout, event("checkout", **attributes))
        assert routed.items == ()
        assert routed.notes == ("checkout-ops: filtered by actions[1]",)


def test_search_a_quiet_digest_of_nyc_errors_per_fingerprint_without_callstack(
    example: ConfigSet,
) -> None:
    search = of(example, "search")
    assert route(search, event("search", datacenter="sfo")).items == ()
    first = route(search, event("search", "fp-1", datacenter="nyc"))
    assert len(first.items) == 1
    sent = Window(last_sent=NOW - 60)
    again = route(
        search,
        event("search", "fp-1", datacenter="nyc"),
        windows={
            "search-digest\0fp-1": sent,
        },
    )
    assert again.items == () and again.notes[0].startswith("search-digest: throttled until")
    other = route(
        search,
        event("search", "fp-2", datacenter="nyc"),
        windows={
            "search-digest\0fp-1": sent,
        },
    )
    assert len(other.items) == 1
    text = render_message(first.items[0].event, search[0]).text
    assert "pay.py" not in text and "KeyError" in text


def test_billing_stopped_queues_and_disabled_queues_nothing(example: ConfigSet) -> None:
    routed = route(of(example, "billing"), event("billing"))
    assert {i.uid for i in routed.items} == {"billing-alerts"}
    assert routed.notes == (
        "billing-alerts: queued for 2 room(s), held while stopped",
        "billing-legacy: disabled, nothing is queued",
    )
