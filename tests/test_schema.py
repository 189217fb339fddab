"""The schema is the public interface: documented, closed, and in lockstep with the typed plan."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ftc import spec_types
from ftc.resolve import resolve
from ftc.runtime.method_traits import FULL_LEARNING_RATE, PEFT_LEARNING_RATE
from ftc.spec_schema import apply_defaults, object_branch, schema, subschema
from jsonschema import Draft202012Validator
from specs import spec as make_spec

ROOT = Path(__file__).resolve().parent.parent


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


def _property_nodes(node: Any) -> Iterator[int]:
    """Every property schema anywhere in ``node``, whatever the path to it (as ids)."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield from (id(prop) for prop in node["properties"].values())
        for value in node.values():
            yield from _property_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _property_nodes(value)


def test_the_walk_reaches_every_property() -> None:
    """The checks below see every property of the schema, however deeply it is nested."""
    walked = [id(prop) for _, prop in _properties(schema())]
    assert sorted(walked) == sorted(_property_nodes(schema()))


def test_every_property_is_documented_with_an_example() -> None:
    """Each field has a description; each leaf an example (defaults are checked below)."""
    for path, prop in _properties(schema()):
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


def test_a_property_is_either_required_or_has_a_default() -> None:
    """What a spec leaves out is filled from the schema's default, so only required fields lack one."""
    for path, node in _objects(schema()):
        required = set(node.get("required", []))
        for key, prop in node["properties"].items():
            assert ("default" in prop) != (key in required), f"{path}/{key}: required or defaulted, not both"


def test_examples_and_defaults_are_valid_values() -> None:
    for path, prop in _properties(schema()):
        validator = Draft202012Validator(prop)
        for example in prop.get("examples", []):
            assert validator.is_valid(example), f"{path}: example {example!r} is invalid"
        if "default" in prop and prop["default"] is not None:
            filled = apply_defaults(object_branch(prop) or {}, prop["default"]) if isinstance(
                prop["default"], dict) else prop["default"]
            assert validator.is_valid(filled), f"{path}: default {prop['default']!r} is invalid"


@cache
def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_spec_types", ROOT / "scripts" / "gen_spec_types.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_spec_types"] = module
    spec.loader.exec_module(module)
    return module


def test_spec_types_is_generated_from_the_schema() -> None:
    """compiler/spec_types.py is what the generator writes for the shipped schema (else: make regen)."""
    committed = Path(spec_types.__file__).read_text(encoding="utf-8")
    assert committed == _generator().render(schema()), "compiler/spec_types.py is stale: run `make regen`"


def _words(text: str) -> str:
    return " ".join(text.split())


@cache
def _documented(cls: type) -> tuple[str, list[tuple[str, str]]]:
    """A class's docstring and its fields in order, each with its attribute docstring (from the source)."""
    tree = ast.parse(Path(sys.modules[cls.__module__].__file__ or "").read_text(encoding="utf-8"))
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    fields = []
    for stmt, after in zip(node.body, [*node.body[1:], None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            assert isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant), \
                f"{cls.__name__}.{stmt.target.id} has no docstring"
            fields.append((stmt.target.id, _words(after.value.value)))
    return _words(ast.get_docstring(node) or ""), fields


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_of(arg)
        if found is not None:
            return found
    return None


def _nullable(prop: dict[str, Any]) -> bool:
    types = prop.get("type", [])
    return "null" in types or any(arm.get("type") == "null" for arm in prop.get("anyOf", []))


def _compare(cls: type, node: dict[str, Any], path: str) -> None:
    doc, fields = _documented(cls)
    assert doc == _words(node["description"]), f"{path or '/'}: class docstring is not the schema's description"
    assert [name for name, _ in fields] == list(node["properties"]), f"{path}: fields are not the schema's, in order"
    hints = typing.get_type_hints(cls)
    for name, field_doc in fields:
        prop = node["properties"][name]
        assert field_doc == _words(prop["description"]), f"{path}/{name}: docstring is not the schema's description"
        resolved = f"{path}/{name}" in _generator().RESOLVED
        assert (type(None) in typing.get_args(hints[name])) == (_nullable(prop) and not resolved), f"{path}/{name}"
        child = _dataclass_of(hints[name])
        if child is None:
            continue
        branch = prop if "properties" in prop else None
        for sub in (prop.get("items"), prop.get("additionalProperties")):
            if branch is None and isinstance(sub, dict) and "properties" in sub:
                branch = sub
        assert branch is not None, f"{path}/{name} is a dataclass in the plan but not an object in the schema"
        _compare(child, branch, f"{path}/{name}")


def test_plan_dataclasses_are_the_schema_documented() -> None:
    """Each schema object is a dataclass with the same fields in order, each field's docstring its description,
    nullable exactly where the schema allows null (except the fields resolve always fills)."""
    _compare(spec_types.Spec, schema(), "")


def test_the_fields_resolve_fills_are_filled() -> None:
    """The fields typed non-null though the schema allows null are filled when the spec leaves them null."""
    resolved = resolve(make_spec(**{"method.type": "qlora", "training.learning_rate": None}))
    for path in sorted(_generator().RESOLVED):
        node: Any = resolved
        for key in path.strip("/").split("/"):
            node = node[key]
        assert node is not None, path


def _scientific(value: float) -> str:
    """3e-4 for 0.0003: the way the schema's prose writes a learning rate."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def test_learning_rate_prose_matches_the_method_registry() -> None:
    """The description of training.learning_rate states the defaults method_traits applies."""
    description = schema()["properties"]["training"]["properties"]["learning_rate"]["description"]
    assert f"{_scientific(PEFT_LEARNING_RATE)} for PEFT methods" in description
    assert f"{_scientific(FULL_LEARNING_RATE)} for full fine-tuning" in description


@pytest.mark.parametrize("path", [["training"], ["method", "lora"], ["kubernetes"], ["data", "validation"]])
def test_subschema_lookup(path: list[str]) -> None:
    node = subschema(path)
    assert node is not None and "properties" in node


def test_shared_definitions_are_inlined_with_their_use_site_keywords() -> None:
    """`$defs` entries reach every consumer as plain subtrees; the use site's keywords win."""
    from ftc.spec_schema import DEF_MARK, inline_refs

    document = {"$defs": {"src": {"type": "object", "description": "own", "properties": {"p": {"type": "string"}}}},
                "properties": {"a": {"$ref": "#/$defs/src", "description": "use"}, "b": {"$ref": "#/$defs/src"}}}
    inlined = inline_refs(document)
    assert "$defs" not in inlined
    assert inlined["properties"]["a"] == {"type": "object", "description": "use",
                                          "properties": {"p": {"type": "string"}}, DEF_MARK: "src"}
    assert inlined["properties"]["b"]["description"] == "own"
    with pytest.raises(ValueError, match="recursive"):
        inline_refs({"$defs": {"x": {"properties": {"y": {"$ref": "#/$defs/x"}}}},
                     "properties": {"z": {"$ref": "#/$defs/x"}}})
    assert "class DataSource:" in (ROOT / "compiler" / "spec_types.py").read_text(encoding="utf-8")
