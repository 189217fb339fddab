"""Access to the spec's JSON Schema (`schema/ftc.schema.json`), the single home of every default."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("ftc.schema").joinpath("ftc.schema.json").read_text(encoding="utf-8")


def schema_text() -> str:
    """The schema exactly as shipped (what `ftc schema` prints)."""
    return _schema_text()


DEF_MARK = "x-def"  # set on each inlined definition: the name of the `$defs` entry it came from


def inline_refs(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every local `{"$ref": "#/$defs/NAME"}` replaced by a copy of that definition.

    Keywords beside a `$ref` (a description, a default) override the definition's own. The copy is
    marked with `x-def: NAME` (so generated types share one class) and `$defs` is dropped: every
    consumer (validation, defaults, error locations, the typed spec) then walks one plain tree.
    Hand-written rather than a jsonschema `referencing` registry: defaults and error locations are
    read by walking `properties`, which a registry does not do.
    """
    definitions: dict[str, Any] = document.get("$defs", {})

    def expand(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if ref is None:
            return {key: expand(value, seen) for key, value in node.items()}
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in definitions or name in seen:
            raise ValueError(f"schema: unsupported or recursive $ref {ref!r}")
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        merged = {**expand(definitions[name], (*seen, name)), **expand(siblings, seen), DEF_MARK: name}
        return merged

    return {key: expand(value, ()) for key, value in document.items() if key != "$defs"}


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return inline_refs(json.loads(_schema_text()))


def schema() -> dict[str, Any]:
    """The parsed schema with its `$defs` inlined (shared; do not mutate)."""
    return _schema()


def object_branch(node: dict[str, Any]) -> dict[str, Any] | None:
    """The object-shaped part of a property schema, or None if it cannot hold an object."""
    types = node.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        return node
    return None


def subschema(pointer_tokens: list[str]) -> dict[str, Any] | None:
    """The schema of the property at a path of keys (array indexes skipped), or None."""
    node: dict[str, Any] | None = _schema()
    for token in pointer_tokens:
        if node is None:
            return None
        if token.isdigit() and "items" in node:
            node = node["items"]
            continue
        props = node.get("properties", {})
        if token in props:
            node = props[token]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def apply_defaults(node: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``value`` with every missing property filled from the schema's defaults.

    Recurses into present (non-null) objects and into object defaults, so `training: {}` gets every
    training default. Defaults are copied, never shared.
    """
    out = dict(value)
    props: dict[str, Any] = node.get("properties", {})
    for key, prop in props.items():
        if key not in out:
            if "default" not in prop:
                continue
            out[key] = copy.deepcopy(prop["default"])
        child = out[key]
        branch = object_branch(prop)
        if isinstance(child, dict) and branch is not None:
            out[key] = apply_defaults(branch, child)
        elif isinstance(child, list) and isinstance(prop.get("items"), dict):
            items = object_branch(prop["items"])
            if items is not None:
                out[key] = [apply_defaults(items, v) if isinstance(v, dict) else v for v in child]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and object_branch(extra) is not None and not props:
        out = {k: apply_defaults(extra, v) if isinstance(v, dict) else v for k, v in out.items()}
    return out


def defaults_for(*path: str) -> dict[str, Any]:
    """A fully defaulted instance of the object schema at ``path`` (e.g. ``("method", "lora")``)."""
    node = subschema(list(path))
    if node is None or object_branch(node) is None:
        raise KeyError("/".join(path))
    return apply_defaults(node, {})
