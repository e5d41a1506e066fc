"""The active notifier registry: validated sets applied all-or-nothing.

Readers take ``registry.snapshot``, an immutable value swapped in one
assignment, so the delivery path never takes a lock. Writers are serialised.

A daemon keeps one notifier per integration, 50,000 of them in a large set:
an integration's tokens are a mapping of 48 bytes when it has one room, and
each token is resolved once per set applied, one text shared by every room
that names it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType

from syncd.config.configset import Changes, ConfigSet
from syncd.config.diagnostics import Diagnostic
from syncd.config.model import Integration, Source
from syncd.config.mutes import Mute
from syncd.config.plan import Plan, Update, plan
from syncd.config.secrets import Redactor, SecretError, SecretRef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notifier:
    integration: Integration
    tokens: Mapping[str, str] = field(repr=False)
    generation: int = 1
    updated_at: float = 0.0

    @property
    def uid(self) -> str:
        return self.integration.uid


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class _OneRoom(Mapping[str, str]):
    """The tokens of an integration with one room, as most have: 48 bytes, where a
    dict and its read-only proxy take 260. Compares as any mapping does; its repr
    is object's, which shows no token."""

    room: str
    token: str

    def __getitem__(self, room: str) -> str:
        if room == self.room:
            return self.token
        raise KeyError(room)

    def __iter__(self) -> Iterator[str]:
        yield self.room

    def __len__(self) -> int:
        return 1


def _frozen_tokens(tokens: dict[str, str]) -> Mapping[str, str]:
    if len(tokens) == 1:
        ((room, token),) = tokens.items()
        return _OneRoom(room, token)
    return MappingProxyType(tokens)


@dataclass(frozen=True)
class Snapshot:
    notifiers: Mapping[str, Notifier] = field(default_factory=lambda: MappingProxyType({}))
    revision: str = ""
    config_hash: str = ""
    applied_at: float | None = None
    # The set's mutes: routing consults them, and passing their time needs no reload.
    mutes: tuple[Mute, ...] = ()
    # The set's tokens, as the log masks them (each apply changes the last set's);
    # never shown, and not compared (the notifiers hold the same tokens).
    redactor: Redactor = field(default_factory=Redactor, repr=False, compare=False)

    def active_mutes(self, now: float) -> tuple[Mute, ...]:
        return tuple(mute for mute in self.mutes if mute.active(now))

    @property
    def integrations(self) -> dict[str, Integration]:
        return {uid: n.integration for uid, n in self.notifiers.items()}

    @cached_property
    def stopped(self) -> frozenset[str]:
        """The integrations whose delivery is paused: their items wait unclaimed."""
        return frozenset(
            uid for uid, n in self.notifiers.items() if n.integration.state == "stopped"
        )


@dataclass(frozen=True)
class Outcome:
    """The result of one reconcile attempt, kept for ``/status``."""

    ok: bool
    revision: str
    at: float
    plan: Plan | None = None
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def changed(self) -> bool:
        return self.plan is not None and self.plan.changed


Resolver = Callable[[SecretRef], str]
Listener = Callable[[Plan, Snapshot], None]
Watcher = Callable[[Snapshot], None]
# Names the files of problems found as a set is applied, for whoever reads them.
Relabel = Callable[[Sequence[Diagnostic]], Sequence[Diagnostic]]


def _resolve_ref(ref: SecretRef) -> str:
    return ref.resolve()


class Registry:
    def __init__(
        self,
        *,
        resolver: Resolver = _resolve_ref,
        clock: Callable[[], float] = time.time,
        listeners: Sequence[Listener] = (),
        max_prune: int | None = None,
        relabel: Relabel = tuple,
    ) -> None:
        """``relabel`` renames the files of the problems found while applying a set
        (a token that does not resolve), as the loader's were before it: a git
        source's checkout lies in the state dir, and its files are named as the
        repository names them."""
        self._resolver = resolver
        self._max_prune = max_prune
        self._relabel = relabel
        self._clock = clock
        self._listeners = list(listeners)
        self._watchers: list[Watcher] = []
        self._write = threading.Lock()
        self.snapshot = Snapshot()
        self.last_attempt: Outcome | None = None
        self.last_success: Outcome | None = None
        self.last_failure: Outcome | None = None
        self.attempts = 0
        self.failures = 0

    def add_listener(self, listener: Listener) -> None:
        """Called with each applied plan before readers can see the new set."""
        self._listeners.append(listener)

    def add_watcher(self, watcher: Watcher) -> None:
        """Called with each new set once readers see it: to wake whoever should now
        find something in it (a listener, called before, would wake them too early)."""
        self._watchers.append(watcher)

    def apply(
        self, config: ConfigSet, revision: str, *, source: str = "", reuse_tokens: bool = False
    ) -> Outcome:
        """Apply a set all or nothing; ``source`` (the config dir) is where a
        problem of the whole set, such as too many removals, is reported. With
        ``reuse_tokens``, an integration that is the very value already active
        (its file was not read again) keeps its tokens instead of resolving
        them: a load after one file changed costs that file's tokens."""
        with self._write:
            self.attempts += 1
            return self._apply(config, revision, source, reuse_tokens, attempt=True)

    def restore(self, config: ConfigSet, revision: str) -> Outcome:
        """Serve a saved set (the last-known-good) without counting it as an attempt:
        the attempt that failed stays the last one, in /status and the metrics."""
        with self._write:
            return self._apply(config, revision, "", reuse_tokens=False, attempt=False)

    def _record(self, outcome: Outcome) -> Outcome:
        self.last_attempt = outcome
        if outcome.ok:
            self.last_success = outcome
        else:
            self.last_failure = outcome
            self.failures += 1
        return outcome

    def _refused(self, outcome: Outcome, attempt: bool) -> Outcome:
        return self._record(outcome) if attempt else outcome

    def _apply(
        self, config: ConfigSet, revision: str, source: str, reuse_tokens: bool, *, attempt: bool
    ) -> Outcome:
        now = self._clock()
        if not config.valid:
            return self._refused(
                Outcome(False, revision, now, diagnostics=config.diagnostics), attempt
            )
        current = self.snapshot.notifiers
        delta = _delta(config, self.snapshot) if reuse_tokens else None
        desired, active = _looked_at(config, delta, current)
        reused = _reusable(desired, current) if reuse_tokens else {}
        tokens, problems = self._resolve_all(desired, reused)
        if problems:
            named = self._relabel(problems)
            return self._refused(
                Outcome(False, revision, now, diagnostics=tuple(sorted(named))), attempt
            )
        result = _with_rotations(plan(desired, active), current, tokens, reused)
        result = replace(result, untouched=len(current) - len(active))
        too_many = _too_many_removals(result, self._max_prune, source)
        if too_many is not None:
            return self._refused(Outcome(False, revision, now, diagnostics=(too_many,)), attempt)
        notifiers = _next_notifiers(result, current, tokens, now, untouched=delta is not None)
        if delta is None or result.create:  # in the set's order
            notifiers = {i.uid: notifiers[i.uid] for i in config.integrations}
        redactor = self.snapshot.redactor.changed(
            _tokens(current, (*result.update, *result.delete)),
            _tokens(notifiers, (*result.update, *result.create)),
        )
        snapshot = Snapshot(
            MappingProxyType(notifiers), revision, config.digest, now, config.mutes, redactor
        )
        outcome = Outcome(True, revision, now, plan=result)
        self._publish(result, snapshot, outcome if attempt else None)
        return outcome

    def _publish(self, result: Plan, snapshot: Snapshot, attempt: Outcome | None) -> None:
        # Listeners act before readers can see the new set: an integration's
        # queued items are settled by the time a worker finds it gone.
        for listener in self._listeners:
            try:
                listener(result, snapshot)
            except Exception:
                log.exception("a registry listener failed")
        # The attempt is recorded before the set is seen: a reader of the set,
        # then of the last attempt (/status), never finds the new set beside the
        # failure that came before it.
        if attempt is not None:
            self._record(attempt)
        self.snapshot = snapshot
        for watcher in self._watchers:
            try:
                watcher(snapshot)
            except Exception:
                log.exception("a registry watcher failed")

    def _resolve_all(
        self, integrations: Sequence[Integration], reused: Mapping[str, Mapping[str, str]]
    ) -> tuple[dict[str, Mapping[str, str]], list[Diagnostic]]:
        problems: list[Diagnostic] = []
        resolved: dict[SecretRef, str | SecretError] = {}
        tokens = {
            i.uid: reused[i.uid] if i.uid in reused else self._resolve(i, problems, resolved)
            for i in integrations
        }
        return tokens, problems

    def _resolve(
        self,
        integration: Integration,
        problems: list[Diagnostic],
        resolved: dict[SecretRef, str | SecretError],
    ) -> Mapping[str, str]:
        """Room id to token; an unresolvable ref becomes a diagnostic at its declaration.
        ``resolved``: each ref this apply resolved, and what it gave."""
        tokens: dict[str, str] = {}
        for room in integration.rooms:
            token = resolved.get(room.token)
            if token is None:
                token = resolved[room.token] = self._resolve_one(room.token)
            if isinstance(token, SecretError):
                src = room.source or integration.source or Source("", 1, 1)
                message = f"token {room.token}: {token}"
                problems.append(Diagnostic(src.file, src.line, src.col, src.path, message))
            else:
                tokens[room.id] = token
        return _frozen_tokens(tokens)

    def _resolve_one(self, ref: SecretRef) -> str | SecretError:
        try:
            return self._resolver(ref)
        except SecretError as exc:
            return exc


def _too_many_removals(result: Plan, max_prune: int | None, source: str) -> Diagnostic | None:
    """A set that drops more integrations than the operator allows at once is refused:
    a truncated checkout must not silently delete everything."""
    if max_prune is None or len(result.delete) <= max_prune:
        return None
    uids = [i.uid for i in result.delete]
    shown = ", ".join(uids[:10]) + (f" and {len(uids) - 10} more" if len(uids) > 10 else "")
    message = (
        f"would remove {len(uids)} integrations at once ({shown}), more than "
        f"--max-prune {max_prune}; apply it in steps or raise --max-prune"
    )
    return Diagnostic(source, 1, 1, "", message)


def _delta(config: ConfigSet, snapshot: Snapshot) -> Changes | None:
    """The set's changes, when they were made to the very set being served."""
    changes = config.changes
    if changes is None or not snapshot.config_hash or changes.since != snapshot.config_hash:
        return None
    return changes


def _looked_at(
    config: ConfigSet, delta: Changes | None, current: Mapping[str, Notifier]
) -> tuple[Sequence[Integration], dict[str, Integration]]:
    """What to plan: every integration, or with ``delta`` only those of the files
    read again, against what they held."""
    if delta is None:
        return config.integrations, {u: n.integration for u, n in current.items()}
    touched = (i.uid for i in (*delta.before, *delta.after))
    return delta.after, {u: current[u].integration for u in touched if u in current}


def _reusable(
    integrations: Sequence[Integration], current: Mapping[str, Notifier]
) -> dict[str, Mapping[str, str]]:
    """The tokens of the integrations that are the active values themselves."""
    reused: dict[str, Mapping[str, str]] = {}
    for integration in integrations:
        active = current.get(integration.uid)
        if active is not None and active.integration is integration:
            reused[integration.uid] = active.tokens
    return reused


def _with_rotations(
    result: Plan,
    current: Mapping[str, Notifier],
    tokens: Mapping[str, Mapping[str, str]],
    reused: Mapping[str, Mapping[str, str]],
) -> Plan:
    """A kept integration whose token changed is an update: its notifier gets the new one."""
    rotated = tuple(
        Update(i, i)
        for i in result.keep
        if i.uid not in reused and dict(current[i.uid].tokens) != dict(tokens[i.uid])
    )
    if not rotated:
        return result
    rotated_uids = {u.uid for u in rotated}
    return Plan(
        result.create,
        result.update + rotated,
        result.delete,
        tuple(i for i in result.keep if i.uid not in rotated_uids),
    )


def _tokens(
    notifiers: Mapping[str, Notifier], changed: Iterable[Integration | Update]
) -> Iterator[str]:
    """The tokens of the ``changed`` integrations' notifiers, once per room: only an
    updated, created or removed integration has a notifier of other tokens (a
    kept one is the same object, and a rotation is an update)."""
    for integration in changed:
        yield from notifiers[integration.uid].tokens.values()


def _next_notifiers(
    result: Plan,
    current: Mapping[str, Notifier],
    tokens: Mapping[str, Mapping[str, str]],
    now: float,
    *,
    untouched: bool,
) -> dict[str, Notifier]:
    """Kept notifiers as they are; updated ones keep their runtime state. With
    ``untouched``, the plan covers only some integrations and the rest stay."""
    if untouched:
        # A proxy's copy() clones the dict behind it; dict(proxy) walks it in Python.
        notifiers: dict[str, Notifier] = (
            current.copy() if isinstance(current, MappingProxyType) else dict(current)
        )
        for gone in result.delete:
            del notifiers[gone.uid]
    else:
        notifiers = {i.uid: current[i.uid] for i in result.keep}
    # Each mapping of tokens is read-only already (``_frozen_tokens``, or a kept
    # notifier's own).
    for upd in result.update:
        old = current[upd.uid]
        notifiers[upd.uid] = Notifier(upd.after, tokens[upd.uid], old.generation + 1, now)
    for integration in result.create:
        notifiers[integration.uid] = Notifier(integration, tokens[integration.uid], 1, now)
    return notifiers
