"""The import report and the spec under construction, shared by every importer.

Each top-level key of the source file gets exactly one `Entry`: `carried` (same meaning, value copied),
`translated` (renamed, converted, or its meaning differs: the value written and why), or `no_home` (ftc has no
setting for it). Nested keys (`datasets[0].split`, `fsdp_config.fsdp_offload_params`) count under their
top-level key: what becomes of each one is a note of that key's entry. A `no_home` key is refused (level
`error`) when it changes what is trained, warned when it changes how, and noted (`info`) when it only steers
the source tool itself (caching, logging, worker counts). Settings the source file leaves out but the two
tools default differently are written explicitly and listed as `Default` rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Category = Literal["carried", "translated", "no_home"]
Level = Literal["info", "warning", "error"]
CATEGORIES: tuple[Category, ...] = ("carried", "translated", "no_home")
LEVELS: tuple[Level, ...] = ("info", "warning", "error")


@dataclass
class Entry:
    """What became of one top-level key of the source file."""

    key: str
    category: Category
    value: Any
    ftc: tuple[str, ...] = ()  # the ftc keys it set (dotted)
    notes: list[tuple[Level, str]] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return max((level for level, _ in self.notes), key=LEVELS.index, default="info")


@dataclass(frozen=True)
class Default:
    """A setting the source file leaves out, written with the source tool's default because ftc's differs."""

    ftc_key: str
    value: Any
    why: str


@dataclass
class Imported:
    """An imported spec (nested values plus a comment per dotted key) and its report."""

    tool: str
    source: str
    spec: dict[str, Any]
    comments: dict[str, str]
    entries: dict[str, Entry]
    defaults: list[Default]

    @property
    def refused(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.level == "error"]

    def by_category(self, category: Category) -> list[Entry]:
        return [e for e in self.entries.values() if e.category == category]


class InputError(Exception):
    """The source file cannot be imported at all: `where` is `file:line:column` or the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def dns_label(text: str, limit: int = 42) -> str:
    """`text` as a DNS-1123 label (metadata.name): lowercase letters, digits and '-'."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or "imported"


def is_unset(value: Any) -> bool:
    """Both tools read an empty value (`key:` with nothing after it) as "not set"."""
    return value is None or value == "" or value == [] or value == {}


class Builder:
    """Collects the spec, its comments and the report while an importer walks the source keys."""

    def __init__(self, tool: str, label: str, source: Mapping[str, Any], path: Path,
                 positions: Mapping[str, Any] | None = None) -> None:
        self.positions = positions or {}
        self.tool = tool  # the --tool name
        self.label = label  # the tool as users name it ("Axolotl", "LLaMA-Factory")
        self.source = dict(source)
        self.path = path
        self.spec: dict[str, Any] = {}
        self.comments: dict[str, str] = {}
        self.entries: dict[str, Entry] = {}
        self.defaults: list[Default] = []

    # -- the spec --------------------------------------------------------------------------------
    def put(self, ftc_key: str, value: Any, comment: str | None = None) -> None:
        node = self.spec
        *parents, last = ftc_key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        if comment:
            self.comments[ftc_key] = comment

    def has(self, ftc_key: str) -> bool:
        node: Any = self.spec
        for part in ftc_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def get(self, ftc_key: str, default: Any = None) -> Any:
        node: Any = self.spec
        for part in ftc_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    # -- the report ------------------------------------------------------------------------------
    def _entry(self, key: str, category: Category, ftc: tuple[str, ...], notes: list[tuple[Level, str]]) -> Entry:
        if key in self.entries:
            raise AssertionError(f"{key} reported twice")  # an importer bug, never the user's input
        entry = Entry(key, category, self.source.get(key), ftc, notes)
        self.entries[key] = entry
        return entry

    def carried(self, key: str, ftc_key: str, value: Any = None, why: str = "") -> Entry:
        value = self.source[key] if value is None else value
        self.put(ftc_key, value, f"{key}" + (f": {why}" if why else ""))
        return self._entry(key, "carried", (ftc_key,), [("info", why)] if why else [])

    def translated(self, key: str, ftc_keys: tuple[str, ...] | str, why: str, level: Level = "info") -> Entry:
        keys = (ftc_keys,) if isinstance(ftc_keys, str) else ftc_keys
        return self._entry(key, "translated", keys, [(level, why)])

    def set_translated(self, key: str, ftc_key: str, value: Any, why: str, level: Level = "info") -> Entry:
        from .spec_yaml import scalar

        shown = self.source.get(key)
        shown = scalar(shown) if not isinstance(shown, (dict, list)) else "…"
        self.put(ftc_key, value, f"{key}: {shown} → {why}" if why else key)
        return self.translated(key, ftc_key, why, level)

    def no_home(self, key: str, why: str, level: Level = "warning") -> Entry:
        if is_unset(self.source.get(key)):
            level = "info"
            why = f"unset; {why}" if why else "unset"
        return self._entry(key, "no_home", (), [(level, why)])

    def unset(self, key: str, ftc_keys: tuple[str, ...] | str, category: Category = "carried") -> Entry:
        """A key present with no value: the tool's default applies (see the defaults)."""
        keys = (ftc_keys,) if isinstance(ftc_keys, str) else ftc_keys
        return self._entry(key, category, keys, [("info", f"unset: {self.label}'s default applies")])

    def note(self, key: str, level: Level, text: str) -> None:
        self.entries[key].notes.append((level, text))

    def default(self, ftc_key: str, value: Any, why: str) -> None:
        """Write a setting the source leaves out, with the value the source tool would use."""
        self.put(ftc_key, value, why)
        self.defaults.append(Default(ftc_key, value, why))

    def default_row(self, ftc_key: str, value: Any, why: str) -> None:
        """List a default that differs between the tools for a value already written."""
        self.defaults.append(Default(ftc_key, value, why))

    def where(self, key: str) -> str:
        position = self.positions.get(f"/{key}")
        return f"{self.path}:{position[0]}:{position[1]}" if position else str(self.path)

    def number(self, key: str, kind: type = float, default: Any = None) -> Any:
        """The value of `key` as an int or float; InputError (with the key's line) when it is not one."""
        value = self.source.get(key)
        if is_unset(value):
            return default
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if kind is int and not number.is_integer():
                raise ValueError
            return int(number) if kind is int else number
        except (TypeError, ValueError):
            noun = "a whole number" if kind is int else "a number"
            raise InputError(self.where(key), f"{key}: {value!r} is not {noun}") from None

    def value(self, key: str, default: Any = None) -> Any:
        value = self.source.get(key)
        return default if is_unset(value) else value

    def without_home(self, refused: Mapping[str, str], warned: Mapping[str, str],
                     tool_only: Mapping[str, str]) -> None:
        """Report the keys not yet reported that a tool's tables know: refused, warned or noted."""
        for key in self.source:
            if key in self.entries:
                continue
            tables: tuple[tuple[Mapping[str, str], Level], ...] = (
                (refused, "error"), (warned, "warning"), (tool_only, "info"))
            for table, level in tables:
                if key in table:
                    self.no_home(key, table[key], level)
                    break

    def finish(self, source: str) -> Imported:
        for key in self.source:
            if key not in self.entries:
                self.no_home(key, f"a key ftc does not know for {self.label}: check what it does and set its ftc "
                                  "equivalent by hand, if any")
        return Imported(self.tool, source, self.spec, self.comments, self.entries, self.defaults)
