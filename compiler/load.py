"""Load stage: read one spec file into plain Python values plus source positions, never raising.

A spec is one YAML document whose root is a mapping with string keys. Scalars follow the YAML 1.2
core schema (``1e-4`` is a float; ``NO``, ``1:30`` and ``2024-01-01`` stay strings), not PyYAML's
YAML 1.1 defaults. Every problem becomes an ``E1xx`` diagnostic; hostile input is refused cheaply:

* at most ``MAX_BYTES`` (1 MiB), checked with ``os.stat`` before reading (E102);
* UTF-8 text without NUL bytes or control characters; a leading BOM is ignored (E103);
* at most ``MAX_DEPTH`` (64) nested collections, counted on PyYAML's iterative event stream before
  its recursive composer runs, and again with aliases expanded (E109);
* at most ``MAX_NODES`` (10 000) nodes (keys, values and collections) with aliases expanded, the
  expanded size computed with memoisation over the node graph, never by expanding (E108);
* only plain core tags (E107). PyYAML only composes nodes; this module builds the values, so no
  PyYAML constructor, safe or not, ever runs.

Merge keys work as YAML users expect: ``<<: *base`` or ``<<: [*a, *b]`` copy entries in, explicit
keys win, earlier sources win over later ones; a merge value that is not a mapping is E107.
"""

from __future__ import annotations

import codecs
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

import yaml
from yaml import events as ev
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from .diagnostics import Diagnostic, Position, error, pointer_join

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 10_000

_CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MAP, SEQ, MERGE = (
    _CORE + name for name in ("str", "int", "float", "bool", "null", "map", "seq", "merge"))
_TYPE_NAMES = {INT: "an integer", FLOAT: "a float", BOOL: "a boolean", NULL: "null"}
_ALLOWED_TAGS = {ScalarNode: (STR, INT, FLOAT, BOOL, NULL), SequenceNode: (SEQ,), MappingNode: (MAP,)}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution) plus the merge key, as
# tag -> (regex, possible first characters). For a leading digit, int is tried before float.
_CORE_SCHEMA: dict[str, tuple[str, list[str]]] = {
    BOOL: (r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    INT: (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    FLOAT: (r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
    NULL: (r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    MERGE: (r"<<", ["<"]),
}
_PATTERN = {tag: re.compile(rf"(?:{regex})\Z") for tag, (regex, _) in _CORE_SCHEMA.items()}


class CoreResolver(BaseResolver):
    """YAML 1.2 core-schema implicit typing. It owns a fresh resolver table instead of inheriting
    (or patching) yaml.resolver.Resolver's YAML 1.1 one, so PyYAML's classes, and every
    ``yaml.safe_load`` elsewhere in the process, stay untouched."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, (_, _first) in _CORE_SCHEMA.items():
    CoreResolver.add_implicit_resolver(_tag, _PATTERN[_tag], _first)


class SpecComposer(Composer, CoreResolver):
    """PyYAML's composer with core-schema resolution, replaying the events ``_scan`` collected (so
    the text is parsed once). No constructor, on purpose: ``_Builder`` makes values from nodes."""

    def __init__(self, events: list[ev.Event]) -> None:
        Composer.__init__(self)
        CoreResolver.__init__(self)
        self._events, self._next = events, 0

    def check_event(self, *choices: type) -> bool:
        more = self._next < len(self._events)
        return more and (not choices or isinstance(self._events[self._next], choices))

    def peek_event(self) -> ev.Event:
        return self._events[self._next]

    def get_event(self) -> ev.Event:
        self._next += 1
        return self._events[self._next - 1]


@dataclass(frozen=True)
class LoadedSpec:
    data: dict[str, Any] | None
    positions: Mapping[str, Position]
    key_positions: Mapping[str, Position]
    diagnostics: list[Diagnostic]


class _Fail(Exception):
    """Aborts loading; its only argument is the diagnostic."""


def _pos(node: Any) -> Position:
    """Position of a node, event or mark (PyYAML's are 0-based)."""
    mark = getattr(node, "start_mark", node)
    return Position(mark.line + 1, mark.column + 1)


def _fail(code: str, pointer: str, message: str, node: Any = None, hint: str | None = None) -> NoReturn:
    raise _Fail(error(code, pointer, message, None if node is None else _pos(node), hint))


def _failed(diagnostics: list[Diagnostic]) -> LoadedSpec:
    return LoadedSpec(None, MappingProxyType({}), MappingProxyType({}), diagnostics)


def _too_large(size: int, unit: str = "bytes") -> LoadedSpec:
    return _failed([error("E102", "", f"spec is too large: {size:,} {unit} (limit {MAX_BYTES:,} bytes)")])


def load_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    """Load the spec file at ``path``; problems come back as diagnostics, never as exceptions."""
    try:
        size = os.stat(path).st_size
        if size > MAX_BYTES:  # decided from metadata alone, so a huge file costs nothing
            return _too_large(size)
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)  # bounded even if the file grows or is a pipe
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL character in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _failed([error("E101", "", f"cannot read spec file {os.fspath(path)!r}: {reason}")])
    return _load_bytes(raw)


def load_spec_text(text: str | bytes) -> LoadedSpec:
    """Load a spec from memory, with the same rules as ``load_spec``."""
    if isinstance(text, str):
        if len(text) > MAX_BYTES:  # every character is at least one UTF-8 byte
            return _too_large(len(text), "characters")
        try:
            text = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return _failed([error("E103", "", f"not text: unpaired surrogate at character {exc.start}")])
    return _load_bytes(text)


def _load_bytes(raw: bytes) -> LoadedSpec:
    if len(raw) > MAX_BYTES:
        return _too_large(len(raw))
    text, builder = "", _Builder()
    try:
        text = _decode(raw)
        root: Node = SpecComposer(_scan(text)).get_single_node()
        if isinstance(root, ScalarNode) and root.tag == NULL:
            _fail("E104", "", "spec is empty (the document is null)", root)
        _measure(root, "", 0, {}, set())
        data = builder.build_root(root)
    except _Fail as fail:
        return _failed([fail.args[0]])
    except yaml.reader.ReaderError as exc:  # a control character YAML forbids; position indexes text
        line = text.count("\n", 0, exc.position) + 1
        where = Position(line, exc.position - text.rfind("\n", 0, exc.position))
        return _failed([error("E103", "", f"not a text file: control character U+{exc.character:04X} "
                              f"on line {line}", where, hint="remove the character")])
    except yaml.MarkedYAMLError as exc:  # scanner, parser and composer errors
        context = f"{exc.context} (line {exc.context_mark.line + 1}): " if exc.context_mark else ""
        mark = exc.problem_mark or exc.context_mark
        return _failed([error("E105", "", f"YAML syntax error: {context}{exc.problem}",
                              _pos(mark) if mark else None)])
    except RecursionError:  # defensive only: both depth checks run before anything recurses
        return _failed([error("E109", "", f"nesting deeper than {MAX_DEPTH} levels")])
    if builder.diagnostics:
        return _failed(builder.diagnostics)
    return LoadedSpec(data, MappingProxyType(builder.positions), MappingProxyType(builder.key_positions),
                      [])


def _decode(raw: bytes) -> str:
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    bad, why = raw.find(b"\0", skip), "a NUL byte"
    if bad < 0:
        try:
            return raw[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            bad, why = exc.start + skip, "invalid UTF-8"
    line, start = raw.count(b"\n", 0, bad) + 1, max(skip, raw.rfind(b"\n", 0, bad) + 1)
    where = Position(line, len(raw[start:bad].decode("utf-8", "replace")) + 1)
    raise _Fail(error("E103", "", f"not a text file: {why} at byte offset {bad} (line {line})", where,
                      hint="save the spec as UTF-8 text"))


def _scan(text: str) -> list[ev.Event]:
    """Collect the event stream, stopping early at a second document, too deep nesting or too many
    nodes. PyYAML's parser is an iterative state machine, so this is safe on any input; its
    recursive composer only ever sees streams that passed these checks."""
    events: list[ev.Event] = []
    frames: list[list[Any]] = []  # open collections: [pointer, is mapping, children seen, last key]
    documents = nodes = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # parsing does not resolve tags
        if isinstance(event, ev.DocumentStartEvent):
            documents += 1
            if documents > 1:
                _fail("E110", "", "found a second YAML document; a spec is exactly one", event,
                      hint="remove the extra '---'")
        elif isinstance(event, ev.NodeEvent):
            nodes += 1
            if isinstance(event, ev.ScalarEvent) and event.tag == "!":  # PyYAML reads `! 12` as an
                event.implicit = (False, False)  # int; YAML's non-specific `!` means a string
            pointer = frames[-1][0] if frames else ""
            if frames:
                parent = frames[-1]
                if not parent[1]:
                    pointer = pointer_join(pointer, parent[2])
                elif parent[2] % 2 == 0:  # a key: remember it for the value's pointer
                    parent[3] = getattr(event, "value", "?")
                else:
                    pointer = pointer_join(pointer, parent[3])
                parent[2] += 1
            if nodes > MAX_NODES:  # a lower bound of the expanded size, so stop right here
                _fail("E108", pointer, f"spec has more than {MAX_NODES:,} nodes", event)
            if isinstance(event, ev.CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    _fail("E109", pointer, f"nesting deeper than {MAX_DEPTH} levels", event)
                frames.append([pointer, isinstance(event, ev.MappingStartEvent), 0, None])
        elif isinstance(event, ev.CollectionEndEvent):
            frames.pop()
        events.append(event)
    if documents == 0:
        _fail("E104", "", "spec is empty (no YAML document)")
    return events


def _measure(node: Node, pointer: str, above: int, memo: dict[int, tuple[int, int]],
             path: set[int]) -> tuple[int, int]:
    """Expanded (node count, collection height) of ``node``, which has ``above`` collections above.

    Memoised by node identity, so an alias bomb costs one visit per distinct node, not one per
    expanded copy; ``path`` holds the nodes being measured, which catches recursive aliases.
    """
    if isinstance(node, ScalarNode):
        return 1, 0
    if id(node) in path:
        _fail("E108", pointer, "recursive alias: an anchor is used inside itself", node)
    size, height = memo.get(id(node), (0, 1))
    if above + height > MAX_DEPTH:
        _fail("E109", pointer, f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded", node)
    if size:
        return size, height
    path.add(id(node))
    size, height = 1, 0
    children = enumerate(node.value) if isinstance(node, SequenceNode) else (
        item for key, value in node.value for item in ((None, key), (getattr(key, "value", "?"), value)))
    for token, child in children:
        child_pointer = pointer if token is None else pointer_join(pointer, token)
        child_size, child_height = _measure(child, child_pointer, above + 1, memo, path)
        size, height = size + child_size, max(height, child_height)
    path.discard(id(node))
    if size > MAX_NODES:
        _fail("E108", pointer, f"value expands to {size:,} nodes once aliases are expanded "
                               f"(limit {MAX_NODES:,} for the whole spec)", node)
    memo[id(node)] = (size, height + 1)
    return size, height + 1


def _scalar(tag: str, text: str) -> Any:
    """Value of a scalar that matched the core-schema pattern of ``tag``."""
    if tag == NULL:
        return None
    if tag == BOOL:
        return text[0] in "tT"
    if tag == INT:
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text if base == 10 else text[2:], base)  # ValueError past 4300 digits
    if text.lower().endswith(".nan"):  # float() does not take YAML's .nan/.inf spellings
        return math.nan
    if text.lower().endswith(".inf"):
        return -math.inf if text[0] == "-" else math.inf
    return float(text)


class _Builder:
    """Builds plain values from the node graph, recording positions and per-node errors."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        self.key_positions: dict[str, Position] = {}
        self.diagnostics: list[Diagnostic] = []
        self._reported: set[tuple[str, int]] = set()

    def fail(self, code: str, pointer: str, message: str, node: Node, hint: str | None = None) -> None:
        if (code, node.start_mark.index) not in self._reported:  # aliases revisit nodes: report once
            self._reported.add((code, node.start_mark.index))
            self.diagnostics.append(error(code, pointer, message, _pos(node), hint))

    def bad_tag(self, node: Node, pointer: str) -> bool:
        implicit_merge = node.tag == MERGE and node.value == "<<" and getattr(node, "style", "") is None
        if node.tag in _ALLOWED_TAGS[type(node)] or implicit_merge:
            return False
        shown = "!!" + node.tag[len(_CORE):] if node.tag.startswith(_CORE) else node.tag
        self.fail("E107", pointer, f"tag {shown} is not allowed; a spec holds only plain strings, "
                                   "numbers, booleans, nulls, lists and mappings", node)
        return True

    def build_root(self, root: Node) -> dict[str, Any] | None:
        if not isinstance(root, MappingNode) and not self.bad_tag(root, ""):
            kind = "a list" if isinstance(root, SequenceNode) else _TYPE_NAMES.get(root.tag, "a string")
            _fail("E111", "", f"the top level of a spec must be a mapping, not {kind}", root)
        return self.build(root, "")

    def build(self, node: Node, pointer: str) -> Any:
        self.positions[pointer] = _pos(node)
        if self.bad_tag(node, pointer):
            return None
        if isinstance(node, SequenceNode):
            return [self.build(child, pointer_join(pointer, i)) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for key, (key_node, value_node) in self.entries(node, pointer).items():
                self.key_positions[pointer_join(pointer, key)] = _pos(key_node)
                out[key] = self.build(value_node, pointer_join(pointer, key))
            return out
        if node.tag in (STR, MERGE):  # a plain '<<' that is not a key is just a string
            return node.value
        if not _PATTERN[node.tag].match(node.value):  # only an explicit tag can get here
            self.fail("E105", pointer, f"{node.value!r} is not {_TYPE_NAMES[node.tag]}", node)
            return None
        try:
            return _scalar(node.tag, node.value)
        except ValueError:
            self.fail("E105", pointer, f"integer has too many digits ({len(node.value):,})", node)
            return None

    def entries(self, node: MappingNode, pointer: str) -> dict[str, tuple[Node, Node]]:
        """The mapping's (key node, value node) by key, merge keys applied (explicit keys win)."""
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        merge_key: Node | None = None
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == MERGE:
                if merge_key is not None:
                    self.fail("E106", pointer, f"duplicate merge key '<<' (first on line "
                              f"{merge_key.start_mark.line + 1})", key_node, hint="use '<<: [*a, *b]'")
                    continue
                merge_key = key_node
                many = isinstance(value_node, SequenceNode) and value_node.tag == SEQ
                for source in value_node.value if many else [value_node]:
                    if isinstance(source, MappingNode) and source.tag == MAP:
                        for key, entry in self.entries(source, pointer).items():
                            merged.setdefault(key, entry)
                    else:
                        self.fail("E107", pointer, "merge key '<<' takes a mapping or a list of mappings",
                                  source)
            elif self.bad_tag(key_node, pointer):
                continue
            elif not isinstance(key_node, ScalarNode):
                kind = "a list" if isinstance(key_node, SequenceNode) else "a mapping"
                self.fail("E112", pointer, f"mapping key is {kind}; spec keys must be strings", key_node)
            elif key_node.tag != STR:
                self.fail("E112", pointer_join(pointer, key_node.value), f"mapping key {key_node.value!r}"
                          f" is {_TYPE_NAMES[key_node.tag]}, not a string", key_node,
                          hint=f"quote it: \"{key_node.value}\"")
            elif key_node.value in explicit:
                self.fail("E106", pointer_join(pointer, key_node.value), f"duplicate key "
                          f"{key_node.value!r} (first defined on line "
                          f"{explicit[key_node.value][0].start_mark.line + 1})", key_node)
            else:
                explicit[key_node.value] = (key_node, value_node)
        return {**merged, **explicit}
