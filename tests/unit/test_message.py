from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from syncd.config.model import Display, HipChat, Integration, Room, Trigger
from syncd.config.secrets import SecretRef
from syncd.hipchat.render import ELLIPSIS, MAX_MESSAGE_CHARS, fit, length, render_message
from syncd.hipchat.wire import Message

HOSTILE = "&<>\"'"
# Every tag render_message() may emit; anything else that looks like markup is a bug.
TAG = re.compile(r'<br>|</?b>|</?pre>|<a href="[^"<>]*">|</a>')
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


def integration(**changes: Any) -> Integration:
    hipchat = HipChat(
        endpoint="https://hipchat.example.com",
        rooms=(Room("1234567", SecretRef("env", "HIPCHAT_TOKEN")),),
        sender="syncd",
        color="red",
        notify=True,
    )
    base = Integration(uid="checkout-ops", project="checkout", name="ops", hipchat=hipchat)
    display = changes.pop("display", None)
    hc = changes.pop("hipchat", {})
    result = replace(base, hipchat=replace(hipchat, **hc), **changes)
    return replace(result, display=display) if display else result


def event(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": "checkout",
        "fingerprint": "fp-7f3a",
        "timestamp": "2024-05-01T12:00:00Z",
        "classifiers": ["ValueError", "<Checkout>"],
        "callstack": [f"app/cart.py:{n} in total" for n in range(14)],
        "attributes": {"version": "1.2.3", "team": "a&b", "datacenter": "nyc"},
        "hostname": "web-1",
        "href": "https://errors.example.com/e/1?a=1&b=2",
        "new_group": True,
    }
    data.update(changes)
    return data


def assert_well_formed_html(text: str) -> None:
    """Only our tags, balanced; every ``&`` starts a whole entity; no stray ``<`` or ``>``."""
    stack: list[str] = []
    for match in TAG.finditer(text):
        tag = match.group()
        if tag == "<br>":
            continue
        name = tag.strip("</>").split()[0]
        if tag.startswith("</"):
            assert stack and stack.pop() == name, f"unbalanced {tag}"
        else:
            stack.append(name)
    assert not stack, f"unclosed {stack}"
    rest = TAG.sub("", text)
    assert "<" not in rest and ">" not in rest
    assert "&" not in ENTITY.sub("", rest)


def test_html_message_shows_every_section_escaped_in_order() -> None:
    msg = render_message(event(), integration())
    assert msg == Message(msg.text, "html", "red", True, "syncd")
    text = msg.text
    assert text.startswith("<b>New error in checkout: ValueError</b> at 2024-05-01T12:00:00Z")
    assert "ValueError, &lt;Checkout&gt;" in text
    assert "<b>team</b>: a&amp;b" in text
    assert '<a href="https://errors.example.com/e/1?a=1&amp;b=2">' in text
    order = [text.index(s) for s in ("Classifiers", "Callstack", "Attributes", "Host:", "<a ")]
    assert order == sorted(order)
    assert_well_formed_html(text)


def test_callstack_shows_the_top_ten_frames_and_counts_the_rest() -> None:
    text = render_message(event(), integration()).text
    assert "app/cart.py:9 in total" in text
    assert "app/cart.py:10 in total" not in text
    assert f"{ELLIPSIS} 4 more</pre>" in text


def test_text_format_is_plain() -> None:
    msg = render_message(event(), integration(hipchat={"message_format": "text"}))
    assert msg.message_format == "text"
    assert "<" + "Checkout>" in msg.text and "team: a&b" in msg.text
    assert "<b>" not in msg.text and "&amp;" not in msg.text
    assert "https://errors.example.com/e/1?a=1&b=2" in msg.text


def test_event_text_cannot_mention_anyone_in_a_text_message() -> None:
    hostile = event(
        attributes={"user": "@all"},
        classifiers=["@here"],
        href="https://errors.example.com/@team/1",
    )
    msg = render_message(hostile, integration(), ["@payments"])
    assert msg.message_format == "text"
    assert "@all" not in msg.text and "@here" not in msg.text
    assert "user: @\u200ball" in msg.text
    assert msg.text.startswith("@payments\n")
    assert msg.text.endswith("https://errors.example.com/@team/1")


def test_mentions_force_text_and_lead_the_message() -> None:
    msg = render_message(event(), integration(), ["@payments", "@ops", "@payments"])
    assert msg.message_format == "text"
    assert msg.text.splitlines()[0] == "@payments @ops"


def test_display_settings_choose_the_sections() -> None:
    display = Display(
        classifiers=False,
        callstack=False,
        attribute_list=("datacenter", "version", "missing"),
        include_hostname=False,
    )
    text = render_message(event(), integration(display=display)).text
    assert "Classifiers" not in text and "Callstack" not in text and "Host:" not in text
    assert "New error in checkout: fp-7f3a" in text
    assert text.index("datacenter") < text.index("version")
    assert "team" not in text and "missing" not in text
    text = render_message(event(), integration(display=Display(attributes=False))).text
    assert "Attributes" not in text


def test_missing_optional_fields_leave_their_sections_out() -> None:
    minimal = {"project": "checkout", "fingerprint": "fp", "timestamp": "2024-05-01T12:00:00Z"}
    text = render_message(minimal, integration()).text
    assert text == "<b>Error in checkout: fp</b> at 2024-05-01T12:00:00Z"


def test_only_http_links_are_linked() -> None:
    text = render_message(event(href="javascript:alert(1)"), integration()).text
    assert "<a " not in text and "javascript" not in text


def test_a_digest_says_what_it_stands_for_per_trigger() -> None:
    # The default trigger, event: group, aggregates the integration's new groups.
    assert "more " not in render_message(event(), integration()).text
    text = render_message(event(), integration(), count=42, since=1714564500.0).text
    assert "and 41 more new error groups since 2024-05-01T11:55:00Z" in text
    assert "and 1 more new error group<br>" in render_message(event(), integration(), count=2).text
    # event: trace aggregates the occurrences of one fingerprint.
    trace = integration(trigger=Trigger(event="trace", frequency=300))
    text = render_message(event(), trace, count=5, since=1714564500.0).text
    assert "and 4 more occurrences of this error since 2024-05-01T11:55:00Z" in text
    assert "and 1 more occurrence of this error<br>" in render_message(event(), trace, count=2).text
    with pytest.raises(ValueError):
        render_message(event(), integration(), count=0)


def test_fit_never_splits_an_entity() -> None:
    raw = "a&<b>" * 4
    for budget in range(40):
        out = fit(raw, budget, lambda s: s.replace("&", "&amp;").replace("<", "&lt;"))
        assert length(out) <= budget
        assert "&" not in re.sub(r"&(amp|lt);", "", out)


def test_length_counts_utf16_units() -> None:
    assert length("a\N{GRINNING FACE}é") == 4


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param({"attributes": {"blob": HOSTILE * 4000}}, id="one 20k attribute"),
        pytest.param(
            {"attributes": {f"k{i}{HOSTILE}": HOSTILE * 300 for i in range(500)}},
            id="500 attributes",
        ),
        pytest.param({"callstack": [HOSTILE * 2000] * 1000}, id="1000 huge frames"),
        pytest.param({"classifiers": [HOSTILE * 500] * 100}, id="100 huge classifiers"),
        pytest.param(
            {
                "project": HOSTILE * 100,
                "fingerprint": HOSTILE * 100,
                "hostname": HOSTILE * 3000,
                "href": "https://x/" + HOSTILE * 3000,
                "timestamp": HOSTILE * 1000,
                "classifiers": [HOSTILE * 5000],
                "callstack": ["\N{GRINNING FACE}" * 3000] * 20,
                "attributes": {HOSTILE * 300: "\N{GRINNING FACE}&" * 3000},
            },
            id="everything huge",
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["html", "text"])
def test_hostile_events_fit_and_stay_well_formed(hostile: dict[str, Any], fmt: str) -> None:
    msg = render_message(event(**hostile), integration(hipchat={"message_format": fmt}), count=3)
    assert 0 < length(msg.text) <= MAX_MESSAGE_CHARS
    if fmt == "html":
        assert_well_formed_html(msg.text)
    assert msg.text.startswith(("<b>New error in ", "New error in "))


def test_a_message_over_the_limit_is_cut_and_marked() -> None:
    many = {f"attr{i:03}": "v" * 900 for i in range(100)}
    msg = render_message(event(attributes=many), integration(), count=5, since=1714564500.0)
    assert 9_000 < length(msg.text) <= MAX_MESSAGE_CHARS
    assert msg.text.endswith(ELLIPSIS)
    assert re.search(f"{ELLIPSIS} \\d+ more", msg.text)
    # What never gets dropped: the title, the count and the link.
    assert "and 4 more new error groups since 2024-05-01T11:55:00Z" in msg.text
    assert '<a href="https://errors.example.com/e/1?a=1&amp;b=2">' in msg.text
    assert_well_formed_html(msg.text)


def test_a_small_limit_is_honoured_and_a_tiny_one_refused() -> None:
    many = {f"attr{i:03}": HOSTILE * 100 for i in range(100)}
    for limit in (4_000, 5_555, 7_001):
        text = render_message(event(attributes=many), integration(), limit=limit).text
        assert length(text) <= limit
        assert_well_formed_html(text)
    with pytest.raises(ValueError):
        render_message(event(), integration(), limit=100)
