"""Config flow step 7: desired integrations against active ones, what to create,
update, delete and keep.

Pure: the registry applies a plan, ``syncd plan`` prints one. Keyed by ``uid``;
an integration equal to its active self is kept as it is, never recreated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.config.model import Integration, integration_from_data, integration_to_data

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


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def render_plan(result: Plan, *, against: str) -> str:
    """Human-readable, in the manner of ``flux diff``: one block per change."""
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
    if not result.changed:
        lines.append(f"No changes against {against}.")
    lines.append(f"Plan: {result.summary()}.")
    return "\n".join(lines) + "\n"


def active_from_data(items: Sequence[Mapping[str, Any]]) -> dict[str, Integration]:
    """The active set as the daemon reports it (``integration_to_data`` form)."""
    return {item["uid"]: integration_from_data(item) for item in items}
