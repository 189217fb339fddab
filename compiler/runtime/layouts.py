"""Row layouts: which columns of a row hold what, and which role names mean what.

Pure (the standard library only): `ftc validate` reads data with it at compile time and the runtime
formats rows with it, so both agree on what a usable row is.

A layout is a format's kind (`alpaca`, `chat`, `completion`, `text`) plus a field map and a role map.
Presets give the common layouts their names, so most data sets need one word (`format: sharegpt`);
`fields`, `roles` and `system_prompt` of a data source change any part of a preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# The roles a conversation may use after mapping (OpenAI / Hugging Face names).
ROLES = ("system", "user", "assistant", "tool")

# {kind: {field: default column}} — the fields each kind reads, in the order they are documented.
KIND_FIELDS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output", "system": "system"},
    "chat": {"messages": "messages", "role": "role", "content": "content", "system": "system", "tools": "tools"},
    "completion": {"prompt": "prompt", "completion": "completion", "system": "system"},
    "text": {"text": "text"},
})
# Fields whose column may be absent from a row.
OPTIONAL_FIELDS = frozenset({"input", "system", "tools", "prompt"})


@dataclass(frozen=True)
class Preset:
    kind: str
    fields: Mapping[str, str] = field(default_factory=dict)  # changes to the kind's default columns
    roles: Mapping[str, str] = field(default_factory=dict)  # {value in the data: role}


# `chat` is the OpenAI messages layout (`messages`: [{role, content, tool_calls}], optional `tools`);
# `sharegpt` the ShareGPT one (`conversations`: [{from, value}] with human/gpt/system and tool roles).
PRESETS: Mapping[str, Preset] = MappingProxyType({
    "alpaca": Preset("alpaca"),
    "chat": Preset("chat"),
    "completion": Preset("completion"),
    "text": Preset("text"),
    "sharegpt": Preset("chat", {"messages": "conversations", "role": "from", "content": "value"},
                       {"human": "user", "gpt": "assistant", "system": "system", "tool": "tool",
                        "observation": "tool", "function_call": "assistant"}),
})


@dataclass(frozen=True)
class Layout:
    """How to read the rows of one source: its kind, the column of each field, the role map."""

    kind: str
    fields: Mapping[str, str]
    roles: Mapping[str, str]  # {value in the data: role}; values not listed must be one of ROLES
    system_prompt: str | None = None
    # {role value: role} of every value a message may have: the roles themselves and the mapped ones
    role_of: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "role_of", {**{role: role for role in ROLES}, **self.roles})

    def role(self, value: Any) -> str | None:
        """The role a message's role value stands for, or None when it is not known."""
        return self.role_of.get(value) if isinstance(value, str) else None

    def accepted_roles(self) -> list[str]:
        return sorted(set(ROLES) | set(self.roles))


def layout(fmt: str, fields: Mapping[str, str] | None = None, roles: Mapping[str, str] | None = None,
           system_prompt: str | None = None) -> Layout:
    """The layout of format (or preset) `fmt` with the source's own `fields` and `roles` on top."""
    if fmt not in PRESETS:
        raise ValueError(f"unknown data format {fmt!r}")
    preset = PRESETS[fmt]
    own = {name: column for name, column in (fields or {}).items() if column is not None}
    columns = {**KIND_FIELDS[preset.kind], **preset.fields, **own}
    return Layout(preset.kind, MappingProxyType(columns), MappingProxyType({**preset.roles, **(roles or {})}),
                  system_prompt)


def source_layout(source: Mapping[str, Any], fmt: str | None = None) -> Layout:
    """The layout of a data source of the spec (`format`, `fields`, `roles`, `system_prompt`)."""
    return layout(fmt or source["format"], source.get("fields"), source.get("roles"), source.get("system_prompt"))
