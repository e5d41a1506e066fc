"""Hostile ``POST /v1/events`` bodies over real HTTP to a running daemon (in-process).

Random JSON, events with fields of the wrong type, huge strings, deep nesting,
bytes that are not UTF-8, lone surrogates, wrong content types and truncated
bodies: none may give a 5xx or stop the daemon; every valid event gets 202, and
what was accepted for project ``shop`` is delivered to the local HipChat exactly
once, nothing dead-lettered. The regressions at the end once gave a 500 (deep
nesting, lone surrogates) or no answer at all (a bad ``Content-Length``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.events.validation import event_size
from syncd.service.daemon import Daemon, DaemonConfig
from syncd.testing.hipchat_server import HipChatServer
from tests.support.configs import room_tokens
from tests.support.daemons import TEST_REACH
from tests.support.waiting import wait_for

TOKENS = room_tokens("5001", "5002")
MAX_BODY = 1 << 20
MAX_EVENT = 64 << 10
JSON = {"Content-Type": "application/json"}
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

CONFIG = """\
version: 1
integrations:
  - uid: shop-text
    project: shop
    name: text messages
    trigger: {{event: trace}}
    hipchat:
      endpoint: {endpoint}
      message_format: text
      rooms:
        - {{id: 5001, token: {{env: HIPCHAT_TOKEN_5001}}}}
  - uid: shop-html
    project: shop
    name: html messages
    trigger: {{event: trace}}
    actions:
      - {{action: mention, attribute: team, regex: "^pay", target: "@payments"}}
    hipchat:
      endpoint: {endpoint}
      rooms:
        - {{id: 5002, token: {{env: HIPCHAT_TOKEN_5002}}}}
"""
ROOMS_PER_SHOP_EVENT = 2


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Live:
    daemon: Daemon
    hipchat: HipChatServer
    url: str
    errors: _Errors
    notifications: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def post(self, body: bytes, content_type: str | None = "application/json") -> requests.Response:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        answer = requests.post(self.url + "/v1/events", data=body, headers=headers, timeout=60)
        self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (answer.status_code, answer.text[:2000], body[:300])
        assert "Traceback" not in answer.text
        if answer.status_code == 202:
            data = answer.json()
            assert data["accepted"] == len(data["ids"]) >= 1, data
            self.notifications += data["notifications"]
        elif answer.status_code in (400, 413):
            error = answer.json()["error"]
            assert error["code"] == answer.status_code and error["message"], error
        return answer

    def alive(self) -> None:
        assert requests.get(self.url + "/healthz", timeout=10).status_code == 200

    def settle(self) -> None:
        """Everything accepted for ``shop`` delivered exactly once; nothing dead; no tracebacks."""
        wait_for(
            lambda: len(self.hipchat.messages) >= self.notifications,
            timeout=60,
            what=f"{self.notifications} notifications delivered",
        )
        wait_for(
            lambda: sum(self.daemon.outbox.depth().values()) == 0, timeout=30, what="empty outbox"
        )
        assert len(self.hipchat.messages) == self.notifications
        dead = self.daemon.outbox.items("dead")
        assert not dead, [(i.id, i.reason) for i in dead[:5]]
        failures = [r for r in self.errors.records if r.exc_info]
        self.errors.records.clear()
        assert not failures, logging.Formatter().format(failures[0])
        self.alive()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("event-fuzz")
    saved = {k: os.environ.get(k) for k in (f"HIPCHAT_TOKEN_{r}" for r in TOKENS)}
    os.environ.update({f"HIPCHAT_TOKEN_{r}": t for r, t in TOKENS.items()})
    errors = _Errors()
    logging.getLogger("syncd").addHandler(errors)
    with HipChatServer(TOKENS, limits=None) as hipchat:
        config = base / "config"
        config.mkdir()
        (config / "shop.yaml").write_text(CONFIG.format(endpoint=hipchat.url))
        daemon = Daemon(
            DaemonConfig(
                config, base / "state", port=0, retry_base=0.05, retry_cap=0.2, reach=TEST_REACH
            )
        )
        try:
            assert daemon.start().ok
            yield Live(daemon, hipchat, daemon.server.url, errors)
        finally:
            daemon.shutdown()
            logging.getLogger("syncd").removeHandler(errors)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def run(live: Live, check: Callable[[], None]) -> None:
    """Run a hypothesis property, then check the daemon delivered what it accepted."""
    check()
    live.settle()


# --- strategies ------------------------------------------------------------------

_text = st.text(max_size=30)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
json_values = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_text, inner, max_size=5)),
    max_leaves=25,
)
_timestamp = st.sampled_from(
    ["2026-11-26T12:00:00Z", "2026-11-26T12:00:00.123456+05:30", "1970-01-01T00:00:00Z"]
)
_nonempty = st.text(min_size=1, max_size=40)


@st.composite
def valid_events(draw: st.DrawFn, project: st.SearchStrategy[str] | None = None) -> dict[str, Any]:
    if project is None:
        project = st.one_of(st.just("shop"), _nonempty)
    event: dict[str, Any] = {
        "project": draw(project),
        "fingerprint": draw(_nonempty),
        "timestamp": draw(_timestamp),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "classifiers": st.lists(_text, max_size=5),
        "callstack": st.lists(_text, max_size=15),
        "attributes": st.dictionaries(
            st.one_of(_text, st.sampled_from(["team", "version", "hostname"])),
            st.one_of(_text, st.just("payments")),
            max_size=6,
        ),
        "hostname": st.text(max_size=60),
        "href": st.builds(lambda s: "https://errors.example.com/" + s, _text),
        "new_group": st.booleans(),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        event[key] = draw(optional[key])
    return event


def notifications_for(events: list[dict[str, Any]]) -> int:
    return ROOMS_PER_SHOP_EVENT * sum(1 for e in events if e["project"] == "shop")


def encode(payload: object) -> bytes:
    return json.dumps(payload).encode()


# --- properties ------------------------------------------------------------------


def test_valid_events_get_202(live: Live) -> None:
    @settings(FUZZ, max_examples=300)
    @given(
        st.one_of(
            valid_events().map(lambda e: [e]), st.lists(valid_events(), min_size=1, max_size=5)
        ),
        st.booleans(),
    )
    def check(events: list[dict[str, Any]], as_list: bool) -> None:
        payload: object = events if as_list or len(events) > 1 else events[0]
        answer = live.post(encode(payload))
        assert answer.status_code == 202, answer.text
        assert answer.json()["notifications"] == notifications_for(events)

    run(live, check)


def test_random_json_never_5xx(live: Live) -> None:
    @settings(FUZZ, max_examples=300)
    @given(json_values)
    def check(payload: object) -> None:
        live.post(encode(payload))

    run(live, check)


_REQUIRED = ["project", "fingerprint", "timestamp"]
_TYPES: dict[str, Callable[[object], bool]] = {
    "project": lambda v: isinstance(v, str),
    "fingerprint": lambda v: isinstance(v, str),
    "timestamp": lambda v: isinstance(v, str),
    "classifiers": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "callstack": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "attributes": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    "hostname": lambda v: isinstance(v, str),
    "href": lambda v: isinstance(v, str),
    "new_group": lambda v: isinstance(v, bool),
}


@st.composite
def broken_events(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(valid_events())
    how = draw(st.sampled_from(["wrong-type", "missing", "unknown-key", "empty", "too-long"]))
    if how == "wrong-type":
        key = draw(st.sampled_from(sorted(_TYPES)))
        event[key] = draw(json_values.filter(lambda v: not _TYPES[key](v)))
    elif how == "missing":
        del event[draw(st.sampled_from(_REQUIRED))]
    elif how == "unknown-key":
        key = draw(_text.filter(lambda k: k not in _TYPES))
        event[key] = draw(json_values)
    elif how == "empty":
        event[draw(st.sampled_from(["project", "fingerprint", "timestamp"]))] = ""
    else:
        key, limit = draw(
            st.sampled_from([("project", 100), ("fingerprint", 200), ("hostname", 255)])
        )
        event[key] = "x" * (limit + draw(st.integers(1, 1000)))
    return event


def test_wrong_types_missing_and_unknown_fields_get_400(live: Live) -> None:
    @settings(FUZZ, max_examples=300)
    @given(broken_events(), st.lists(valid_events(), max_size=3), st.booleans())
    def check(bad: dict[str, Any], good: list[dict[str, Any]], bad_first: bool) -> None:
        batch = [bad, *good] if bad_first else [*good, bad]
        answer = live.post(encode(batch if len(batch) > 1 else bad))
        assert answer.status_code == 400, answer.text
        problems = answer.json()["error"]["problems"]
        assert problems and all(p["path"].startswith("$") and p["message"] for p in problems)

    run(live, check)


_huge_field = st.sampled_from(["classifier", "frame", "attribute", "attribute-name", "many"])


def expected_status(event: dict[str, Any], where: str, size: int, body: int) -> int:
    """The bounds, in the order they are applied: the body (1 MiB), one event (64 KiB
    as compact JSON), then the schema's attribute value (4,096 characters) and name
    (200)."""
    if body > MAX_BODY or event_size(event) > MAX_EVENT:
        return 413
    if (where == "attribute" and size > 4096) or (where == "attribute-name" and size > 200):
        return 400
    return 202


def test_huge_strings_get_202_or_the_bound_they_pass(live: Live) -> None:
    @settings(FUZZ, max_examples=40)
    @given(
        valid_events(project=st.just("shop")),
        _huge_field,
        st.integers(5_000, 1_100_000),
        st.sampled_from("aé😀<&@\n"),
    )
    def check(event: dict[str, Any], where: str, size: int, char: str) -> None:
        huge = char * size
        if where == "classifier":
            event["classifiers"] = [huge]
        elif where == "frame":
            event["callstack"] = [huge, huge[:100]]
        elif where == "attribute":
            event["attributes"] = {"team": huge}
        elif where == "attribute-name":
            event["attributes"] = {huge: "v"}
        else:
            event["callstack"] = [char * 1000] * min(1000, size // 1000)
        body = encode(event)
        answer = live.post(body)
        assert answer.status_code == expected_status(event, where, size, len(body)), (
            len(body),
            answer.text[:500],
        )

    run(live, check)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 800))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"k":', "}]")]))
    if closer == "}]":
        depth = min(depth, 400)
    inner = opener * depth + "1" + closer * depth
    where = draw(st.sampled_from(["top", "attribute", "classifiers", "extra"]))
    if where == "top":
        return inner.encode()
    base = '{"project":"shop","fingerprint":"f","timestamp":"2026-11-26T12:00:00Z"'
    key = {"attribute": '"attributes":{"a":', "classifiers": '"classifiers":', "extra": '"x":'}[
        where
    ]
    tail = "}" if where == "attribute" else ""
    return f"{base},{key}{inner}{tail}}}".encode()


def test_deep_nesting_up_to_800_levels_gets_400(live: Live) -> None:
    @settings(FUZZ, max_examples=100)
    @given(nested())
    def check(body: bytes) -> None:
        answer = live.post(body)
        assert answer.status_code == 400, answer.text[:500]

    run(live, check)


_valid_body = valid_events().map(encode)


@st.composite
def bad_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["binary", "inject", "latin1", "utf16", "bom", "nul"]))
    if kind == "binary":
        return draw(st.binary(min_size=0, max_size=200))
    body = draw(_valid_body)
    if kind == "inject":
        at = draw(st.integers(0, len(body)))
        junk = draw(
            st.sampled_from(
                [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80", b"\xc0\xaf"]
            )
        )
        return body[:at] + junk + body[at:]
    if kind == "latin1":
        return body.replace(b'"fingerprint": "', b'"fingerprint": "\xe9\xe8')
    if kind == "utf16":
        return body.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if kind == "bom":
        return b"\xef\xbb\xbf" + body
    return body + b"\0"


def test_bytes_that_are_not_utf8_never_5xx(live: Live) -> None:
    @settings(FUZZ, max_examples=200)
    @given(bad_bytes())
    def check(body: bytes) -> None:
        live.post(body)

    run(live, check)


def test_lone_surrogates_and_odd_unicode_never_5xx(live: Live) -> None:
    """A lone surrogate is valid JSON but not text: 400 or 202 (then delivered), never 5xx."""
    escapes = st.sampled_from(
        ["\\ud800", "\\udfff", "\\ud83d", "\\u0000", "\\u202e", "\\ufeff", "\\uffff"]
    )

    @settings(FUZZ, max_examples=60)
    @given(
        valid_events(project=st.just("shop")),
        st.lists(escapes, min_size=1, max_size=4),
        st.sampled_from(["frame", "classifier", "attribute", "hostname", "fingerprint", "project"]),
    )
    def check(event: dict[str, Any], pieces: list[str], where: str) -> None:
        marker = "MARKER-0123456789"
        if where in ("fingerprint", "project"):
            event[where] = marker
        elif where == "frame":
            event["callstack"] = [marker]
        elif where == "classifier":
            event["classifiers"] = [marker]
        elif where == "attribute":
            event["attributes"] = {"a": marker}
        else:
            event["hostname"] = marker
        escaped = "".join(pieces) + "x"
        body = encode(event).replace(marker.encode(), escaped.encode())
        try:
            json.loads(f'"{escaped}"').encode("utf-8")
        except UnicodeEncodeError:
            text = False  # a surrogate without its pair
        else:
            text = True
        answer = live.post(body)
        assert answer.status_code in ((202,) if text else (202, 400)), answer.text

    run(live, check)


_content_types = st.one_of(
    st.sampled_from(
        [None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
         "application/json; charset=latin-1", "application/json; charset=utf-16",
         "application/xml", "*/*", "application/json;;;", "\u00e9"]
    ),
    st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=40),
)  # fmt: skip


def test_wrong_content_types_never_5xx(live: Live) -> None:
    @settings(FUZZ, max_examples=100)
    @given(valid_events(), _content_types)
    def check(event: dict[str, Any], content_type: str | None) -> None:
        answer = live.post(encode(event), content_type=content_type)
        assert answer.status_code in (202, 400, 415), answer.text

    run(live, check)


def raw_request(live: Live, head: bytes, body: bytes, *, half_close: bool) -> bytes:
    """Send bytes as they are; return the answer (what arrived within 10 s)."""
    host, port = live.daemon.server.address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while b"\r\n\r\n" not in received or len(received) < 12:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


def test_truncated_bodies_get_400(live: Live) -> None:
    @settings(FUZZ, max_examples=150)
    @given(st.lists(valid_events(), min_size=1, max_size=3), st.data(), st.booleans())
    def check(events: list[dict[str, Any]], data: st.DataObject, declared_longer: bool) -> None:
        body = encode(events)
        cut = data.draw(st.integers(0, len(body) - 1))
        if not declared_longer:
            answer = live.post(body[:cut])
            assert answer.status_code == 400, answer.text
            return
        # The header promises the whole body; the client sends part of it and stops.
        head = (
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        received = raw_request(live, head, body[:cut], half_close=True)
        status = status_of(received)
        assert status is None or status == 400, received[:300]

    run(live, check)


def test_the_daemon_still_works_after_all_that(live: Live) -> None:
    event = {"project": "shop", "fingerprint": "after", "timestamp": "2026-11-26T12:00:00Z"}
    answer = live.post(encode(event))
    assert answer.status_code == 202
    live.settle()
    assert live.daemon.healthy()
    assert set(live.statuses) <= {202, 400, 413, 415}, live.statuses


# --- regressions: each of these once gave a 500 or no answer -------------------


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_very_deep_nesting_gets_400(live: Live, depth: int) -> None:
    body = (
        b'{"project":"shop","fingerprint":"f","timestamp":"2026-11-26T12:00:00Z","attributes":{"a":'
    )
    body += b"[" * depth + b"]" * depth + b"}}"
    answer = requests.post(live.url + "/v1/events", data=body, headers=JSON, timeout=30)
    live.alive()
    assert answer.status_code == 400, (answer.status_code, answer.text)


@pytest.mark.parametrize("value", [b"abc", b"1.5", b"0x10", b"12 34"])
def test_non_numeric_content_length_gets_400(live: Live, value: bytes) -> None:
    head = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + value + b"\r\n\r\n"
    answer = raw_request(live, head, b"{}", half_close=True)
    live.alive()
    assert status_of(answer) == 400, answer[:300]


def test_negative_content_length_gets_an_answer(live: Live) -> None:
    head = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n"
    host, port = live.daemon.server.address
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(head + b"{}")
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
    live.alive()
    assert status_of(answer) == 400, answer[:300]


@pytest.mark.parametrize("field", ["project", "fingerprint"])
def test_lone_surrogate_in_project_or_fingerprint_is_not_a_500(live: Live, field: str) -> None:
    event = {"project": "shop", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    event[field] = "MARKER"
    body = encode(event).replace(b"MARKER", b"\\ud800x")
    answer = requests.post(live.url + "/v1/events", data=body, headers=JSON, timeout=30)
    live.errors.records.clear()
    live.alive()
    assert answer.status_code in (202, 400), (answer.status_code, answer.text)


@pytest.mark.parametrize(
    "written",
    [b"\\ud800x", b"\\uDBFFx", b"\\uDc00", b"x\\udfff", b"\xed\xa0\x80", b"\xed\xbf\xbfx"],
    ids=["escape", "escape-upper", "escape-mixed", "low-half", "bytes", "bytes-last"],
)
def test_every_way_of_writing_a_lone_surrogate_is_refused_as_json(
    live: Live, written: bytes
) -> None:
    """Escapes in either case and the bytes the decoder lets through: each is a 400
    that says the body is not usable JSON, never stored, whichever field holds it."""
    event = {"project": "shop", "fingerprint": "f", "timestamp": "2026-11-26T12:00:00Z"}
    event["hostname"] = "MARKER"
    body = encode(event).replace(b"MARKER", written)
    answer = requests.post(live.url + "/v1/events", data=body, headers=JSON, timeout=30)
    live.alive()
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert "not usable JSON" in answer.json()["error"]["message"], answer.text
