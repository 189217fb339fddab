"""The schema is the public interface: documented, closed, and in lockstep with the typed plan."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from ftc import plan as plan_module
from ftc.spec_schema import apply_defaults, object_branch, schema, subschema
from jsonschema import Draft202012Validator


def _properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, prop in node.get("properties", {}).items():
        yield f"{path}/{key}", prop
        branch = object_branch(prop)
        if branch is not None:
            yield from _properties(branch, f"{path}/{key}")
        items = prop.get("items")
        if isinstance(items, dict) and object_branch(items) is not None:
            yield from _properties(items, f"{path}/{key}/items")
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and object_branch(extra) is not None:
            yield from _properties(extra, f"{path}/{key}/*")


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_property_is_documented_with_an_example() -> None:
    """Each field has a description; each leaf an example (defaults are checked below)."""
    props = list(_properties(schema()))
    assert len(props) > 100
    for path, prop in props:
        assert prop.get("description", "").strip(), f"{path} has no description"
        if "properties" not in prop:  # an object section is exemplified by its fields
            assert prop.get("examples"), f"{path} has no example"


def _objects(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{path}/{index}")


def test_every_object_is_closed() -> None:
    for path, node in _objects(schema()):
        assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_examples_and_defaults_are_valid_values() -> None:
    for path, prop in _properties(schema()):
        validator = Draft202012Validator(prop)
        for example in prop.get("examples", []):
            assert validator.is_valid(example), f"{path}: example {example!r} is invalid"
        if "default" in prop and prop["default"] is not None:
            filled = apply_defaults(object_branch(prop) or {}, prop["default"]) if isinstance(
                prop["default"], dict) else prop["default"]
            assert validator.is_valid(filled), f"{path}: default {prop['default']!r} is invalid"


def _plan_fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_of(arg)
        if found is not None:
            return found
    return None


def _compare(cls: type, node: dict[str, Any], path: str) -> None:
    hints = _plan_fields(cls)
    schema_fields = set(node["properties"])
    assert set(hints) == schema_fields, f"{path}: plan {sorted(hints)} vs schema {sorted(schema_fields)}"
    for name, tp in hints.items():
        prop = node["properties"][name]
        child = _dataclass_of(tp)
        if child is None:
            continue
        branch = object_branch(prop) if "properties" in prop else None
        if branch is None and isinstance(prop.get("items"), dict):
            branch = object_branch(prop["items"])
        if branch is None and isinstance(prop.get("additionalProperties"), dict):
            branch = object_branch(prop["additionalProperties"])
        assert branch is not None, f"{path}/{name} is a dataclass in the plan but not an object in the schema"
        _compare(child, branch, f"{path}/{name}")


def test_plan_dataclasses_mirror_the_schema() -> None:
    _compare(plan_module.Spec, schema(), "")


@pytest.mark.parametrize("path", [["training"], ["method", "lora"], ["kubernetes"], ["data", "validation"]])
def test_subschema_lookup(path: list[str]) -> None:
    node = subschema(path)
    assert node is not None and "properties" in node
