"""Config flow step 5: the configuration model, frozen values built from
schema-valid data.

Equality of these values is what the planner uses to tell an unchanged
integration from an updated one, so source positions are excluded from it.

A daemon keeps every integration of the set, 50,000 in a large one, and most
repeat the same display, trigger, token reference and endpoint: those are
built once per distinct value (:func:`_one`), about 300 bytes less per
integration.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Literal, TypeVar, cast

from syncd.config.secrets import SecretRef, secret_ref_from_data

State = Literal["enabled", "disabled", "stopped"]
Color = Literal["yellow", "green", "red", "purple", "gray", "random"]
MessageFormat = Literal["html", "text"]
ActionKind = Literal["submit", "filter", "mention"]
TriggerEvent = Literal["group", "trace"]

ANY_ATTRIBUTE = "*"

_DURATION = re.compile(r"^(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


_API_VERSION = re.compile(r"v\d+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a written endpoint names. The client adds ``/v2/room/<id>/notification``
    to ``root`` itself, so a path that already holds part of the API would be sent
    twice and fail only at send time, as a permanent error: a trailing ``/v2`` (any
    case) is dropped with a warning, anything more (``/v1``, ``/v2/room``, a pasted
    notification URL) is ``api_path``, an error whose fix is ``root``."""

    root: str
    version_dropped: bool = False
    api_path: str | None = None


def read_endpoint(endpoint: str) -> Endpoint:
    head, sep, rest = endpoint.partition("://")
    host, _, path = rest.partition("/")
    segments = path.split("/")
    while segments and not segments[-1]:
        segments.pop()
    origin = head + sep + host
    for i, segment in enumerate(segments):
        if _API_VERSION.fullmatch(segment):
            root = "/".join((origin, *segments[:i]))
            if i == len(segments) - 1 and segment.lower() == "v2":
                return Endpoint(root, version_dropped=True)
            return Endpoint(root, api_path="/" + "/".join(segments[i:]))
    return Endpoint("/".join((origin, *segments)))


def api_root(endpoint: str) -> str:
    """The server's root: ``https://host/v2/`` and ``https://host/`` both name
    ``https://host``, since the client adds ``/v2/room/...`` itself."""
    return read_endpoint(endpoint).root


# The longest frequency: a week. A throttle window is a time added to now, and a
# window of 3,000,000 days overflowed a date; nobody means more than a week
# between two notifications of one window.
MAX_DURATION = 7 * 24 * 3600
_MAX_DIGITS = 12  # more is over MAX_DURATION in any unit, and not worth reading


class DurationTooLong(ValueError):
    """A duration that is well formed but longer than allowed."""


def parse_duration(value: str | int, maximum: int = MAX_DURATION) -> int:
    """Seconds in ``30s``, ``5m``, ``1h30m``, ``1d`` or a whole number of seconds, at
    most ``maximum`` (:class:`DurationTooLong` beyond)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; a duration is 0 or more seconds")
        return _at_most(value, value, maximum)
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a duration; write it like 30s, 5m, 1h30m, 1d or whole seconds"
        )
    if any(g and len(g) > _MAX_DIGITS for g in match.groups()):
        raise DurationTooLong(_too_long(value, maximum))
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return _at_most(value, ((days * 24 + hours) * 60 + minutes) * 60 + seconds, maximum)


def _at_most(value: str | int, seconds: int, maximum: int) -> int:
    if seconds > maximum:
        raise DurationTooLong(_too_long(value, maximum))
    return seconds


def _too_long(value: str | int, maximum: int) -> str:
    shown = repr(value) if isinstance(value, str) and len(value) <= 40 else "the duration"
    return f"{shown} is longer than {_words(maximum)}, the most allowed"


def _words(seconds: int) -> str:
    """``7 days (604800 seconds)``: the limit as a person and a program read it."""
    days, rest = divmod(seconds, 86400)
    return f"{days} days ({seconds} seconds)" if days and not rest else f"{seconds} seconds"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value was declared, for messages and ``/status``."""

    file: str
    line: int
    col: int
    path: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Room:
    """A HipChat room: its API ID (digits) or name, and where its token comes from."""

    id: str
    token: SecretRef
    source: Source | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class HipChat:
    endpoint: str
    rooms: tuple[Room, ...]
    sender: str | None = None
    color: Color = "yellow"
    notify: bool = False
    message_format: MessageFormat = "html"
    ca_file: str | None = None  # PEM bundle this endpoint's certificate is checked against
    card: bool = False  # also send an application card


@dataclass(frozen=True, slots=True)
class Display:
    """Common Settings: which sections of an error the message shows."""

    classifiers: bool = True
    callstack: bool = True
    attributes: bool = True
    attribute_list: tuple[str, ...] = ()
    include_hostname: bool = True


@dataclass(frozen=True, slots=True)
class Action:
    action: ActionKind
    attribute: str
    regex: str
    target: str | None = None
    source: Source | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Trigger:
    event: TriggerEvent = "group"
    frequency: int | None = None
    threshold: int | None = None


@dataclass(frozen=True, slots=True)
class Integration:
    uid: str
    project: str
    name: str
    hipchat: HipChat
    state: State = "enabled"
    display: Display = Display()
    actions: tuple[Action, ...] = ()
    trigger: Trigger = Trigger()
    source: Source | None = field(default=None, compare=False)

    @property
    def rooms(self) -> tuple[Room, ...]:
        return self.hipchat.rooms

    def public(self) -> Integration:
        """This integration with literal tokens replaced by their digests."""
        rooms = tuple(replace(room, token=room.token.public()) for room in self.hipchat.rooms)
        return replace(self, hipchat=replace(self.hipchat, rooms=rooms))


Locate = Callable[[tuple[str | int, ...]], Source]

_Value = TypeVar("_Value", bound=Hashable)


def _one(value: _Value) -> _Value:
    """The first value equal to ``value`` still remembered, else ``value``: one copy of
    what many integrations repeat. Only for values without a source, which equality
    leaves out; bounded, so a set of distinct values costs what it did."""
    return cast(_Value, _first_seen(value))


@lru_cache(maxsize=4096)
def _first_seen(value: Hashable) -> Hashable:
    return value


def _token_ref(data: object) -> SecretRef:
    """A reference shared with the integrations that name the same token, but not a
    literal token: one that was replaced must not outlive its integrations."""
    ref = secret_ref_from_data(data)
    return ref if ref.kind == "plain" else _one(ref)


def integration_from_data(data: Mapping[str, Any], locate: Locate | None = None) -> Integration:
    """Build an Integration from one schema-valid mapping, applying the defaults.

    ``locate`` maps a path inside the integration to where it was declared.
    """

    def where(*path: str | int) -> Source | None:
        return locate(path) if locate else None

    hc = data["hipchat"]
    rooms = tuple(
        Room(
            id=str(room["id"]),
            token=_token_ref(room["token"]),
            source=where("hipchat", "rooms", r, "token"),
        )
        for r, room in enumerate(hc["rooms"])
    )
    hipchat = HipChat(
        endpoint=sys.intern(api_root(hc["endpoint"])),
        rooms=rooms,
        sender=hc.get("from"),
        color=hc.get("color", "yellow"),
        notify=hc.get("notify", False),
        message_format=hc.get("message_format", "html"),
        ca_file=hc.get("tls", {}).get("ca_file"),
        card=hc.get("card", False),
    )
    disp = data.get("display", {})
    display = _one(
        Display(
            classifiers=disp.get("classifiers", True),
            callstack=disp.get("callstack", True),
            attributes=disp.get("attributes", True),
            attribute_list=tuple(disp.get("attribute_list", ())),
            include_hostname=disp.get("include_hostname", True),
        )
    )
    actions = tuple(
        Action(
            action=a["action"],
            attribute=a["attribute"],
            regex=a["regex"],
            target=a.get("target"),
            source=where("actions", i),
        )
        for i, a in enumerate(data.get("actions", ()))
    )
    trig = data.get("trigger", {})
    frequency = trig.get("frequency")
    trigger = _one(
        Trigger(
            event=trig.get("event", "group"),
            frequency=None if frequency is None else parse_duration(frequency),
            threshold=trig.get("threshold"),
        )
    )
    return Integration(
        uid=data["uid"],
        project=data["project"],
        name=data["name"],
        state=data.get("state", "enabled"),
        hipchat=hipchat,
        display=display,
        actions=actions,
        trigger=trigger,
        source=where(),
    )


def integration_to_data(integration: Integration) -> dict[str, Any]:
    """The canonical data form (defaults filled in), tokens as public references."""
    hc = integration.hipchat
    hipchat: dict[str, Any] = {
        "endpoint": hc.endpoint,
        "rooms": [{"id": room.id, "token": room.token.public_data()} for room in hc.rooms],
        "color": hc.color,
        "notify": hc.notify,
        "message_format": hc.message_format,
        "card": hc.card,
    }
    if hc.sender is not None:
        hipchat["from"] = hc.sender
    if hc.ca_file is not None:
        hipchat["tls"] = {"ca_file": hc.ca_file}
    trigger: dict[str, Any] = {"event": integration.trigger.event}
    if integration.trigger.frequency is not None:
        trigger["frequency"] = integration.trigger.frequency
    if integration.trigger.threshold is not None:
        trigger["threshold"] = integration.trigger.threshold
    d = integration.display
    return {
        "uid": integration.uid,
        "project": integration.project,
        "name": integration.name,
        "state": integration.state,
        "hipchat": hipchat,
        "display": {
            "classifiers": d.classifiers,
            "callstack": d.callstack,
            "attributes": d.attributes,
            "attribute_list": list(d.attribute_list),
            "include_hostname": d.include_hostname,
        },
        # Only what defines an action: its source position is where it was read, not data.
        "actions": [
            {
                f.name: getattr(a, f.name)
                for f in fields(a)
                if f.compare and getattr(a, f.name) is not None
            }
            for a in integration.actions
        ],
        "trigger": trigger,
    }
