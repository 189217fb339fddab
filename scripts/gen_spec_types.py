"""Write compiler/spec_types.py: the spec's fields as frozen dataclasses, generated from the JSON Schema.

Every object of `schema/ftc.schema.json` becomes a class and every property a field, in schema order,
followed by its description as an attribute docstring. Types follow the schema: `str`, `int`, `float`
(number), `bool`, `tuple[...]` for arrays, `Mapping[str, ...]` for open maps, `X | None` where null is
allowed and `Literal[...]` for a constant among alternatives. The output is the resolved spec, so a field
that `ftc.resolve` always fills (RESOLVED below) drops its null.

`make regen` runs this (through scripts/regen.py); tests/test_schema.py checks the committed module is
what this writes.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from ftc.spec_schema import DEF_MARK, inline_refs

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "ftc.schema.json"
TARGET = ROOT / "compiler" / "spec_types.py"
WIDTH = 120

# Class names that are not the property's key in CamelCase (an array's items and a map's values have no
# key of their own). Paths as in the schema's tree: `items` for an array's items, `*` for a map's values.
CLASS_NAMES: dict[str, str] = {
    "": "Spec",
    "/performance/deepspeed": "DeepSpeed",
    "/kubernetes/tolerations/items": "Toleration",
    "/kubernetes/volumes/items": "Volume",
    "/kubernetes/secrets/*": "SecretRef",
    "/objective/grpo/rewards/items": "Reward",
}

# Nullable in the spec, never null once resolved: `ftc.resolve` fills them (learning_rate from the
# method, compute_dtype from training.precision).
RESOLVED: frozenset[str] = frozenset({"/training/learning_rate", "/method/quantization/compute_dtype"})

HEADER = '''\
"""The resolved spec as frozen dataclasses: every field present, defaults and derived values filled in.

Each field carries its description from the JSON Schema. Nothing here has a default: defaults live in
the schema and derived values in `ftc.resolve`.

Generated from schema/ftc.schema.json by scripts/gen_spec_types.py (make regen); do not edit.
"""
'''

SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


class _Generator:
    def __init__(self) -> None:
        self.classes: list[str] = []
        self.imports: set[str] = set()
        self.shared: set[str] = set()  # classes of `$defs` entries already emitted

    def object_class(self, node: dict[str, Any], path: str) -> str:
        """Emit the class of an object schema (its nested classes first); return its name.

        An inlined `$defs` entry is one class, named after the entry, wherever it is used.
        """
        shared = node.get(DEF_MARK)
        if shared is not None:
            name = _camel(shared)
            if name in self.shared:
                return name
            self.shared.add(name)
        else:
            name = CLASS_NAMES.get(path) or _camel(path.rsplit("/", 1)[-1])
        fields: list[str] = []
        for key, prop in node["properties"].items():
            tp = self.type_of(prop, f"{path}/{key}")
            if f"{path}/{key}" in RESOLVED:
                tp = tp.removesuffix(" | None")
            noqa = "  # noqa: N815 - the spec's own key" if key != key.lower() else ""
            fields.append(f"    {key}: {tp}{noqa}\n{_docstring(prop['description'], '    ')}")
        self.imports.add("from dataclasses import dataclass")
        self.classes.append(f"@dataclass(frozen=True)\nclass {name}:\n{_docstring(node['description'], '    ')}\n\n"
                            + "\n\n".join(fields) + "\n")
        return name

    def type_of(self, node: dict[str, Any], path: str) -> str:
        """The Python type of a property schema."""
        if "anyOf" in node:
            arms = [self._arm(arm, path) for arm in node["anyOf"]]
            return " | ".join([arm for arm in arms if arm != "None"] + [arm for arm in arms if arm == "None"])
        types = node.get("type")
        if types is None:
            values = node["enum"] if "enum" in node else [node["const"]]
            types = sorted({_json_type(v) for v in values})
        types = [types] if isinstance(types, str) else list(types)
        nullable = "null" in types
        (kind,) = [t for t in types if t != "null"]
        if kind in SCALARS:
            tp = SCALARS[kind]
        elif kind == "array":
            tp = f"tuple[{self.type_of(node['items'], f'{path}/items')}, ...]"
        elif "properties" in node:
            tp = self.object_class(node, path)
        else:
            self.imports.add("from collections.abc import Mapping")
            tp = f"Mapping[str, {self.type_of(node['additionalProperties'], f'{path}/*')}]"
        return f"{tp} | None" if nullable else tp

    def _arm(self, node: dict[str, Any], path: str) -> str:
        if "const" in node:
            self.imports.add("from typing import Literal")
            return f"Literal[{json.dumps(node['const'])}]"
        if node.get("type") == "null":
            return "None"
        return self.type_of(node, path)


def _camel(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number"}[type(value)]


def _docstring(text: str, indent: str) -> str:
    """A docstring literal of ``text``, wrapped to WIDTH columns."""
    body = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return "\n".join(textwrap.wrap(f'"""{body}"""', width=WIDTH, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))


def render(schema: dict[str, Any]) -> str:
    """The text of compiler/spec_types.py for ``schema``."""
    gen = _Generator()
    gen.object_class(inline_refs(schema), "")
    imports = "\n".join(sorted(gen.imports))
    return f"{HEADER}\nfrom __future__ import annotations\n\n{imports}\n\n\n" + "\n\n".join(gen.classes)


def main() -> int:
    text = render(json.loads(SCHEMA.read_text(encoding="utf-8")))
    if TARGET.exists() and TARGET.read_text(encoding="utf-8") == text:
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"{TARGET.relative_to(ROOT)}: written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
