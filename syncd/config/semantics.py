"""Config flow step 4: rules a JSON Schema cannot express.

Within one file (regexes compile, rooms listed once, tokens not in plain text
and within the operator's bounds and the file's scope, endpoints that name the
server and not part of its API, settings that would silently do nothing or
hide something: a threshold without a frequency, a card over mentions), kept
with the file's cached result; across files
(``uid`` unique, ``name`` unique within a project), checked again on every load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from syncd.config.diagnostics import Diagnostic, Listing, Problem, Severity, Unworded
from syncd.config.discovery import ConfigFiles
from syncd.config.loader import DataPath, LoadedFile
from syncd.config.model import DurationTooLong, Endpoint, parse_duration, read_endpoint
from syncd.config.patterns import PatternError, compile_pattern
from syncd.config.reach import (
    DEFAULT_REACH,
    Reach,
    ca_file_problem,
    credential_problem,
    endpoint_problem,
    env_problem,
    file_problem,
    http_problem,
    path_problem,
    well_formed,
)
from syncd.config.scopes import place_of, scope_problem

# Plain http the operator allowed still warns where the tokens cross a network.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Options:
    allow_plaintext_tokens: bool = False
    reach: Reach = DEFAULT_REACH
    # What uses the tokens (run, test) refuses a literal one; validate only warns.
    refuse_plaintext_tokens: bool = False
    # Globs of files discovery leaves out (--exclude); discovery.Glob says how they match.
    exclude: tuple[str, ...] = ()

    @property
    def files(self) -> ConfigFiles:
        return ConfigFiles(self.exclude)


DEFAULT_OPTIONS = Options()


def _integrations(loaded: LoadedFile) -> Iterator[tuple[int, dict[str, Any]]]:
    data = loaded.data
    items = data.get("integrations") if isinstance(data, dict) else None
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def unique_key_places(loaded: LoadedFile) -> dict[DataPath, tuple[int, int]]:
    """Where ``check_unique`` may point in this file: the place of each key it
    indexes (:func:`_keys`), each found from its integration's node."""
    places: dict[DataPath, tuple[int, int]] = {}
    keys = list(_keys(loaded))
    items = loaded.data["integrations"] if keys else ()
    for key, index in keys:
        path = ("integrations", index, key[0])
        found = loaded.place(items[index], key[0])
        places[path] = found if found is not None else loaded.position(path)
    return places


Place = tuple[LoadedFile, DataPath]
_Key = tuple[str, ...]
# Where a file sorts among the others, as a text (the daemon's loader keeps one
# per file: filecache.Order).
_Order = str
# Where a clashing key is: per file, in the order the files are listed, the file
# and the indexes of its integrations that hold the key.
_Held = tuple[tuple[LoadedFile, tuple[int, ...]], ...]


def check_unique(files: Sequence[LoadedFile]) -> Clashes:
    """``uid`` across all files and ``name`` within a project; positions only on a clash.

    A clash is reported at every place, each naming the others: the file an edit
    touched is not always the one that sorts last.
    """
    index = UniqueIndex()
    for order, loaded in enumerate(files):
        index.put(loaded.path, f"{order:012d}", loaded)
    return index.diagnostics()


class UniqueIndex:
    """The keys that must be unique, kept per file, so that a change costs the
    changed file's own keys, not every file's. A daemon holds one entry per
    integration for as long as it runs, so an entry is small: a key names the
    one file that holds it, and only a clash is worth a list. A file's keys and
    the indexes of their integrations are kept as two tuples, and a key repeated
    in a file as one object: a file may hold 10,000 integrations, and objects
    made by the thousand set off the daemon's garbage collector."""

    def __init__(self) -> None:
        self._holders: dict[_Key, str | list[str]] = {}
        # Per file: where it sorts, the file itself, its keys and their integrations.
        self._files: dict[str, tuple[_Order, LoadedFile, tuple[_Key, ...], tuple[int, ...]]] = {}
        self._clashing: set[_Key] = set()

    def put(self, file: str, order: _Order, loaded: LoadedFile | None) -> None:
        """Replace what ``file`` holds (None: it is gone); ``order`` sorts the places
        of a clash as the files are listed."""
        held = self._files.pop(file, None)
        for key in held[2] if held else ():
            self._release(key, file)
        if loaded is None:
            return
        keys, indexes = _key_columns(loaded)
        self._files[file] = (order, loaded, keys, indexes)
        for key in keys:
            self._hold(key, file)

    def _hold(self, key: _Key, file: str) -> None:
        holder = self._holders.get(key)
        if holder is None:
            self._holders[key] = file
            return
        if isinstance(holder, str):
            self._holders[key] = [holder, file]
        else:
            holder.append(file)  # in place: K copies of a key cost K, not K^2
        self._clashing.add(key)

    def _release(self, key: _Key, file: str) -> None:
        holder = self._holders.get(key)
        if isinstance(holder, str):
            del self._holders[key]
        elif holder is not None:
            holder.remove(file)
            if len(holder) == 1:
                self._holders[key] = holder[0]
                self._clashing.discard(key)

    def diagnostics(self) -> Clashes:
        held = self._held()
        clashes = []
        for key in sorted(self._clashing):
            what = (
                f"duplicate uid {key[1]!r}"
                if key[0] == "uid"
                else f"duplicate name {key[2]!r} in project {key[1]!r}"
            )
            clashes.append(Clash(what, key[0], tuple(held[key])))
        return Clashes(tuple(clashes))

    def _held(self) -> dict[_Key, list[tuple[LoadedFile, tuple[int, ...]]]]:
        """Every clashing key's places, in the order the files are listed; one pass
        over the keys of the files involved, however many clashes they hold."""
        involved: set[str] = set()
        for key in self._clashing:
            holder = self._holders[key]
            involved.update([holder] if isinstance(holder, str) else holder)
        held: dict[_Key, list[tuple[LoadedFile, tuple[int, ...]]]] = {}
        for file in sorted(involved, key=lambda name: self._files[name][0]):
            _, loaded, keys, indexes = self._files[file]
            mine: dict[_Key, list[int]] = {}
            for key, index in zip(keys, indexes, strict=True):
                if key in self._clashing:
                    mine.setdefault(key, []).append(index)
            for key, found in mine.items():
                held.setdefault(key, []).append((loaded, tuple(found)))
        return held


def _keys(loaded: LoadedFile) -> Iterator[tuple[_Key, int]]:
    """Each key that must be unique, and the index of its integration."""
    for index, item in _integrations(loaded):
        uid = item.get("uid")
        if isinstance(uid, str):
            yield ("uid", uid), index
        name = item.get("name")
        if isinstance(name, str):
            project = item.get("project")
            if isinstance(project, str):
                yield ("name", project, name), index


def _key_columns(loaded: LoadedFile) -> tuple[tuple[_Key, ...], tuple[int, ...]]:
    """:func:`_keys` as two tuples, a key repeated in the file kept once."""
    keys: list[_Key] = []
    indexes: list[int] = []
    once: dict[_Key, _Key] = {}
    for key, index in _keys(loaded):
        keys.append(once.setdefault(key, key))
        indexes.append(index)
    return tuple(keys), tuple(indexes)


_OTHERS_NAMED = 3  # each place names this many others at most: K copies, K short lines


@dataclass(frozen=True)
class Clash:
    """One key held by several integrations: what it is (in words), the field that
    holds it (``uid`` or ``name``), where, and how many places."""

    what: str
    field: str
    held: _Held

    @property
    def count(self) -> int:
        return sum(len(indexes) for _, indexes in self.held)

    def places(self) -> Iterator[Place]:
        for loaded, indexes in self.held:
            for index in indexes:
                yield loaded, ("integrations", index, self.field)


@dataclass(frozen=True)
class Clashes:
    """The keys that clash: one problem per place, worded only if listed, since a
    set lists a thousand of the copies a file may hold. Iterated, each is an
    ``Unworded``; :meth:`add_to` hands them to the files' listings without making
    anything for each of the many that are not listed."""

    clashes: tuple[Clash, ...] = ()

    def __iter__(self) -> Iterator[Problem]:
        for clash in self.clashes:
            for loaded, path in clash.places():
                line, col = loaded.position(path)
                word = partial(_clash_worded, clash, loaded, path)
                yield Unworded(loaded.path, line, col, word)

    def add_to(self, listing: Callable[[str], Listing]) -> None:
        """Each place to the listing of its file. A file's places of one clash are in
        the order of its integrations, which is the file's: once one is past the
        file's cap, so are the rest, counted without their places."""
        for clash in self.clashes:
            field = clash.field
            for loaded, indexes in clash.held:
                file = loaded.path
                problems = listing(file)
                for at, index in enumerate(indexes, 1):
                    path = ("integrations", index, field)
                    line, col = loaded.position(path)
                    if not problems.found(
                        file, line, col, 1, 0, _clash_worded, clash, loaded, path
                    ):
                        problems.count_after(len(indexes) - at)
                        break


def _clash_worded(clash: Clash, loaded: LoadedFile, path: DataPath) -> list[Diagnostic]:
    count = clash.count
    many = count - 1 > _OTHERS_NAMED
    what = f"{clash.what} ({count} places)" if many else clash.what
    first = islice(clash.places(), _OTHERS_NAMED + 1)
    named = [there for there in first if there[0] is not loaded or there[1] != path]
    others = ", ".join(_at(there) for there in named[:_OTHERS_NAMED])
    if many:
        others += f" and {count - 1 - _OTHERS_NAMED} more"
    return [loaded.diagnostic(path, f"{what}; also defined at {others}")]


def add_file_problems(loaded: LoadedFile, options: Options = DEFAULT_OPTIONS) -> None:
    """The rules that need only one file, their problems added to ``loaded.problems``;
    their result can be kept until it changes."""
    scopes = options.reach.scopes
    place = place_of(loaded.path, options.reach.scope_roots) if scopes else None
    found = _Found(loaded)
    for index, item in _integrations(loaded):
        _check_integration(found, ("integrations", index), item, options, place)


@dataclass(frozen=True)
class _Found:
    """Where one file's rule problems go: each placed from the mapping that holds
    its value (``LoadedFile.place``, one look-up), worded only if listed and only
    counted past the file's cap (``diagnostics.Listing``)."""

    loaded: LoadedFile

    def add(
        self,
        holder: dict[str, Any],
        key: str,
        path: DataPath,
        message: str | Callable[[], str],
        *,
        severity: Severity = "error",
        at_key: bool = False,
    ) -> None:
        """A problem at ``path``, the value (or key) at ``key`` in ``holder``."""
        loaded = self.loaded
        at = loaded.place(holder, key, at_key=at_key)
        line, col = at if at is not None else loaded.position(path, at_key=at_key)
        errors = severity == "error"
        loaded.problems.found(
            loaded.path, line, col, int(errors), int(not errors), _said, loaded, path, message,
            severity, at_key,
        )  # fmt: skip


def _said(
    loaded: LoadedFile,
    path: DataPath,
    message: str | Callable[[], str],
    severity: Severity,
    at_key: bool,
) -> list[Diagnostic]:
    text = message if isinstance(message, str) else message()
    return [loaded.diagnostic(path, text, severity=severity, at_key=at_key)]


def _at(where: tuple[LoadedFile, DataPath]) -> str:
    loaded, path = where
    line, col = loaded.position(path)
    return f"{loaded.path}:{line}:{col}"


# What the rules below read of an integration: one without any of them has nothing
# to check (a hostile file holds 10,000 such).
_RULED = frozenset({"actions", "trigger", "hipchat"})


def _check_integration(
    found: _Found,
    base: tuple[str, int],
    item: dict[str, Any],
    options: Options,
    place: tuple[str, ...] | None,
) -> None:
    """``place``: the file's path below the config dir, for ``--scope``."""
    if _RULED.isdisjoint(item):
        return
    if not _check_actions_bound(found, base, item, options):
        # Past a bound, compiling every regex is the cost the bound spares.
        _check_regexes(found, base, item)
    _check_frequency(found, base, item)
    _check_threshold(found, base, item)
    hipchat = _as_dict(item.get("hipchat"))
    _check_card(found, base, item, hipchat)
    _check_endpoint(found, (*base, "hipchat"), hipchat, options.reach)
    _check_ca_file(found, (*base, "hipchat"), hipchat, options.reach)
    rooms: DataPath = (*base, "hipchat", "rooms")
    seen_rooms: dict[str, int] = {}
    for r, room in enumerate(_as_list(hipchat.get("rooms"))):
        _check_listed_once(found, rooms, r, _as_dict(room), seen_rooms)
        _check_token(found, (*rooms, r), _as_dict(room), options, place)


def _check_actions_bound(
    found: _Found, base: tuple[str, int], item: dict[str, Any], options: Options
) -> bool:
    """At most ``max_actions`` actions, and ``max_pattern_bytes`` of regexes in all.
    Whether they are past either bound."""
    actions = item.get("actions")
    if not isinstance(actions, list):
        return False
    where = (*base, "actions")
    over = False
    if len(actions) > options.reach.max_actions:
        found.add(
            item,
            "actions",
            where,
            f"{len(actions):,} actions; an integration may have at most "
            f"{options.reach.max_actions:,} (the operator's --max-actions)",
            at_key=True,
        )
        over = True
    regexes = (_as_dict(action).get("regex") for action in actions)
    size = sum(len(r.encode("utf-8", "surrogatepass")) for r in regexes if isinstance(r, str))
    if size > options.reach.max_pattern_bytes:
        found.add(
            item,
            "actions",
            where,
            f"the regexes of these actions total {size:,} bytes; an integration may have "
            f"at most {options.reach.max_pattern_bytes:,} (the operator's --max-pattern-bytes)",
            at_key=True,
        )
        over = True
    return over


def _check_frequency(found: _Found, base: tuple[str, int], item: dict[str, Any]) -> None:
    """A duration written as text past its bound: the schema's pattern cannot count
    (it bounds a frequency given in seconds itself)."""
    trigger = _as_dict(item.get("trigger"))
    frequency = trigger.get("frequency")
    if not isinstance(frequency, str):
        return
    try:
        parse_duration(frequency)
    except DurationTooLong as exc:
        found.add(trigger, "frequency", (*base, "trigger", "frequency"), str(exc))
    except ValueError:
        return  # not a duration: the schema says so


def _check_regexes(found: _Found, base: tuple[str, int], item: dict[str, Any]) -> None:
    """RE2 compiles every action's regex, so an event never meets a broken one."""
    for i, action in enumerate(_as_list(item.get("actions"))):
        regex = _as_dict(action).get("regex")
        if not isinstance(regex, str):
            continue
        try:
            compile_pattern(regex)
        except PatternError as exc:
            path = (*base, "actions", i, "regex")
            found.add(action, "regex", path, f"invalid regex: {exc}")


def _check_threshold(found: _Found, base: tuple[str, int], item: dict[str, Any]) -> None:
    """A threshold only cuts a frequency window short; without one it silently does
    nothing, which is not what its author meant."""
    trigger = _as_dict(item.get("trigger"))
    if "threshold" not in trigger or not _no_window(trigger.get("frequency")):
        return
    found.add(
        trigger,
        "threshold",
        (*base, "trigger", "threshold"),
        "threshold has no effect without frequency: it counts the events aggregated "
        "within a frequency window, and without one every event that may notify does so "
        "at once; add a frequency or remove the threshold",
        severity="warning",
    )


def _no_window(frequency: object) -> bool:
    """No frequency, or one of zero seconds: no throttle window (the schema judges the rest)."""
    if frequency is None:
        return True
    try:
        return isinstance(frequency, str | int) and parse_duration(frequency) == 0
    except ValueError:
        return False


def _check_card(
    found: _Found, base: tuple[str, int], item: dict[str, Any], hipchat: dict[str, Any]
) -> None:
    """Mentions live in the message text, which a card-capable client does not show."""
    if hipchat.get("card") is not True:
        return
    actions = _as_list(item.get("actions"))
    first = next((i for i, a in enumerate(actions) if _as_dict(a).get("action") == "mention"), None)
    if first is None:
        return
    words = partial(_card_message, found.loaded, (*base, "actions", first))
    found.add(hipchat, "card", (*base, "hipchat", "card"), words, severity="warning")


def _card_message(loaded: LoadedFile, mention: DataPath) -> str:
    line, _ = loaded.position(mention)
    return (
        "clients that show cards show the card instead of the message, and so none of its "
        f"mentions (the first from the mention action at line {line}); set card: false "
        "where mentions must be seen"
    )


def _check_endpoint(found: _Found, path: DataPath, hipchat: dict[str, Any], reach: Reach) -> None:
    endpoint = hipchat.get("endpoint")
    if not isinstance(endpoint, str):
        return
    where = (*path, "endpoint")
    try:
        _ = urlsplit(endpoint).port
    except ValueError as exc:  # "[" in the host, a port out of range or not a number
        message = f"{endpoint} is not a URL a client can send to: {exc}"
        found.add(hipchat, "endpoint", where, message)
        return
    read = read_endpoint(endpoint)
    # One error per endpoint: a path to rewrite, then the API path, then a host never
    # allowed or not in the prefixes, then plain http.
    problem = (
        path_problem(endpoint)
        or _api_path_problem(read)
        or endpoint_problem(endpoint, reach)
        or http_problem(endpoint, reach)
    )
    if problem is not None:
        found.add(hipchat, "endpoint", where, problem)
        return
    if read.version_dropped:
        message = f"the API version is added by syncd; {read.root} is used"
        found.add(hipchat, "endpoint", where, message, severity="warning")
    if _http_across_a_network(endpoint):
        message = "plain http sends room tokens unencrypted; use https"
        found.add(hipchat, "endpoint", where, message, severity="warning")


def _http_across_a_network(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    return parts.scheme.lower() == "http" and (parts.hostname or "") not in _LOCAL_HOSTS


def _api_path_problem(read: Endpoint) -> str | None:
    if read.api_path is None:
        return None
    return (
        "the endpoint is the server's base URL; syncd adds /v2/room/ID/notification "
        f"itself, so {read.api_path} does not belong here: did you mean {read.root}?"
    )


def _check_ca_file(found: _Found, path: DataPath, hipchat: dict[str, Any], reach: Reach) -> None:
    """The CA bundle must be there and hold certificates, or every send would fail later."""
    tls = hipchat.get("tls")
    ca_file = tls.get("ca_file") if isinstance(tls, dict) else None
    if not isinstance(tls, dict) or not isinstance(ca_file, str) or not ca_file.startswith("/"):
        return  # the schema reports it
    problem = ca_file_problem(ca_file, reach)
    if problem is not None:
        found.add(tls, "ca_file", (*path, "tls", "ca_file"), problem)


_REACH_CHECKS = (("env", env_problem), ("file", file_problem), ("credential", credential_problem))


def _check_reach(
    found: _Found,
    path: DataPath,
    ref: dict[str, Any],
    reach: Reach,
    place: tuple[str, ...] | None,
) -> None:
    """A token reference the operator's flags do not allow is an error at its value:
    first the daemon's bounds, then the file's ``--scope``.

    Only a reference the schema accepts is judged; the schema reports the rest.
    """
    if len(ref) != 1:
        return
    for kind, problem_of in _REACH_CHECKS:
        value = ref.get(kind)
        if not isinstance(value, str) or not well_formed(kind, value):
            continue
        problem = problem_of(value, reach) or scope_problem(kind, value, place, reach.scopes)
        if problem is not None:
            found.add(ref, kind, (*path, kind), problem)


def _check_listed_once(
    found: _Found,
    rooms: DataPath,
    index: int,
    room: dict[str, Any],
    seen_rooms: dict[str, int],
) -> None:
    """A room listed twice would get every notification twice; ``seen_rooms`` maps
    the ids met so far in this list to their index."""
    room_id = room.get("id")
    if not isinstance(room_id, str | int) or isinstance(room_id, bool):
        return
    first = seen_rooms.setdefault(str(room_id), index)
    if first != index:
        message = f"room {room_id} is listed twice (first as rooms[{first}])"
        found.add(room, "id", (*rooms, index, "id"), message)


def _check_token(
    found: _Found,
    path: DataPath,
    room: dict[str, Any],
    options: Options,
    place: tuple[str, ...] | None,
) -> None:
    token = room.get("token")
    if isinstance(token, dict):
        _check_reach(found, (*path, "token"), token, options.reach, place)
    if isinstance(token, str) and not options.allow_plaintext_tokens:
        refuse = options.refuse_plaintext_tokens
        found.add(
            room,
            "token",
            (*path, "token"),
            "plaintext token: move it to a secret store and reference it with "
            "{env: NAME}, {file: PATH} or {credential: NAME}"
            + (", or allow it with --allow-plaintext-tokens" if refuse else ""),
            severity="error" if refuse else "warning",
        )
