"""The application card: what it takes from the event, under the display settings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from syncd.config.model import Display, HipChat, Integration, Room
from syncd.config.secrets import SecretRef
from syncd.hipchat.card import render_card
from syncd.hipchat.render import render_message
from syncd.testing.hipchat_contract import mentions

HIPCHAT = HipChat(
    endpoint="https://hipchat.example.com",
    rooms=(Room("1", SecretRef("env", "HIPCHAT_TOKEN")),),
    card=True,
)
OPS = Integration(uid="ops", project="shop", name="ops", hipchat=HIPCHAT)


def event(**fields: Any) -> dict[str, Any]:
    return {
        "id": "e-1",
        "project": "shop",
        "fingerprint": "fp-9",
        "timestamp": "2026-11-26T12:00:00Z",
        "classifiers": ["KeyError", "Other"],
        "callstack": ["charge() at pay.py:42", "main() at app.py:1"],
        "attributes": {"version": "1.2", "team": "payments", "long": "v" * 80},
        "hostname": "web-1",
        "href": "https://errors.example.com/e/1",
        **fields,
    }


def test_an_application_card_from_the_event() -> None:
    card = render_card(event(), OPS)
    assert card == {
        "style": "application",
        "format": "medium",
        "id": "e-1",
        "title": "KeyError in shop: fp-9",
        "description": {"value": "charge() at pay.py:42", "format": "text"},
        "url": "https://errors.example.com/e/1",
        "attributes": [
            {"label": "version", "value": {"label": "1.2"}},
            {"label": "team", "value": {"label": "payments"}},
            {"label": "long", "value": {"label": "v" * 49 + "…"}},
            {"label": "hostname", "value": {"label": "web-1"}},
        ],
    }


def test_the_card_shows_the_hostname_as_the_message_does() -> None:
    def labels(display: Display, **fields: Any) -> list[tuple[str, str]]:
        card = render_card(event(**fields), replace(OPS, display=display))
        return [(a["label"], a["value"]["label"]) for a in card.get("attributes", [])]

    assert labels(Display(attributes=False)) == []
    assert labels(Display(attribute_list=("team",))) == [("team", "payments")]
    assert labels(Display(attribute_list=("hostname", "team"))) == [
        ("hostname", "web-1"),
        ("team", "payments"),
    ]
    named = {"hostname": "web-3", "team": "payments"}
    assert labels(Display(), attributes=named) == [("hostname", "web-3"), ("team", "payments")]
    assert labels(Display(include_hostname=False), attributes=named) == [("team", "payments")]


def test_the_display_settings_and_attribute_list_apply() -> None:
    quiet = replace(
        OPS,
        display=Display(
            classifiers=False, callstack=False, attribute_list=("team",), include_hostname=False
        ),
    )
    card = render_card(event(href="javascript:alert(1)"), quiet)
    assert card["title"] == "Error in shop: fp-9"
    assert card["description"] == {"value": "fingerprint fp-9", "format": "text"}
    assert card["attributes"] == [{"label": "team", "value": {"label": "payments"}}]
    assert "url" not in card
    bare = replace(OPS, display=Display(attributes=False, include_hostname=False))
    assert "attributes" not in render_card(event(), bare)


def test_the_message_carries_the_card_and_stays_the_fallback() -> None:
    message = render_message(event(), OPS)
    assert message.card is not None and message.card["id"] == "e-1"
    assert message.text.startswith("<b>Error in shop: KeyError</b>")
    assert render_message(event(), replace(OPS, hipchat=replace(HIPCHAT, card=False))).card is None


def test_no_text_of_the_event_mentions_anyone_on_the_card() -> None:
    says = "@all @here @name"
    hostile = event(
        project=says,
        fingerprint=says,
        classifiers=[says],
        callstack=[says],
        attributes={says: says, "@here": "@all"},
        hostname=says,
        href=f"https://errors.example.com/{says} log in at https://evil.example",
    )
    for display in (Display(), Display(classifiers=False, callstack=False)):
        card = render_card(hostile, replace(OPS, display=display))
        assert mentions({"message": "-", "message_format": "text", "card": card}) == ()
        assert card["url"] == (
            "https://errors.example.com/%40all%20%40here%20%40name%20log%20in%20at%20"
            "https://evil.example"
        )
        assert " in @\u200ball @\u200bhere @\u200bname: @\u200ball" in card["title"]
