"""Which mute, if any, holds back a notification for a room.

Pure: the set's mutes (``config.mutes``), indexed once per published set by the
integration and the project they name, so an event of a project no mute names
costs one look-up; a mute is active while ``now`` is before its ``until``, on the
clock routing is given, so a mute ends at its time without a reload. A mute's
``match`` is judged by the actions' own matcher (``rules.find_match``): what
``syncd rules test`` shows of an action's regex holds for a mute's too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syncd.config.model import Integration
from syncd.config.mutes import Mute
from syncd.events.rules import find_match


@dataclass(frozen=True)
class Mutes:
    """The set's mutes by the uid and by the project they name."""

    by_uid: Mapping[str, tuple[Mute, ...]] = field(default_factory=dict)
    by_project: Mapping[str, tuple[Mute, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, mutes: Iterable[Mute]) -> Mutes:
        by_uid: dict[str, list[Mute]] = {}
        by_project: dict[str, list[Mute]] = {}
        for mute in mutes:
            if mute.uid is not None:
                by_uid.setdefault(mute.uid, []).append(mute)
            else:
                by_project.setdefault(mute.project or "", []).append(mute)
        return cls(
            {k: tuple(v) for k, v in by_uid.items()}, {k: tuple(v) for k, v in by_project.items()}
        )

    def of_integration(self, integration: Integration, now: float) -> tuple[Mute, ...]:
        """The active mutes that name ``integration``, in the set's order."""
        named = (
            *self.by_uid.get(integration.uid, ()),
            *self.by_project.get(integration.project, ()),
        )
        return tuple(mute for mute in named if mute.active(now))

    def covering(
        self,
        integration: Integration,
        room: str,
        attributes: Mapping[str, str] | None,
        now: float,
    ) -> Mute | None:
        """The first active mute that holds back ``integration``'s notification for
        ``room``; ``attributes`` None for a digest, which only a mute without
        ``match`` holds back (it stands for several events)."""
        for mute in self.of_integration(integration, now):
            if mute.holds_room(room) and matches(mute, attributes):
                return mute
        return None


NO_MUTES = Mutes()


def matches(mute: Mute, attributes: Mapping[str, str] | None) -> bool:
    """Every entry of the mute's ``match`` is found in the event's attributes."""
    if not mute.match:
        return True
    if attributes is None:
        return False
    return all(find_match(entry, attributes) is not None for entry in mute.match)
