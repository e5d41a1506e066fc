"""Config flow step 4: rules a JSON Schema cannot express.

Within one file (regexes compile, rooms listed once, tokens not in plain text
and within the operator's bounds and the file's scope, endpoints that name the
server and not part of its API, settings that would silently do nothing or
hide something: a threshold without a frequency, a card over mentions), kept
with the file's cached result; across files
(``uid`` unique, ``name`` unique within a project), checked again on every load.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from syncd.config.diagnostics import Diagnostic, Problem, Unworded
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


def unique_key_paths(loaded: LoadedFile) -> Iterator[DataPath]:
    """Where ``check_unique`` may point in this file."""
    for index, _ in _integrations(loaded):
        yield ("integrations", index, "uid")
        yield ("integrations", index, "name")


Place = tuple[LoadedFile, DataPath]
_Key = tuple[str, ...]
_Order = tuple[object, ...]


def check_unique(files: Sequence[LoadedFile]) -> list[Problem]:
    """``uid`` across all files and ``name`` within a project; positions only on a clash.

    A clash is reported at every place, each naming the others: the file an edit
    touched is not always the one that sorts last.
    """
    index = UniqueIndex()
    for order, loaded in enumerate(files):
        index.put(loaded.path, (order,), loaded)
    return index.diagnostics()


class UniqueIndex:
    """The keys that must be unique, kept per file, so that a change costs the
    changed file's own keys, not every file's. A daemon holds one entry per
    integration for as long as it runs, so an entry is small: a key names the
    one file that holds it, and only a clash is worth a list."""

    def __init__(self) -> None:
        self._holders: dict[_Key, str | list[str]] = {}
        # Per file: where it sorts, the file itself, and its (key, integration index).
        self._files: dict[str, tuple[_Order, LoadedFile, tuple[tuple[_Key, int], ...]]] = {}
        self._clashing: set[_Key] = set()

    def put(self, file: str, order: _Order, loaded: LoadedFile | None) -> None:
        """Replace what ``file`` holds (None: it is gone); ``order`` sorts the places
        of a clash as the files are listed."""
        held = self._files.pop(file, None)
        for key, _ in held[2] if held else ():
            self._release(key, file)
        if loaded is None:
            return
        keys = tuple(_keys(loaded))
        self._files[file] = (order, loaded, keys)
        for key, _ in keys:
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

    def diagnostics(self) -> list[Problem]:
        out: list[Problem] = []
        places = self._places()
        for key in sorted(self._clashing):
            what = (
                f"duplicate uid {key[1]!r}"
                if key[0] == "uid"
                else f"duplicate name {key[2]!r} in project {key[1]!r}"
            )
            out.extend(_clash(what, places[key]))
        return out

    def _places(self) -> dict[_Key, list[Place]]:
        """Every clashing key's places, in the order the files are listed; one pass
        over the keys of the files involved, however many clashes they hold."""
        involved: set[str] = set()
        for key in self._clashing:
            holder = self._holders[key]
            involved.update([holder] if isinstance(holder, str) else holder)
        places: dict[_Key, list[Place]] = {}
        for file in sorted(involved, key=lambda name: self._files[name][0]):
            _, loaded, keys = self._files[file]
            for key, index in keys:
                if key in self._clashing:
                    places.setdefault(key, []).append((loaded, ("integrations", index, key[0])))
        return places


def _keys(loaded: LoadedFile) -> Iterator[tuple[_Key, int]]:
    for index, item in _integrations(loaded):
        uid, project, name = item.get("uid"), item.get("project"), item.get("name")
        if isinstance(uid, str):
            yield ("uid", uid), index
        if isinstance(project, str) and isinstance(name, str):
            yield ("name", project, name), index


_OTHERS_NAMED = 3  # each place names this many others at most: K copies, K short lines


def _clash(what: str, places: list[Place]) -> Iterator[Problem]:
    """One problem per place, worded only if listed: a set lists a thousand of the
    copies a file may hold."""
    for here in places:
        line, col = here[0].position(here[1])
        yield Unworded(here[0].path, line, col, partial(_clash_worded, what, here, places))


def _clash_worded(what: str, here: Place, places: list[Place]) -> list[Diagnostic]:
    many = len(places) - 1 > _OTHERS_NAMED
    if many:
        what = f"{what} ({len(places)} places)"
    named = [there for there in places[: _OTHERS_NAMED + 1] if there is not here]
    others = ", ".join(_at(there) for there in named[:_OTHERS_NAMED])
    if many:
        others += f" and {len(places) - 1 - _OTHERS_NAMED} more"
    return [here[0].diagnostic(here[1], f"{what}; also defined at {others}")]


def check_file_rules(loaded: LoadedFile, options: Options = DEFAULT_OPTIONS) -> list[Diagnostic]:
    """The rules that need only one file; their result can be kept until it changes."""
    out: list[Diagnostic] = []
    scopes = options.reach.scopes
    place = place_of(loaded.path, options.reach.scope_roots) if scopes else None
    for index, item in _integrations(loaded):
        out.extend(_check_integration(loaded, ("integrations", index), item, options, place))
    return out


def _at(where: tuple[LoadedFile, DataPath]) -> str:
    loaded, path = where
    line, col = loaded.position(path)
    return f"{loaded.path}:{line}:{col}"


def _check_integration(
    loaded: LoadedFile,
    base: tuple[str, int],
    item: dict[str, Any],
    options: Options,
    place: tuple[str, ...] | None,
) -> Iterator[Diagnostic]:
    """``place``: the file's path below the config dir, for ``--scope``."""
    over = list(_check_actions_bound(loaded, base, item, options))
    yield from over
    if not over:  # past a bound, compiling every regex is the cost the bound spares
        yield from _check_regexes(loaded, base, item)
    yield from _check_frequency(loaded, base, item)
    yield from _check_threshold(loaded, base, item)
    hipchat = _as_dict(item.get("hipchat"))
    yield from _check_card(loaded, base, item, hipchat)
    yield from _check_endpoint(loaded, (*base, "hipchat"), hipchat, options.reach)
    yield from _check_ca_file(loaded, (*base, "hipchat"), hipchat, options.reach)
    rooms: DataPath = (*base, "hipchat", "rooms")
    seen_rooms: dict[str, int] = {}
    for r, room in enumerate(_as_list(hipchat.get("rooms"))):
        yield from _check_listed_once(loaded, rooms, r, _as_dict(room), seen_rooms)
        yield from _check_token(loaded, (*rooms, r), _as_dict(room), options, place)


def _check_actions_bound(
    loaded: LoadedFile, base: tuple[str, int], item: dict[str, Any], options: Options
) -> Iterator[Diagnostic]:
    """At most ``max_actions`` actions, and ``max_pattern_bytes`` of regexes in all."""
    actions = item.get("actions")
    if not isinstance(actions, list):
        return
    where = (*base, "actions")
    if len(actions) > options.reach.max_actions:
        yield loaded.diagnostic(
            where,
            f"{len(actions):,} actions; an integration may have at most "
            f"{options.reach.max_actions:,} (the operator's --max-actions)",
            at_key=True,
        )
    regexes = (_as_dict(action).get("regex") for action in actions)
    size = sum(len(r.encode("utf-8", "surrogatepass")) for r in regexes if isinstance(r, str))
    if size > options.reach.max_pattern_bytes:
        yield loaded.diagnostic(
            where,
            f"the regexes of these actions total {size:,} bytes; an integration may have "
            f"at most {options.reach.max_pattern_bytes:,} (the operator's --max-pattern-bytes)",
            at_key=True,
        )


def _check_frequency(
    loaded: LoadedFile, base: tuple[str, int], item: dict[str, Any]
) -> Iterator[Diagnostic]:
    """A duration written as text past its bound: the schema's pattern cannot count
    (it bounds a frequency given in seconds itself)."""
    frequency = _as_dict(item.get("trigger")).get("frequency")
    if not isinstance(frequency, str):
        return
    try:
        parse_duration(frequency)
    except DurationTooLong as exc:
        yield loaded.diagnostic((*base, "trigger", "frequency"), str(exc))
    except ValueError:
        return  # not a duration: the schema says so


def _check_regexes(
    loaded: LoadedFile, base: tuple[str, int], item: dict[str, Any]
) -> Iterator[Diagnostic]:
    """RE2 compiles every action's regex, so an event never meets a broken one."""
    for i, action in enumerate(_as_list(item.get("actions"))):
        regex = _as_dict(action).get("regex")
        if not isinstance(regex, str):
            continue
        try:
            compile_pattern(regex)
        except PatternError as exc:
            yield loaded.diagnostic((*base, "actions", i, "regex"), f"invalid regex: {exc}")


def _check_threshold(
    loaded: LoadedFile, base: tuple[str, int], item: dict[str, Any]
) -> Iterator[Diagnostic]:
    """A threshold only cuts a frequency window short; without one it silently does
    nothing, which is not what its author meant."""
    trigger = _as_dict(item.get("trigger"))
    if "threshold" not in trigger or not _no_window(trigger.get("frequency")):
        return
    yield loaded.diagnostic(
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
    loaded: LoadedFile, base: tuple[str, int], item: dict[str, Any], hipchat: dict[str, Any]
) -> Iterator[Diagnostic]:
    """Mentions live in the message text, which a card-capable client does not show."""
    if hipchat.get("card") is not True:
        return
    actions = _as_list(item.get("actions"))
    first = next((i for i, a in enumerate(actions) if _as_dict(a).get("action") == "mention"), None)
    if first is None:
        return
    line, _ = loaded.position((*base, "actions", first))
    yield loaded.diagnostic(
        (*base, "hipchat", "card"),
        "clients that show cards show the card instead of the message, and so none of its "
        f"mentions (the first from the mention action at line {line}); set card: false "
        "where mentions must be seen",
        severity="warning",
    )


def _check_endpoint(
    loaded: LoadedFile, path: DataPath, hipchat: dict[str, Any], reach: Reach
) -> Iterator[Diagnostic]:
    endpoint = hipchat.get("endpoint")
    if not isinstance(endpoint, str):
        return
    where = (*path, "endpoint")
    try:
        _ = urlsplit(endpoint).port
    except ValueError as exc:  # "[" in the host, a port out of range or not a number
        yield loaded.diagnostic(where, f"{endpoint} is not a URL a client can send to: {exc}")
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
        yield loaded.diagnostic(where, problem)
        return
    if read.version_dropped:
        yield loaded.diagnostic(
            where, f"the API version is added by syncd; {read.root} is used", severity="warning"
        )
    if _http_across_a_network(endpoint):
        yield loaded.diagnostic(
            where, "plain http sends room tokens unencrypted; use https", severity="warning"
        )


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


def _check_ca_file(
    loaded: LoadedFile, path: DataPath, hipchat: dict[str, Any], reach: Reach
) -> Iterator[Diagnostic]:
    """The CA bundle must be there and hold certificates, or every send would fail later."""
    tls = hipchat.get("tls")
    ca_file = tls.get("ca_file") if isinstance(tls, dict) else None
    if not isinstance(ca_file, str) or not ca_file.startswith("/"):
        return  # the schema reports it
    problem = ca_file_problem(ca_file, reach)
    if problem is not None:
        yield loaded.diagnostic((*path, "tls", "ca_file"), problem)


_REACH_CHECKS = (("env", env_problem), ("file", file_problem), ("credential", credential_problem))


def _check_reach(
    loaded: LoadedFile,
    path: DataPath,
    ref: dict[str, Any],
    reach: Reach,
    place: tuple[str, ...] | None,
) -> Iterator[Diagnostic]:
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
            yield loaded.diagnostic((*path, kind), problem)


def _check_listed_once(
    loaded: LoadedFile,
    rooms: DataPath,
    index: int,
    room: dict[str, Any],
    seen_rooms: dict[str, int],
) -> Iterator[Diagnostic]:
    """A room listed twice would get every notification twice; ``seen_rooms`` maps
    the ids met so far in this list to their index."""
    room_id = room.get("id")
    if not isinstance(room_id, str | int) or isinstance(room_id, bool):
        return
    first = seen_rooms.setdefault(str(room_id), index)
    if first != index:
        yield loaded.diagnostic(
            (*rooms, index, "id"), f"room {room_id} is listed twice (first as rooms[{first}])"
        )


def _check_token(
    loaded: LoadedFile,
    path: DataPath,
    room: dict[str, Any],
    options: Options,
    place: tuple[str, ...] | None,
) -> Iterator[Diagnostic]:
    token = room.get("token")
    if isinstance(token, dict):
        yield from _check_reach(loaded, (*path, "token"), token, options.reach, place)
    if isinstance(token, str) and not options.allow_plaintext_tokens:
        refuse = options.refuse_plaintext_tokens
        yield loaded.diagnostic(
            (*path, "token"),
            "plaintext token: move it to a secret store and reference it with "
            "{env: NAME}, {file: PATH} or {credential: NAME}"
            + (", or allow it with --allow-plaintext-tokens" if refuse else ""),
            severity="error" if refuse else "warning",
        )
