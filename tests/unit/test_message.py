from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, Literal

import pytest

from syncd.config.model import Display, HipChat, Integration, Room, Trigger
from syncd.config.secrets import SecretRef
from syncd.hipchat.render import ELLIPSIS, MAX_MESSAGE_CHARS, fit, length, render_message
from syncd.hipchat.wire import Message, notification_body
from syncd.testing.hipchat_contract import mentions

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
    shown = ("Classifiers", "Callstack", "Attributes", "<b>hostname</b>: web-1", "<a ")
    order = [text.index(s) for s in shown]
    assert order == sorted(order)
    assert_well_formed_html(text)


def text_of(display: Display, **changes: Any) -> str:
    fmt = {"message_format": "text"}
    return render_message(event(**changes), integration(display=display, hipchat=fmt)).text


def test_the_hostname_is_one_more_attribute_shown_once() -> None:
    assert "Host:" not in text_of(Display())
    assert text_of(Display()).count("web-1") == 1
    assert text_of(Display()).endswith("datacenter: nyc\nhostname: web-1\n" + event()["href"])
    # An attribute named hostname is the host: shown once, in the event's order.
    named = text_of(Display(), attributes={"hostname": "web-3", "team": "a"})
    assert "Attributes:\nhostname: web-3\nteam: a\n" in named
    assert "web-1" not in named


def test_the_hostname_shows_only_where_attributes_show_and_the_list_admits_it() -> None:
    assert "web-1" not in text_of(Display(attributes=False))
    assert "web-1" not in text_of(Display(attribute_list=("team",)))
    listed = text_of(Display(attribute_list=("hostname", "team")))
    assert "Attributes:\nhostname: web-1\nteam: a&b\n" in listed
    bare = text_of(Display(attribute_list=("hostname",)), attributes={})
    assert "Attributes:\nhostname: web-1\n" in bare


def test_include_hostname_false_hides_the_field_and_an_attribute_named_hostname() -> None:
    for display in (
        Display(include_hostname=False),
        Display(include_hostname=False, attribute_list=("hostname", "team")),
    ):
        text = text_of(display, attributes={"hostname": "web-3", "team": "a"})
        assert "web-1" not in text and "web-3" not in text and "hostname" not in text
        assert "team: a" in text


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
    assert msg.text.endswith("https://errors.example.com/%40team/1")


MENTIONS = "@all @here @name \uff20all"


def every_field_mentioning() -> dict[str, Any]:
    """Each text an event carries, each saying ``@all @here @name``."""
    return event(
        project=MENTIONS,
        fingerprint=MENTIONS,
        timestamp=MENTIONS,
        classifiers=[MENTIONS, "@here"],
        callstack=[MENTIONS, "@all"],
        attributes={MENTIONS: MENTIONS, "@all": "@here", "hostname": "@name"},
        hostname=MENTIONS,
        href=f"https://errors.example.com/{MENTIONS} production is down, log in at "
        "https://evil.example @all\n@here\t@name",
        id=MENTIONS,
    )


@pytest.mark.parametrize("fmt", ["text", "html"])
@pytest.mark.parametrize("targets", [(), ("@payments", "@here")])
def test_only_the_integrations_own_targets_mention_whatever_the_event_says(
    fmt: Literal["text", "html"], targets: tuple[str, ...]
) -> None:
    shown = Display(include_hostname=True)
    hc = {"message_format": fmt, "card": True}
    msg = render_message(
        every_field_mentioning(), integration(display=shown, hipchat=hc), list(targets)
    )
    body = notification_body(msg)
    assert mentions(body) == tuple(t.lstrip("@") for t in targets)
    assert "https://errors.example.com/%40all%20%40here%20%40name%20%EF%BC%A0all" in msg.text
    assert "evil.example%20%40all%0A%40here%09%40name" in msg.text
    for needle in ("@all", "@here", "@name"):
        assert msg.text.count(needle) == (targets.count(needle) if targets else 0)


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


def sections_of(text: str) -> dict[str, str]:
    """A text message's sections by title, each up to the next one."""
    titles = ("Classifiers:", "Callstack:", "Attributes:", "and ")
    at = sorted((text.index(t), t) for t in titles if t in text)
    ends = [start for start, _ in at[1:]] + [len(text)]
    return {title: text[start:end] for (start, title), end in zip(at, ends, strict=True)}


LONG = {
    "classifiers": [f"C{n:03}" + "c" * 196 for n in range(100)],
    "callstack": [f"frame {n} " + "f" * 490 for n in range(10)],
    "attributes": {f"attr{n:03}": "v" * 900 for n in range(100)},
}


def test_every_shown_section_keeps_a_share_of_a_long_message() -> None:
    text = text_of(Display(include_hostname=False), **LONG)
    assert length(text) <= MAX_MESSAGE_CHARS
    parts = sections_of(text)
    # 100 classifiers alone are twice the limit; the others still get a third each.
    for title in ("Classifiers:", "Callstack:", "Attributes:"):
        assert 3_000 < length(parts[title]) < 3_500, title
    assert "C000" in parts["Classifiers:"] and "frame 0 " in parts["Callstack:"]
    assert "attr000: v" in parts["Attributes:"]
    assert text.endswith("\n" + ELLIPSIS)


def test_a_section_that_needs_less_than_its_share_gives_the_rest_to_the_others() -> None:
    short = ["charge() at pay.py:42", "main() at app.py:1"]
    text = text_of(Display(include_hostname=False), **{**LONG, "callstack": short})
    parts = sections_of(text)
    assert parts["Callstack:"] == "Callstack:\ncharge() at pay.py:42\nmain() at app.py:1\n"
    for title in ("Classifiers:", "Attributes:"):
        assert 4_500 < length(parts[title]) < 5_000, title


def test_a_cut_is_logged_with_how_much_and_never_the_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncd.hipchat.render")
    render_message(event(), integration())
    assert caplog.records == []
    msg = render_message(event(**LONG), integration())
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    said = record.getMessage()
    found = re.fullmatch(
        r"checkout-ops: message cut by (\d+) characters to (\d+) "
        r"\(sections shortened: classifiers, callstack, attributes\)",
        said,
    )
    assert found, said
    assert int(found[2]) == length(msg.text) and int(found[1]) > 100_000
    assert "ccc" not in said and "vvv" not in said and "web-1" not in said


def test_a_small_limit_is_honoured_and_a_tiny_one_refused() -> None:
    many = {f"attr{i:03}": HOSTILE * 100 for i in range(100)}
    for limit in (4_000, 5_555, 7_001):
        text = render_message(event(attributes=many), integration(), limit=limit).text
        assert length(text) <= limit
        assert_well_formed_html(text)
    with pytest.raises(ValueError):
        render_message(event(), integration(), limit=100)
