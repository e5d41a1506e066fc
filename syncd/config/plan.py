"""Config flow step 7: desired integrations against active ones, what to create,
update, delete and keep.

Pure: the registry applies a plan, ``syncd plan`` prints one. Keyed by ``uid``;
an integration equal to its active self is kept as it is, never recreated.

The mutes are planned beside the integrations, not in ``Plan``: applying a set
replaces its mutes whole, so only ``syncd plan`` needs their changes, for the
reviewer of a change that silences a room.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syncd.config.diagnostics import printable
from syncd.config.model import Integration, integration_from_data, integration_to_data
from syncd.config.mutes import Mute, MuteMatch, parse_until

# A changed field: its dotted path, the value before and the value after.
FieldChange = tuple[str, Any, Any]


@dataclass(frozen=True)
class Update:
    before: Integration
    after: Integration

    @property
    def uid(self) -> str:
        return self.after.uid

    def changes(self) -> list[FieldChange]:
        """(dotted path, before, after) for each changed field, tokens as public refs."""
        return _diff(integration_to_data(self.before), integration_to_data(self.after), "")


@dataclass(frozen=True)
class Plan:
    create: tuple[Integration, ...] = ()
    update: tuple[Update, ...] = ()
    delete: tuple[Integration, ...] = ()
    keep: tuple[Integration, ...] = ()
    # Unchanged too, but not even looked at: their files were not read again.
    untouched: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.create or self.update or self.delete)

    @property
    def unchanged(self) -> int:
        return len(self.keep) + self.untouched

    def summary(self) -> str:
        return (
            f"{len(self.create)} to create, {len(self.update)} to update, "
            f"{len(self.delete)} to delete, {self.unchanged} unchanged"
        )

    def done(self) -> str:
        """What was done, by uid, for the log: ``created a, b; updated c; removed d``."""
        parts = [
            f"{verb} {_uids(uids)}"
            for verb, uids in (
                ("created", [i.uid for i in self.create]),
                ("updated", [u.uid for u in self.update]),
                ("removed", [i.uid for i in self.delete]),
            )
            if uids
        ]
        return "; ".join(parts) or "no changes"


def _uids(uids: Sequence[str], shown: int = 10) -> str:
    """At most ``shown`` uids, then how many more."""
    listed = ", ".join(uids[:shown])
    return listed if len(uids) <= shown else f"{listed} and {len(uids) - shown} more"


def plan(desired: Iterable[Integration], active: Mapping[str, Integration]) -> Plan:
    create: list[Integration] = []
    update: list[Update] = []
    keep: list[Integration] = []
    wanted: set[str] = set()
    for integration in desired:
        wanted.add(integration.uid)
        current = active.get(integration.uid)
        if current is None:
            create.append(integration)
        elif current is integration or current == integration:
            keep.append(current)
        else:
            update.append(Update(current, integration))
    delete = [active[uid] for uid in sorted(active.keys() - wanted)]
    return Plan(tuple(create), tuple(update), tuple(delete), tuple(keep))


def _diff(before: Any, after: Any, path: str) -> list[FieldChange]:
    """Mappings, and lists of mappings of one length, are compared item by item so a
    change names the field; anything else changes as a whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        return _diff_mappings(before, after, path)
    if _paired_mappings(before, after):
        return [
            change
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for change in _diff(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [(path, before, after)]


def _diff_mappings(before: dict[str, Any], after: dict[str, Any], path: str) -> list[FieldChange]:
    out: list[FieldChange] = []
    for key in [*before, *(k for k in after if k not in before)]:
        sub = f"{path}.{key}" if path else key
        out.extend(_diff(before.get(key), after.get(key), sub))
    return out


def _paired_mappings(before: Any, after: Any) -> bool:
    """Two lists of mappings with as many items each (rooms, actions)."""
    if not (isinstance(before, list) and isinstance(after, list)):
        return False
    return len(before) == len(after) and all(isinstance(x, dict) for x in [*before, *after])


PlanFormat = Literal["text", "markdown", "json"]


@dataclass(frozen=True)
class MuteChange:
    before: Mute
    after: Mute

    def changes(self) -> list[FieldChange]:
        """(field, before, after) for each field a reviewer reads: until, reason,
        match, rooms; its index alone moving is no change."""
        old, new = _mute_fields(self.before), _mute_fields(self.after)
        return [(key, old[key], new[key]) for key in new if old[key] != new[key]]


@dataclass(frozen=True)
class MutePlan:
    add: tuple[Mute, ...] = ()
    change: tuple[MuteChange, ...] = ()
    remove: tuple[Mute, ...] = ()
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.add or self.change or self.remove)

    @property
    def any(self) -> bool:
        """Whether either set has a mute (else the plan reads as it did before mutes)."""
        return self.changed or self.unchanged > 0

    def summary(self) -> str:
        return (
            f"{len(self.add)} to add, {len(self.change)} to change, "
            f"{len(self.remove)} to remove, {self.unchanged} unchanged"
        )


def _mute_fields(mute: Mute) -> dict[str, Any]:
    return {
        "until": mute.until_text,
        "reason": mute.reason,
        "match": [{"attribute": m.attribute, "regex": m.regex} for m in mute.match],
        "rooms": None if mute.rooms is None else list(mute.rooms),
    }


def _whom(mute: Mute) -> Hashable:
    return (mute.file, mute.uid, mute.project)


def _identity(mute: Mute) -> Hashable:
    return (mute.file, mute.uid, mute.project, mute.match, mute.rooms)


def _content(mute: Mute) -> Hashable:
    return (mute.match, mute.rooms, mute.until, mute.reason)


_Pairs = list[tuple[Mute, Mute]]


def plan_mutes(desired: Sequence[Mute], active: Sequence[Mute]) -> MutePlan:
    """Mutes are paired across the sets by what they hold back, never by index: a
    mute's index is only its place in its file, so inserting one above another
    would otherwise read as every mute below it changed, and a reviewer would have
    to compare each by eye. First by file, integration or project, match and rooms
    (so a changed ``until`` or ``reason`` is a change of that mute), then what is
    left by file and integration or project alone (so other rooms or another match
    for the same integration read as a change, not as one removed and one added).
    Mutes alike on those keys pair equal ones first, then in their files' order.
    A mute moved to another file is removed there and added here: its file is
    part of its name, in the plan and in ``/status``."""
    exact, added, removed = _pair(desired, active, _identity)
    loose, added, removed = _pair(added, removed, _whom)
    order = {id(mute): n for n, mute in enumerate(desired)}
    pairs = sorted(exact + loose, key=lambda pair: order[id(pair[1])])
    changes = tuple(MuteChange(b, a) for b, a in pairs if _content(b) != _content(a))
    return MutePlan(tuple(added), changes, tuple(removed), len(pairs) - len(changes))


def _pair(
    desired: Sequence[Mute], active: Sequence[Mute], key: Callable[[Mute], Hashable]
) -> tuple[_Pairs, list[Mute], list[Mute]]:
    """(active, desired) pairs of one ``key``, equal ones first; the desired and
    the active left unpaired, each in its order."""
    waiting: dict[Hashable, list[Mute]] = {}
    for mute in active:
        waiting.setdefault(key(mute), []).append(mute)
    equal, unequal = _take(desired, waiting, key, _equal)
    first, unpaired = _take(unequal, waiting, key, _first)
    left = {id(mute) for group in waiting.values() for mute in group}
    return equal + first, unpaired, [mute for mute in active if id(mute) in left]


def _equal(group: list[Mute], mute: Mute) -> int | None:
    return next((n for n, old in enumerate(group) if _content(old) == _content(mute)), None)


def _first(group: list[Mute], _: Mute) -> int | None:
    return 0 if group else None


def _take(
    desired: Sequence[Mute],
    waiting: dict[Hashable, list[Mute]],
    key: Callable[[Mute], Hashable],
    choose: Callable[[list[Mute], Mute], int | None],
) -> tuple[_Pairs, list[Mute]]:
    """Each desired mute paired with the waiting one ``choose`` picks of its key
    (taken from ``waiting``), and the desired ones left."""
    pairs: _Pairs = []
    left: list[Mute] = []
    for mute in desired:
        group = waiting.get(key(mute), [])
        chosen = choose(group, mute)
        if chosen is None:
            left.append(mute)
        else:
            pairs.append((group.pop(chosen), mute))
    return pairs, left


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _shown(value: Any) -> str:
    """A config's value as JSON, its control characters escaped on the way out."""
    return printable(json.dumps(value, sort_keys=True, ensure_ascii=False))


def _span(seconds: float) -> str:
    """``2 days 3 hours``: to the minute, at most two units."""
    days, rest = divmod(int(abs(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    units = ((days, "day"), (hours, "hour"), (rest // 60, "minute"))
    said = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in units if n]
    return " ".join(said[:2]) or "less than a minute"


def _when(mute: Mute, now: float) -> str:
    left = mute.until - now
    return f"in {_span(left)}" if left > 0 else f"ended {_span(left)} ago"


def _describe(mute: Mute, now: float, was: str = "") -> str:
    """Whom, which rooms, which events, until when and why, in one line: the
    reason last, escaped, so nothing in it can pass for another line of the plan."""
    whom = f"integration {mute.uid}" if mute.uid is not None else f"project {mute.project}"
    rooms = "every room" if mute.rooms is None else f"rooms [{', '.join(mute.rooms)}]"
    match = "".join(f", match {m.attribute} ~ {_shown(m.regex)}" for m in mute.match)
    until = f"until {mute.until_text} ({_when(mute, now)})"
    said = f"{mute.name}{was}: {whom}, {rooms}{match}, {until}, reason: {mute.reason}"
    return printable(said)


def _mute_lines(mutes: MutePlan, now: float) -> list[str]:
    lines = [f"+ mute {_describe(mute, now)}" for mute in mutes.add]
    for change in mutes.change:
        moved = change.before.index != change.after.index
        was = f" (was mutes[{change.before.index}])" if moved else ""
        lines.append(f"~ mute {_describe(change.after, now, was)}")
        lines.extend(f"    {p}: {_shown(b)} -> {_shown(a)}" for p, b, a in change.changes())
    lines.extend(f"- unmute {_describe(mute, now)}" for mute in mutes.remove)
    return lines


def _text(result: Plan, against: str, mutes: MutePlan, now: float) -> str:
    """In the manner of ``flux diff``: one block per change."""
    lines: list[str] = []
    for integration in result.create:
        where = f"  ({integration.source})" if integration.source else ""
        title = f"{integration.project} / {integration.name}"
        lines.append(f"+ create {integration.uid}: {title}{where}")
    for upd in result.update:
        where = f"  ({upd.after.source})" if upd.after.source else ""
        lines.append(f"~ update {upd.uid}{where}")
        lines.extend(f"    {p}: {_show(b)} -> {_show(a)}" for p, b, a in upd.changes())
    for integration in result.delete:
        lines.append(f"- delete {integration.uid}: {integration.project} / {integration.name}")
    lines.extend(_mute_lines(mutes, now))
    if not (result.changed or mutes.changed):
        lines.append(f"No changes against {against}.")
    muted = f"; mutes: {mutes.summary()}" if mutes.any else ""
    lines.append(f"Plan: {result.summary()}{muted}.")
    return "\n".join(lines) + "\n"


def _markdown(result: Plan, against: str, mutes: MutePlan, now: float) -> str:
    """For a pull-request comment: the text plan in a ``diff`` block, so its ``+``
    and ``-`` lines are coloured; the fence is longer than any run of backticks
    in it, so no reason or name can close it and write markdown of its own."""
    body = _text(result, against, mutes, now)
    fence = "`" * max(3, _backticks(body) + 1)
    return f"### syncd plan against {printable(against)}\n\n{fence}diff\n{body}{fence}\n"


def _backticks(text: str) -> int:
    """The longest run of backticks in ``text``."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


def _mute_json(mute: Mute, now: float) -> dict[str, Any]:
    """As ``/status`` lists a mute, its texts escaped, since a CI step prints them."""
    return {
        "mute": printable(mute.name),
        "file": printable(mute.file),
        "index": mute.index,
        "uid": mute.uid,
        "project": mute.project,
        "rooms": None if mute.rooms is None else list(mute.rooms),
        "match": [{"attribute": m.attribute, "regex": m.regex} for m in mute.match],
        "until": mute.until_text,
        "remaining_seconds": max(0, int(mute.until - now)),
        "reason": printable(mute.reason),
    }


def _escaped(value: Any) -> Any:
    return printable(value) if isinstance(value, str) else value


def _json(result: Plan, against: str, mutes: MutePlan, now: float) -> str:
    changed = [
        {
            **_mute_json(c.after, now),
            "was": printable(c.before.name),
            "changes": [
                {"field": p, "before": _escaped(b), "after": _escaped(a)} for p, b, a in c.changes()
            ],
        }
        for c in mutes.change
    ]
    document = {
        "against": against,
        "changed": result.changed or mutes.changed,
        "integrations": {
            "create": [i.uid for i in result.create],
            "update": [
                {
                    "uid": u.uid,
                    "changes": [{"path": p, "before": b, "after": a} for p, b, a in u.changes()],
                }
                for u in result.update
            ],
            "delete": [i.uid for i in result.delete],
            "unchanged": result.unchanged,
        },
        "mutes": {
            "add": [_mute_json(m, now) for m in mutes.add],
            "change": changed,
            "remove": [_mute_json(m, now) for m in mutes.remove],
            "unchanged": mutes.unchanged,
        },
    }
    return json.dumps(document, indent=2) + "\n"


_RENDERERS: dict[str, Callable[[Plan, str, MutePlan, float], str]] = {
    "text": _text,
    "markdown": _markdown,
    "json": _json,
}


def render_plan(
    result: Plan,
    *,
    against: str,
    mutes: MutePlan = MutePlan(),
    now: float | None = None,
    fmt: PlanFormat = "text",
) -> str:
    """The plan in ``fmt``; ``now``: when the mutes' times are counted from (None:
    the wall clock)."""
    at = time.time() if now is None else now
    return _RENDERERS[fmt](result, against, mutes, at)


def mute_to_data(mute: Mute) -> dict[str, Any]:
    """A mute as ``/v1/registry`` gives it: as written, so that the plan against a
    daemon compares like with like (its texts are escaped where printed, not here:
    JSON carries them safely), and ``until_seconds`` exact where ``until`` is
    shown to the second."""
    return {
        "file": mute.file,
        "index": mute.index,
        "uid": mute.uid,
        "project": mute.project,
        "rooms": None if mute.rooms is None else list(mute.rooms),
        "match": [{"attribute": m.attribute, "regex": m.regex} for m in mute.match],
        "until": mute.until_text,
        "until_seconds": mute.until,
        "reason": mute.reason,
    }


def mutes_from_data(items: Sequence[Mapping[str, Any]]) -> tuple[Mute, ...]:
    """The active set's mutes as the daemon reports them (``mute_to_data`` form)."""
    return tuple(_mute_from_data(item) for item in items)


def _mute_from_data(item: Mapping[str, Any]) -> Mute:
    seconds = item.get("until_seconds")
    rooms = item.get("rooms")
    return Mute(
        file=str(item["file"]),
        index=int(item["index"]),
        until=float(seconds) if seconds is not None else parse_until(str(item["until"])),
        reason=str(item["reason"]),
        uid=item.get("uid"),
        project=item.get("project"),
        match=tuple(MuteMatch(str(m["attribute"]), str(m["regex"])) for m in item.get("match", ())),
        rooms=None if rooms is None else tuple(str(room) for room in rooms),
    )


def active_from_data(items: Sequence[Mapping[str, Any]]) -> dict[str, Integration]:
    """The active set as the daemon reports it (``integration_to_data`` form)."""
    return {item["uid"]: integration_from_data(item) for item in items}
