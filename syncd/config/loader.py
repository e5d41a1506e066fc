"""Config flow step 2: YAML to plain data, with safety limits and positions kept
for error messages.

libyaml composes the node tree when it is available; values are then built in
Python so that duplicate keys, anchors, tags, non-string keys and the YAML 1.1
traps (``no``, ``0755``, ``1:30``, dates) are reported instead of silently
accepted. Each mapping and list built remembers its node, so a problem found
in the data is placed from the node in hand (:meth:`LoadedFile.place`, one
look-up); walking a path from the root (:meth:`LoadedFile.position`) is left to
the wording of the problems listed. A problem is worded only if it is listed
(``diagnostics.Listing``), and one past the cap is only counted.

Once a file is checked, its tree is released (:meth:`LoadedFile.release`):
a daemon keeps every file's result, 50,000 in a large set, so what a file
keeps after that is as small as the few positions asked for later, and what
every released file holds alike (no nodes, no problems) is one shared value.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from syncd.config.diagnostics import (
    MAX_FILE_DIAGNOSTICS,
    Diagnostic,
    Listing,
    Problem,
    Severity,
    Word,
    json_path,
    worded,
)
from syncd.config.yamlsyntax import explain
from syncd.config.yamlvalues import (
    BOOL,
    INT,
    KNOWN_SCALARS,
    MAP,
    MERGE,
    PLAIN_INT,
    SEQ,
    STR,
    TIMESTAMP,
    ScalarError,
    describe_scalar,
    is_yaml11_trap,
    json_literal,
    read_scalar,
)

MAX_FILE_BYTES = 1 << 20

_LIBYAML = hasattr(yaml, "CSafeLoader")
_Loader: type[Any] = yaml.CSafeLoader if _LIBYAML else yaml.SafeLoader
MAX_DEPTH = 64
_INTERNED = 200  # longest text shared between files instead of copied

PathPart = str | int
DataPath = tuple[PathPart, ...]
_NO_TRAPS: Mapping[tuple[int, int], tuple[DataPath, str, Any]] = MappingProxyType({})
KeyIndex = dict[int, dict[str, tuple[Node, Node]]]
Places = Mapping[DataPath, tuple[int, int]]
_NO_NODES: Mapping[int, Node] = MappingProxyType({})
_NO_PLACES: Places = MappingProxyType({})
_FEW_PLACES = 8  # kept in two shared tuples and looked through; more in a dict


class _Released(Listing):
    """The listing of every file whose tree was released: what the file found was
    listed before, and nothing is added after. One serves them all (a daemon keeps
    50,000), so it refuses anything that would put something in it."""

    def _put(
        self, file: str, line: int, col: int, errors: int, warnings: int, item: Problem | Word
    ) -> None:
        raise RuntimeError(f"{file}: a problem found after its tree was released")

    def _count(self, errors: int, warnings: int, file: str, line: int, col: int) -> None:
        raise RuntimeError(f"{file}: a problem found after its tree was released")

    def count_after(self, errors: int) -> None:
        raise RuntimeError("problems found after a tree was released")


_RELEASED = _Released(MAX_FILE_DIAGNOSTICS)

_Value = TypeVar("_Value", bound=Hashable)


def _shared(value: _Value) -> _Value:
    """The first value equal to ``value`` still remembered: the places a file keeps
    repeat from file to file (every one-integration file keeps the same paths)."""
    return cast(_Value, _first_seen(value))


@lru_cache(maxsize=1024)
def _first_seen(value: Hashable) -> Hashable:
    return value


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class _FewPlaces(Mapping[DataPath, tuple[int, int]]):
    """A released file's few kept places: its paths, and each one's line and column
    in one flat tuple, both shared with the files that keep the same. About 50
    bytes, where a dict of two places and its tuples take 460."""

    paths: tuple[DataPath, ...]
    places: tuple[int, ...]

    def __getitem__(self, path: DataPath) -> tuple[int, int]:
        for at, known in enumerate(self.paths):
            if known == path:
                return self.places[2 * at], self.places[2 * at + 1]
        raise KeyError(path)

    def __iter__(self) -> Iterator[DataPath]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def _kept(keep: Places) -> Places:
    if not keep:
        return _NO_PLACES
    if len(keep) > _FEW_PLACES:
        return dict(keep)
    paths = tuple(keep)
    return _FewPlaces(_shared(paths), _shared(tuple(n for path in paths for n in keep[path])))


@dataclass(slots=True)
class LoadedFile:
    """One file's data, its load diagnostics, and what is needed to place later ones."""

    path: str
    data: Any = None
    digest: str = ""
    # Its load's problems, the first of them kept (the checks that follow add
    # theirs); the builder's are worded only if listed (Unworded).
    problems: Listing = field(default_factory=lambda: Listing(MAX_FILE_DIAGNOSTICS))
    # Paths whose value the loader already reported; schema errors there add nothing.
    # Shared empty values until something is added: a daemon keeps one per file.
    reported_paths: AbstractSet[DataPath] = frozenset()
    parsed: bool = False
    # Changed while read: the result says nothing about the file and is not kept.
    unsettled: bool = False
    lf_lines: int = field(default=-1, repr=False)  # lines ended by LF, counted on first use
    root: Node | None = field(default=None, repr=False)
    text: str = field(default="", repr=False)
    kept_positions: Places = field(default_factory=lambda: _NO_PLACES, repr=False)
    # The node each mapping and list of ``data`` was built from, by the value's id:
    # a problem found at a value is placed from it without walking its path.
    nodes: Mapping[int, Node] = field(default_factory=lambda: _NO_NODES, repr=False)
    # Each mapping node's keys, indexed when a position inside it is first asked
    # for: a file of 20,000 keys asks 20,000 times, and a scan per ask is quadratic.
    # Made on first use (:meth:`key_lookup`).
    key_index: KeyIndex | None = field(default=None, repr=False)
    # The text's line count and last line's length, counted on first use.
    text_lines: tuple[int, int] | None = field(default=None, repr=False)
    # YAML 1.1 traps by line and column: where, the text as written and the value
    # YAML made of it, whose suggested fixes the schema step keeps only if they
    # are valid there (it looks up only the ones listed).
    traps: Mapping[tuple[int, int], tuple[DataPath, str, Any]] = field(
        default_factory=lambda: _NO_TRAPS, repr=False
    )

    @property
    def ok(self) -> bool:
        """True when the data is usable (it may still be schema-invalid)."""
        return self.parsed

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """The problems found so far that a file lists, in words."""
        return worded(self.problems.problems())

    def release(self, keep: Mapping[DataPath, tuple[int, int]]) -> None:
        """Trade the node tree for the few positions asked for later.

        A tree costs about 20 KiB per integration and a loader keeps every
        file's result between reloads; checks across files need only the
        places of the keys that must be unique (``keep``, found with :meth:`place`).
        """
        self.kept_positions = _kept(keep)
        self.root = None
        self.text = ""
        self.key_index = None
        self.nodes = _NO_NODES
        # Listed by now, and the unworded ones hold nodes of the tree.
        self.problems = _RELEASED
        self.traps = _NO_TRAPS

    def key_lookup(self) -> KeyIndex:
        """The index of mapping nodes' keys, made on first use."""
        if self.key_index is None:
            self.key_index = {}
        return self.key_index

    def reported(self, path: DataPath) -> None:
        # A set of its own on the first one, then added to: a file may report
        # tens of thousands, and a copy per addition would be quadratic.
        if not isinstance(self.reported_paths, set):
            self.reported_paths = set(self.reported_paths)
        self.reported_paths.add(path)

    def trap(self, at: tuple[int, int], path: DataPath, text: str, value: Any) -> None:
        if not isinstance(self.traps, dict):
            self.traps = dict(self.traps)
        self.traps[at] = (path, text, value)

    def drop_data(self) -> None:
        """For a loader that keeps thousands of files: once the integrations are
        built and the keys that must be unique indexed, the data is not read."""
        self.data = None

    def position(self, path: DataPath, *, at_key: bool = False) -> tuple[int, int]:
        """Line and column of the value at ``path`` (of its key with ``at_key``); of the
        nearest enclosing node when ``path`` is not all there."""
        if not at_key and path in self.kept_positions:
            return self.kept_positions[path]
        if self.root is None:
            return 1, 1
        node, _ = _deepest(self.root, path, self.key_lookup(), at_key=at_key)
        return self.inside(node.start_mark.line + 1, node.start_mark.column + 1)

    def place(
        self, holder: object, part: PathPart | None = None, *, at_key: bool = False
    ) -> tuple[int, int] | None:
        """Line and column of ``holder``, a mapping or list of ``data``, or of the value
        at ``part`` in it (of its key with ``at_key``; of ``holder`` when it is not
        there): where :meth:`position` puts that value's path, in one look-up
        instead of a walk from the root. None when ``holder`` is not one of them."""
        node = self.nodes.get(id(holder)) if isinstance(holder, (dict, list)) else None
        if node is None:
            return None
        child = None if part is None else _child(node, part, self.key_lookup(), key=at_key)
        mark = (node if child is None else child).start_mark
        line = mark.line + 1
        if line <= self.lf_lines:  # inside() once the lines are counted, without a call
            return line, mark.column + 1
        return self.inside(line, mark.column + 1)

    def key_places(self, holder: object, keys: Iterable[str]) -> Iterator[tuple[int, int] | None]:
        """:meth:`place` of each of ``keys`` of ``holder`` at the key, for the many keys
        of one mapping (20,000 unknown ones): its node is looked up once."""
        node = self.nodes.get(id(holder)) if isinstance(holder, dict) else None
        for key in keys:
            if not isinstance(node, MappingNode):
                yield None
                continue
            pair = _find_pair(node, key, self.key_lookup())
            mark = (node if pair is None else pair[0]).start_mark
            yield self.inside(mark.line + 1, mark.column + 1)

    def inside(self, line: int, col: int) -> tuple[int, int]:
        """A position within the file: libyaml places what it finds at the end of a
        file without a final line break one line past it."""
        # Every LF ends a line, so this spares splitting the text for most positions;
        # the count is taken once per file, not once per position asked for.
        if self.lf_lines < 0:
            self.lf_lines = self.text.count("\n") + 1
        if not self.text or line <= self.lf_lines:
            return line, col
        if self.text_lines is None:  # once: a file of CR line breaks asks every time
            lines = _TEXT_LINE_BREAK.split(self.text)
            self.text_lines = len(lines), len(lines[-1])
        count, last = self.text_lines
        if line <= count:
            return line, col
        return count, last + 1

    def diagnostic(
        self,
        path: DataPath,
        message: str,
        *,
        severity: Severity = "error",
        at_key: bool = False,
    ) -> Diagnostic:
        line, col = self.position(path, at_key=at_key)
        return Diagnostic(self.path, line, col, json_path(path), message, severity)


_SCANNED = 8  # pairs of a mapping looked through, not indexed


def _find_pair(node: MappingNode, key: str, index: KeyIndex) -> tuple[Node, Node] | None:
    """The last pair with ``key`` (the value a duplicate key leaves), from the node's
    index, made on first use; a small mapping is looked through instead, since a
    hostile file holds 10,000 of them, each asked once."""
    pairs = index.get(id(node))
    if pairs is None:
        if len(node.value) <= _SCANNED:
            for k, v in reversed(node.value):
                if isinstance(k, ScalarNode) and k.value == key:
                    return k, v
            return None
        pairs = {k.value: (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
        index[id(node)] = pairs
    return pairs.get(key)


def _child(node: Node, part: PathPart, index: KeyIndex, *, key: bool) -> Node | None:
    """The node at ``part`` under ``node`` (the key node with ``key``), if there is one."""
    if isinstance(part, str):
        pair = _find_pair(node, part, index) if isinstance(node, MappingNode) else None
        if pair is None:
            return None
        return pair[0] if key else pair[1]
    if isinstance(node, SequenceNode) and 0 <= part < len(node.value):
        child: Node = node.value[part]
        return child
    return None


def _deepest(
    root: Node, path: DataPath, index: KeyIndex, *, at_key: bool = False
) -> tuple[Node, int]:
    """The node at ``path``, or the deepest one found on the way, and how many parts
    of ``path`` lead to it."""
    node = root
    last = len(path) - 1
    for depth, part in enumerate(path):
        child = _child(node, part, index, key=at_key and depth == last)
        if child is None:
            return node, depth
        node = child
    return node, len(path)


# YAML's line breaks: CR LF, CR, LF, NEL, LS, PS.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n|\xc2\x85|\xe2\x80[\xa8\xa9]")
_TEXT_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    breaks = list(_LINE_BREAK.finditer(data, 0, offset))
    line_start = breaks[-1].end() if breaks else 0
    col = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return len(breaks) + 1, col


class NotARegularFile(OSError):
    """A config path that is a FIFO, device or directory: never read."""


class ChangedWhileRead(OSError):
    """A file whose size or mtime moved while it was read."""


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def read_regular(path: Path, limit: int = MAX_FILE_BYTES + 1) -> bytes:
    """Up to ``limit`` bytes of a regular file, as it stood for the whole read.

    Opened without blocking, because opening a FIFO for reading waits for a
    writer that may never come; then anything but a regular file is refused.
    A size or mtime that moved during the read means a writer is at work and
    the bytes may be half old, half new: :class:`ChangedWhileRead`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        kind = stat.S_IFMT(before.st_mode)
        if kind != stat.S_IFREG:
            raise NotARegularFile(f"is {_KINDS.get(kind, 'not a regular file')}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(limit)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise ChangedWhileRead("changed while it was read")
    return raw


def load_file(path: Path, display: str | None = None) -> LoadedFile:
    name = display if display is not None else str(path)
    loaded = LoadedFile(name)
    try:
        raw = read_regular(path)
    except ChangedWhileRead:
        loaded.unsettled = True
        loaded.problems.add(
            Diagnostic(
                name, 1, 1, "", "the file changed while it was read; it is read again when quiet"
            )
        )
        return loaded
    except NotARegularFile as exc:
        loaded.problems.add(Diagnostic(name, 1, 1, "", f"{exc}; only regular files are read"))
        return loaded
    except OSError as exc:
        loaded.problems.add(Diagnostic(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}"))
        return loaded
    if len(raw) > MAX_FILE_BYTES:
        loaded.digest = hashlib.sha256(raw).hexdigest()
        loaded.problems.add(
            Diagnostic(name, 1, 1, "", "file is larger than 1 MiB; split it into several files")
        )
        return loaded
    return load_bytes(raw, name, loaded)


def load_bytes(raw: bytes, name: str, loaded: LoadedFile | None = None) -> LoadedFile:
    """Bytes to text to node tree to data; the first step that fails says why and
    ends the load."""
    loaded = loaded or LoadedFile(name)
    loaded.digest = hashlib.sha256(raw).hexdigest()
    text = _decode(raw, loaded)
    if text is None:
        return loaded
    loaded.text = text
    root = _parse(text, loaded)
    if root is None:
        return loaded
    loaded.parsed = True
    loaded.root = root
    loaded.data = _Builder(loaded).build(root, ())
    return loaded


def _decode(raw: bytes, loaded: LoadedFile) -> str | None:
    """The text of a UTF-8 file, without a byte order mark."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        loaded.problems.add(Diagnostic(loaded.path, 1, 1, "", "file is UTF-16; save it as UTF-8"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        message = f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; save as UTF-8"
        loaded.problems.add(Diagnostic(loaded.path, line, col, "", message))
        return None
    return text.removeprefix("\ufeff")


def _parse(text: str, loaded: LoadedFile) -> Node | None:
    """The node tree of a file with one document in it."""
    try:
        if _ANCHOR_LIKE.search(text):
            _report_anchors(text, loaded)
        root = _compose(text)
    except yaml.YAMLError as exc:
        loaded.problems.add(_yaml_error(exc, loaded))
        return None
    if root is None:
        loaded.problems.add(
            Diagnostic(
                loaded.path, 1, 1, "$", "file is empty; expected 'version: 1' and 'integrations:'"
            )
        )
    return root


def _yaml_error(exc: yaml.YAMLError, loaded: LoadedFile) -> Diagnostic:
    if isinstance(exc, yaml.reader.ReaderError):
        return _reader_error(exc, loaded)
    if isinstance(exc, yaml.MarkedYAMLError):
        return _syntax_error(exc, loaded)
    message = " ".join(str(exc).split())
    return Diagnostic(loaded.path, 1, 1, "", f"YAML syntax: {message}")


def _reader_error(exc: yaml.reader.ReaderError, loaded: LoadedFile) -> Diagnostic:
    """A character YAML does not allow, such as a control character."""
    if _LIBYAML:  # libyaml counts UTF-8 bytes, the Python reader characters
        line, col = _line_col(loaded.text.encode("utf-8", "surrogatepass"), exc.position)
    else:
        line, col = _text_line_col(loaded.text, exc.position)
    what = f"character U+{exc.character:04X}" if isinstance(exc.character, int) else "byte"
    return Diagnostic(loaded.path, line, col, "", f"{what} is not allowed in YAML ({exc.reason})")


def _syntax_error(exc: yaml.MarkedYAMLError, loaded: LoadedFile) -> Diagnostic:
    line, col, message = explain(exc, loaded.text, _Loader, loaded.inside)
    return Diagnostic(loaded.path, line, col, "", message)


def _text_line_col(text: str, position: int) -> tuple[int, int]:
    head = text[:position]
    breaks = list(_TEXT_LINE_BREAK.finditer(head))
    line_start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, position - line_start + 1


# Where an anchor (&name) or alias (*name) token can start: not inside ".*" or "*".
# A match inside a quoted text only costs the scan that finds nothing.
_ANCHOR_LIKE = re.compile(r"(?:^|[\s\[{,])[&*][^\s\[\]{},]", re.MULTILINE)


def _compose(text: str) -> Node | None:
    loader = _Loader(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _report_anchors(text: str, loaded: LoadedFile) -> None:
    name, problems = loaded.path, loaded.problems
    for token in yaml.scan(text, Loader=_Loader):
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            line, col = token.start_mark.line + 1, token.start_mark.column + 1
            problems.found(name, line, col, 1, 0, _anchor, name, line, col, token)


def _anchor(
    name: str, line: int, col: int, token: yaml.AnchorToken | yaml.AliasToken
) -> list[Diagnostic]:
    kind = "anchor &" if isinstance(token, yaml.AnchorToken) else "alias *"
    message = f"YAML {kind}{token.value} is not allowed; write the value out in full"
    return [Diagnostic(name, line, col, "", message)]


_P = ParamSpec("_P")


class _Builder:
    """Builds plain data from nodes, reporting what a plain ``yaml.safe_load`` would hide."""

    def __init__(self, loaded: LoadedFile) -> None:
        self.loaded = loaded
        self.seen: set[int] = set()
        self.nodes: dict[int, Node] = {}
        loaded.nodes = self.nodes

    def error(self, node: Node, path: DataPath, message: str) -> None:
        self.error_with(node, path, _said, message)

    def error_with(
        self,
        node: Node,
        path: DataPath,
        words: Callable[_P, str],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> tuple[int, int] | None:
        """``words(*args)`` is the message: a file can hold 100,000 of one problem, and
        only those listed are worded. Where the problem is, or None when it is past
        the file's cap (counted only)."""
        loaded = self.loaded
        loaded.reported(path)
        name = loaded.path
        line, col = loaded.inside(node.start_mark.line + 1, node.start_mark.column + 1)
        if loaded.problems.found(
            name, line, col, 1, 0, _worded, name, line, col, path, words, args, kwargs
        ):
            return line, col
        return None

    def build(self, node: Node, path: DataPath) -> Any:
        if len(path) > MAX_DEPTH:
            self.error(node, path, _TOO_DEEP)
            return None
        if id(node) in self.seen:
            # An alias: reported by the token scan, never expanded.
            self.loaded.reported(path)
            return None
        self.seen.add(id(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, MappingNode):
            self.untagged(node, path, MAP)
            mapping = self.mapping(node, path)
            self.nodes[id(mapping)] = node
            return mapping
        assert isinstance(node, SequenceNode)
        self.untagged(node, path, SEQ)
        items = self.sequence(node, path)
        self.nodes[id(items)] = node
        return items

    def sequence(self, node: SequenceNode, path: DataPath) -> list[Any]:
        items: list[Any] = []
        plain = len(path) < MAX_DEPTH  # whether an item may be built as :func:`_text`
        seen = self.seen
        for i, item in enumerate(node.value):
            if plain and type(item) is ScalarNode and item.tag == STR and id(item) not in seen:
                seen.add(id(item))
                items.append(_text(item.value))
            else:
                items.append(self.build(item, (*path, i)))
        return items

    def untagged(self, node: Node, path: DataPath, own: str) -> None:
        """A mapping or list tagged other than as what it is: a tag another YAML reader
        may act on (``!!python/object/apply``), so refused as on a scalar."""
        if node.tag != own:
            self.error_with(node, path, _tag, node.tag)

    def mapping(self, node: MappingNode, path: DataPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        plain = len(path) < MAX_DEPTH  # whether a value may be built as :func:`_text`
        seen = self.seen
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in result:  # its first place is found only if this is listed
                self.error_with(key_node, (*path, key), _duplicate, key, node)
            text = type(value_node) is ScalarNode and value_node.tag == STR
            if text and plain and id(value_node) not in seen:
                seen.add(id(value_node))
                result[key] = _text(value_node.value)
            else:
                result[key] = self.build(value_node, (*path, key))
        return result

    def key(self, node: Node, path: DataPath) -> str | None:
        if type(node) is ScalarNode and node.tag == STR:  # most keys: one test
            return sys.intern(node.value)
        if not isinstance(node, ScalarNode):
            self.error(node, path, "a key must be a plain string, not a list or mapping")
            return None
        if node.tag == MERGE:
            self.error(node, path, "merge keys (<<) are not supported; write the keys out")
            return None
        if node.tag != STR:
            self.error_with(node, (*path, node.value), _not_a_text_key, node)
            return None
        return sys.intern(str(node.value))

    def scalar(self, node: ScalarNode, path: DataPath) -> Any:
        tag, text = node.tag, node.value
        if tag == STR:
            return _text(text)
        if tag == INT and PLAIN_INT.match(text):  # read alike by YAML 1.1, 1.2 and JSON
            return int(text)
        if tag not in KNOWN_SCALARS:
            self.error_with(node, path, _tag, tag)
            return text
        try:
            value = read_scalar(node)
        except ScalarError as exc:
            self.error_with(node, path, _unreadable, text, exc)
            return text
        if node.style:  # quoted: the tag is what the author wrote
            return value
        return self.plain(node, path, value)

    def plain(self, node: ScalarNode, path: DataPath, value: Any) -> Any:
        """An unquoted non-string: a date stays text, a YAML 1.1 trap is reported."""
        text = node.value
        if node.tag == TIMESTAMP:
            self.error_with(node, path, _date, node)
            return text
        if is_yaml11_trap(node.tag, text):
            at = self.error_with(node, path, _trap, node, value)
            if at is not None:  # only a trap listed is judged again (schema.refine_traps)
                self.loaded.trap(at, path, text, value)
        return value


def _text(text: str) -> str:
    """A text value, one copy of the short ones (endpoints, colours, attribute names
    repeat across thousands of files). Most values are texts, and they are built
    without a path: only a value that is reported needs one."""
    return sys.intern(text) if len(text) <= _INTERNED else text


def _worded(
    name: str,
    line: int,
    col: int,
    path: DataPath,
    words: Callable[..., str],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> list[Diagnostic]:
    return [Diagnostic(name, line, col, json_path(path), words(*args, **kwargs))]


def _said(message: str) -> str:
    return message


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def _tag(tag: str) -> str:
    return f"YAML tag {tag} is not supported"


def _unreadable(text: str, exc: ScalarError) -> str:
    return f"{text!r} cannot be read as YAML {exc}"


def _duplicate(key: str, mapping: MappingNode) -> str:
    first = next(k for k, _ in mapping.value if _is_text_key(k) and k.value == key)
    mark = first.start_mark
    return f"duplicate key {key!r} (first at line {mark.line + 1}, col {mark.column + 1})"


def _is_text_key(node: Node) -> bool:
    """A key the builder keeps (:meth:`_Builder.key`)."""
    return isinstance(node, ScalarNode) and node.tag == STR


def _not_a_text_key(node: ScalarNode) -> str:
    if node.tag in KNOWN_SCALARS:
        what = f"is read by YAML as {describe_scalar(node)}"
    else:
        what = f"has the YAML tag {node.tag}"
    return f'key {node.value!r} {what}; keys must be strings: quote it ("{node.value}")'


def _date(node: ScalarNode) -> str:
    text = node.value
    return f'YAML reads the unquoted {text} as {describe_scalar(node)}; quote it ("{text}")'


def _trap(node: ScalarNode, value: Any) -> str:
    text = node.value
    literal = json_literal(value) if node.tag == BOOL else repr(value)
    return (
        f"YAML 1.1 reads the unquoted {text} as {describe_scalar(node)}, "
        f'not the text {text!r}; quote it ("{text}") if you mean the text, '
        f"or write {literal}"
    )


def describe_value(loaded: LoadedFile, path: DataPath) -> str | None:
    """What YAML made of the plain scalar at ``path``, when that is not a string."""
    if loaded.root is None:
        return None
    node, found = _deepest(loaded.root, path, loaded.key_lookup())
    if found < len(path) or not isinstance(node, ScalarNode):
        return None
    if node.style or node.tag == STR:
        return None
    return f"YAML reads the unquoted {node.value or '(empty)'} as {describe_scalar(node)}"
