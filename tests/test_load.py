"""Tests for the load stage (ftc.load): good specs load with values and positions; every bad or
hostile input comes back as one kind of E1xx diagnostic without an exception (how fast: `make bench`)."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import errno
import math
import os
import sys
from pathlib import Path

import pytest
import yaml
from ftc import load as load_module
from ftc.diagnostics import Diagnostic, Position
from ftc.load import MAX_BYTES, CoreResolver, LoadedSpec, load_spec, load_spec_text
from hostile_yaml import HOSTILE, Payload, nested, write_payload

SPEC = """\
# fine-tune spec
version: "1.29"
name: llama-lora
base_model:
  id: meta-llama/Llama-3.1-8B
  revision: main
data:
  train: data/train.jsonl
  formats: [chat, completion]
training:
  epochs: 3
  learning_rate: 1e-4
  warmup_ratio: .03
  bf16: true
  seed: 0x2A
  resume: ~
lora:
  r: 16
  target_modules:
    - q_proj
    - v_proj
deploy:
  region: NO
  schedule: 2024-01-01
"""


def codes(result: LoadedSpec) -> set[str]:
    return {d.code for d in result.diagnostics}


def only_error(result: LoadedSpec, code: str) -> Diagnostic:
    assert result.data is None
    assert len(result.diagnostics) == 1, result.diagnostics
    diagnostic = result.diagnostics[0]
    assert diagnostic.code == code and diagnostic.is_error
    assert not result.positions and not result.key_positions
    return diagnostic


# --- good input ------------------------------------------------------------------------------


def test_realistic_spec_values(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC, encoding="utf-8")
    result = load_spec(path)
    assert result.diagnostics == []
    assert result.data == {
        "version": "1.29",
        "name": "llama-lora",
        "base_model": {"id": "meta-llama/Llama-3.1-8B", "revision": "main"},
        "data": {"train": "data/train.jsonl", "formats": ["chat", "completion"]},
        "training": {"epochs": 3, "learning_rate": 1e-4, "warmup_ratio": 0.03, "bf16": True,
                     "seed": 42, "resume": None},
        "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]},
        "deploy": {"region": "NO", "schedule": "2024-01-01"},
    }
    assert isinstance(result.data["training"]["learning_rate"], float)


def test_realistic_spec_positions(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC, encoding="utf-8")
    result = load_spec(path)
    assert result.positions[""] == Position(2, 1)
    assert result.positions["/version"] == Position(2, 10)
    assert result.positions["/training"] == Position(11, 3)
    assert result.positions["/training/epochs"] == Position(11, 11)
    assert result.positions["/training/learning_rate"] == Position(12, 18)
    assert result.positions["/data/formats/1"] == Position(9, 19)
    assert result.positions["/lora/target_modules"] == Position(20, 5)
    assert result.positions["/lora/target_modules/1"] == Position(21, 7)
    assert result.positions["/deploy/region"] == Position(23, 11)
    assert result.key_positions["/training"] == Position(10, 1)
    assert result.key_positions["/training/epochs"] == Position(11, 3)
    assert result.key_positions["/lora/target_modules"] == Position(19, 3)
    assert "" not in result.key_positions and "/data/formats/1" not in result.key_positions
    # every value has a position; every mapping entry has a key position
    assert len(result.positions) == 26 and len(result.key_positions) == 21


def test_load_spec_text_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(SPEC.encode())
    from_file = load_spec(path)
    assert load_spec_text(SPEC) == from_file
    assert load_spec_text(SPEC.encode()) == from_file


def test_result_is_read_only() -> None:
    result = load_spec_text("a: 1\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.data = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.positions["/b"] = Position(1, 1)  # type: ignore[index]


def test_pointers_are_escaped() -> None:
    result = load_spec_text("'a/b~c':\n  d: 1\n")
    assert result.data == {"a/b~c": {"d": 1}}
    assert result.positions["/a~1b~0c/d"] == Position(2, 6)
    assert result.key_positions["/a~1b~0c"] == Position(1, 1)


def test_utf8_bom_is_accepted() -> None:
    result = load_spec_text(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    assert result.data == {"name": "café"}
    assert result.key_positions["/name"] == Position(1, 1)


SCALARS = [
    ("1e-4", 1e-4), ("3e-4", 3e-4), ("1.0e-5", 1.0e-5), (".5", 0.5), ("-2.5E+3", -2500.0),
    ("1.", 1.0), ("+12.5", 12.5), (".inf", math.inf), ("-.Inf", -math.inf),
    ("3", 3), ("-17", -17), ("+4", 4), ("007", 7), ("0o17", 15), ("0x1F", 31),
    ("1:30", "1:30"), ("1_000", "1_000"), ("0b101", "0b101"), ("2024-01-01", "2024-01-01"),
    ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False),
    ("FALSE", False), ("yes", "yes"), ("no", "no"), ("NO", "NO"), ("on", "on"), ("off", "off"),
    ("y", "y"), ("n", "n"), ("Yes", "Yes"), ("tRUE", "tRUE"),
    ("~", None), ("null", None), ("Null", None), ("NULL", None), ("", None), ("nULL", "nULL"),
    ('"1.29"', "1.29"), ("'42'", "42"), ('"true"', "true"), ("'~'", "~"), ('"1e-4"', "1e-4"),
    ("!!str 12", "12"), ("!!int '7'", 7), ("!!float 1", 1.0), ("!!bool 'false'", False),
    ("!!null ''", None), ("! 12", "12"), ("<<", "<<"), ("'<<'", "<<"),
    ("hello world", "hello world"), ("|\n  line1\n  line2", "line1\nline2\n"),
]


@pytest.mark.parametrize(("text", "expected"), SCALARS, ids=[repr(t) for t, _ in SCALARS])
def test_yaml_1_2_core_scalars(text: str, expected: object) -> None:
    result = load_spec_text(f"value: {text}\n")
    assert result.diagnostics == []
    value = result.data["value"]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".NAN"])
def test_nan_resolves_to_float(text: str) -> None:
    value = load_spec_text(f"value: {text}\n").data["value"]
    assert isinstance(value, float) and math.isnan(value)


def test_explicit_core_collection_tags() -> None:
    assert load_spec_text("a: !!seq [1]\nb: !!map {c: 2}\n").data == {"a": [1], "b": {"c": 2}}


def test_pyyaml_global_resolution_is_untouched() -> None:
    assert load_spec_text("a: 1e-4\nb: NO\n").data == {"a": 1e-4, "b": "NO"}
    # other code in the process still gets PyYAML's YAML 1.1 behaviour
    assert yaml.safe_load("a: 1e-4\nb: NO\nc: 2024-01-01\nd: 1:30\n") == {
        "a": "1e-4", "b": False, "c": datetime.date(2024, 1, 1), "d": 90}
    assert CoreResolver.yaml_implicit_resolvers is not yaml.resolver.Resolver.yaml_implicit_resolvers
    assert CoreResolver.yaml_implicit_resolvers is not yaml.resolver.BaseResolver.yaml_implicit_resolvers
    assert yaml.resolver.BaseResolver.yaml_implicit_resolvers == {}


def test_aliases_are_expanded_with_anchor_positions() -> None:
    result = load_spec_text("defaults: &d\n  lr: 1e-4\nrun: *d\n")
    assert result.data == {"defaults": {"lr": 1e-4}, "run": {"lr": 1e-4}}
    assert result.data["run"] is not result.data["defaults"]  # plain, unshared values
    assert result.positions["/run/lr"] == result.positions["/defaults/lr"] == Position(2, 7)


def test_moderate_alias_reuse_is_allowed() -> None:
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    text += "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    result = load_spec_text(text)
    assert result.diagnostics == []
    assert sum(len(row) for row in result.data["c"][0]) == 81


# --- merge keys: supported -------------------------------------------------------------------


def test_merge_key_copies_entries_and_explicit_keys_win() -> None:
    text = "base: &base\n  lr: 1\n  wd: 2\nrun:\n  <<: *base\n  lr: 3\n"
    result = load_spec_text(text)
    assert result.data["run"] == {"lr": 3, "wd": 2}
    assert result.positions["/run/wd"] == Position(3, 7)  # where the merged value was written
    assert result.key_positions["/run/wd"] == Position(3, 3)
    assert result.positions["/run/lr"] == Position(6, 7)


def test_merge_key_list_earlier_sources_win() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 3}\nc: {<<: [*a, *b], z: 4}\n"
    assert load_spec_text(text).data["c"] == {"x": 1, "y": 3, "z": 4}


def test_nested_merge_keys() -> None:
    text = "a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b}\n"
    assert load_spec_text(text).data["c"] == {"x": 1, "y": 2}


def test_quoted_merge_key_is_a_plain_key() -> None:
    assert load_spec_text("'<<': {a: 1}\n").data == {"<<": {"a": 1}}


@pytest.mark.parametrize(("text", "code"), [
    ("a: {<<: 5}\n", "E107"),
    ("a: {<<: [1]}\n", "E107"),
    ("x: &x [1]\na: {<<: *x}\n", "E107"),
    ("a: {<<: {b: 1}, <<: {c: 2}}\n", "E106"),
    ("a: &a {<<: *a}\n", "E108"),
])
def test_bad_merge_keys(text: str, code: str) -> None:
    only_error(load_spec_text(text), code)


# --- one rule at a time ----------------------------------------------------------------------


def test_e101_missing_file(tmp_path: Path) -> None:
    result = load_spec(tmp_path / "nope.yaml")
    diagnostic = only_error(result, "E101")
    assert "No such file or directory" in diagnostic.message and "nope.yaml" in diagnostic.message


def test_e101_directory(tmp_path: Path) -> None:
    assert "Is a directory" in only_error(load_spec(tmp_path), "E101").message


def test_e101_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("a: 1\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    # patched in the module rather than by chmod, which does not stop root
    monkeypatch.setattr(load_module, "open", refuse, raising=False)
    assert "Permission denied" in only_error(load_spec(path), "E101").message


def test_e102_limit_is_inclusive(tmp_path: Path) -> None:
    body = b"a: '" + b"x" * (MAX_BYTES - 6) + b"'\n"
    assert len(body) == MAX_BYTES
    path = tmp_path / "spec.yaml"
    path.write_bytes(body)
    assert load_spec(path).diagnostics == []
    path.write_bytes(body + b"\n")
    assert "1,048,577 bytes" in only_error(load_spec(path), "E102").message


@pytest.mark.parametrize("text", ["a: 1\n" + "#" * MAX_BYTES, ("a: 1\n" + "#" * MAX_BYTES).encode(),
                                  "é" * (MAX_BYTES // 2 + 1)])
def test_e102_in_memory(text: str | bytes) -> None:
    only_error(load_spec_text(text), "E102")


def test_e103_invalid_utf8_reports_offset_and_line() -> None:
    raw = b"name: ok\nbad: caf\xe9\n"
    result = load_spec_text(raw)
    diagnostic = only_error(result, "E103")
    assert "byte offset 17" in diagnostic.message and "line 2" in diagnostic.message
    assert diagnostic.position == Position(2, 9)


def test_e103_nul_byte() -> None:
    diagnostic = only_error(load_spec_text(b"a: 1\nb: \x00\n"), "E103")
    assert "NUL" in diagnostic.message and diagnostic.position == Position(2, 4)


def test_e103_control_character() -> None:
    assert only_error(load_spec_text("a: 1\nb: x\x07y\n"), "E103").position == Position(2, 5)


def test_e103_unpaired_surrogate() -> None:
    only_error(load_spec_text("a: \ud800\n"), "E103")


@pytest.mark.parametrize("text", ["", "\n\n   \n", "# only\n# comments\n", "null\n", "~\n", "---\n",
                                  "--- # nothing\n...\n"])
def test_e104_empty(text: str) -> None:
    only_error(load_spec_text(text), "E104")


def test_e105_syntax_error_has_problem_and_position() -> None:
    diagnostic = only_error(load_spec_text("a: 1\nb: c: d\n"), "E105")
    assert "mapping values are not allowed here" in diagnostic.message
    assert diagnostic.position == Position(2, 5)


@pytest.mark.parametrize("text", ["a: *missing\n", "a: &x 1\nb: &x 2\n", "a:\n\t- b\n",
                                  "a: !!int abc\n", "a: !!bool yes\n", "a: " + "9" * 5000 + "\n"])
def test_e105_other_yaml_errors(text: str) -> None:
    only_error(load_spec_text(text), "E105")


def test_e106_duplicate_key() -> None:
    diagnostic = only_error(load_spec_text("lr: 1\nepochs: 2\nlr: 3\n"), "E106")
    assert diagnostic.pointer == "/lr" and diagnostic.position == Position(3, 1)
    assert "'lr'" in diagnostic.message and "line 1" in diagnostic.message


def test_e106_nested_duplicate_key() -> None:
    diagnostic = only_error(load_spec_text("training:\n  a: 1\n  a: 2\n"), "E106")
    assert diagnostic.pointer == "/training/a" and diagnostic.position == Position(3, 3)


@pytest.mark.parametrize("text", [
    "a: !!python/object/apply:os.system ['echo hi']\n", "a: !!python/name:os.system\n",
    "a: !!python/object/new:dict {}\n", "a: !!binary aGk=\n", "a: !!set {x, y}\n",
    "a: !!timestamp 2024-01-01\n", "a: !!omap [{b: 1}]\n", "a: !foo bar\n", "a: !<tag:x.org,2024:y> z\n",
    "a: !!merge b\n", "a: !!str [1]\n", "a: !!map b\n", "!!python/name:os.system : x\n",
])
def test_e107_disallowed_tags(text: str) -> None:
    diagnostic = only_error(load_spec_text(text), "E107")
    assert "tag " in diagnostic.message or "merge" in diagnostic.message


def test_e107_python_tag_is_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(os, "system", calls.append)
    monkeypatch.chdir(tmp_path)
    for text in ('!!python/object/apply:os.system ["echo hi > pwned"]\n',
                 'a: !!python/object/apply:os.system ["echo hi > pwned"]\n'):
        diagnostic = only_error(load_spec_text(text), "E107")
        assert "!!python/object/apply:os.system" in diagnostic.message
    assert calls == [] and not (tmp_path / "pwned").exists()


def test_e108_message_and_pointer() -> None:
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcd", "bcde", strict=True))
    diagnostic = only_error(load_spec_text(text), "E108")
    assert diagnostic.pointer == "/d" and "11,111 nodes" in diagnostic.message


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: [*a]}\n"])
def test_e108_recursive_alias(text: str) -> None:
    assert "recursive" in only_error(load_spec_text(text), "E108").message


def test_e109_limit_is_inclusive() -> None:
    assert load_spec_text("a: " + nested(63, "[", "]") + "\n").diagnostics == []  # 64 levels
    diagnostic = only_error(load_spec_text("a: " + nested(64, "[", "]") + "\n"), "E109")
    assert diagnostic.pointer == "/a" + "/0" * 63 and diagnostic.position == Position(1, 67)


def test_e109_depth_reached_through_aliases() -> None:
    text = "x: &x " + nested(40, "[", "]") + "\ny: " + nested(40, "[", "]", "*x") + "\n"
    assert "aliases" in only_error(load_spec_text(text), "E109").message


def test_e110_multiple_documents() -> None:
    assert only_error(load_spec_text("a: 1\n---\nb: 2\n"), "E110").position == Position(2, 1)
    assert load_spec_text("---\na: 1\n...\n").data == {"a": 1}


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string"),
                                            ("42\n", "an integer"), ("true\n", "a boolean")])
def test_e111_root_not_mapping(text: str, kind: str) -> None:
    assert kind in only_error(load_spec_text(text), "E111").message


@pytest.mark.parametrize(("text", "pointer"), [
    ("1: x\n", "/1"), ("1.5: x\n", "/1.5"), ("null: 3\n", "/null"), ("~: 3\n", "/~0"),
    ("true: x\n", "/true"), ("[a]: b\n", ""), ("{a: 1}: b\n", ""), ("? \n: y\n", "/"),
    ("ok:\n  0x1F: y\n", "/ok/0x1F"),
])
def test_e112_non_string_keys(text: str, pointer: str) -> None:
    assert only_error(load_spec_text(text), "E112").pointer == pointer


def test_e112_quoted_keys_are_strings() -> None:
    assert load_spec_text("'1': x\n\"true\": y\n").data == {"1": "x", "true": "y"}


def test_several_node_errors_are_all_reported() -> None:
    result = load_spec_text("a: 1\na: 2\n1: x\nb: !!binary aGk=\n")
    assert result.data is None and [d.code for d in result.diagnostics] == ["E106", "E112", "E107"]


def test_module_imports_only_stdlib_and_pyyaml() -> None:
    tree = ast.parse(Path(load_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    assert imported - set(sys.stdlib_module_names) == {"yaml"}


# --- the hostile set (tests/hostile_yaml.py) -----------------------------------------------


@pytest.mark.parametrize(("content", "code"), [pytest.param(c, code, id=name) for name, c, code in HOSTILE])
def test_hostile_input_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        content: Payload, code: str) -> None:
    monkeypatch.chdir(tmp_path)  # so a payload that ran would leave ./pwned behind
    path = tmp_path / "spec.yaml"
    write_payload(content, path)
    result = load_spec(path)  # must return, not raise
    assert result.data is None
    assert result.diagnostics and codes(result) == {code}
    assert all(d.is_error for d in result.diagnostics)
    assert not (tmp_path / "pwned").exists()
