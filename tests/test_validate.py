"""Validation reports every problem at once, each with file:line:col, code, pointer and a hint."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from ftc.codes import CODES, Stage, codes_of
from ftc.load import MAX_BYTES, load_spec, load_spec_text
from ftc.pipeline import plan_spec

BAD = textwrap.dedent("""\
    apiVersion: ftc/v1
    kind: FineTune
    metadata:
      name: Bad_Name
    model:
      name_or_path: x
    method:
      type: lorra
      lora: {r: 0, alpah: 3}
    data:
      train: {path: a.jsonl}
    training:
      epocs: 3
      learning_rate: .nan
      micro_batch_size: "4"
    kubernetes:
      version: 1.30
      image: "UPPER/Case"
    """)


def _diags(text: str) -> list:
    return plan_spec(load_spec_text(text)).diagnostics


def test_all_errors_reported_at_once_with_positions_and_hints() -> None:
    found = {(d.code, d.pointer): d for d in _diags(BAD)}
    expected = {
        ("E205", "/metadata/name"): (4, 9),
        ("E203", "/method/type"): (8, 9),
        ("E206", "/method/lora/r"): (9, 13),
        ("E201", "/method/lora/alpah"): (9, 16),
        ("E201", "/training/epocs"): (13, 3),
        ("E206", "/training/learning_rate"): (14, 18),
        ("E202", "/training/micro_batch_size"): (15, 21),
        ("E202", "/kubernetes/version"): (17, 12),
        ("E205", "/kubernetes/image"): (18, 10),
    }
    assert set(found) == set(expected)
    for key, (line, column) in expected.items():
        assert (found[key].position.line, found[key].position.column) == (line, column), key
    assert found[("E201", "/training/epocs")].hint == "did you mean 'epochs'?"
    assert found[("E201", "/method/lora/alpah")].hint == "did you mean 'alpha'?"
    assert found[("E203", "/method/type")].hint == "did you mean 'lora'?"
    assert "1.3" in found[("E202", "/kubernetes/version")].hint


def test_format_is_file_line_col_severity_code_pointer() -> None:
    diag = next(d for d in _diags(BAD) if d.pointer == "/training/epocs")
    assert diag.format("spec.yaml") == (
        "spec.yaml:13:3: error[E201] /training/epocs: unknown key 'epocs'\n  hint: did you mean 'epochs'?")
    record = diag.to_json("spec.yaml")
    assert json.loads(json.dumps(record))["line"] == 13


def test_diagnostics_are_ordered_by_position() -> None:
    positions = [(d.position.line, d.position.column) for d in _diags(BAD)]
    assert positions == sorted(positions)


def test_missing_required_and_unknown_without_close_match() -> None:
    diags = _diags("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: a}\nzzz: 1\n")
    by_code = {d.code: d for d in diags}
    assert {d.pointer for d in diags if d.code == "E204"} == {"", }, diags
    missing = sorted(d.message for d in diags if d.code == "E204")
    assert missing == ["missing required key 'data'", "missing required key 'model'"]
    assert by_code["E201"].hint.startswith("allowed keys: apiVersion")


def test_wrong_constant_and_bad_label_key() -> None:
    diags = _diags("apiVersion: ftc/v2\nkind: FineTune\nmetadata: {name: a, labels: {'Bad Key': x}}\n"
                   "model: {name_or_path: m}\ndata: {train: {path: t}}\n")
    codes = {(d.code, d.pointer) for d in diags}
    assert ("E203", "/apiVersion") in codes
    assert ("E205", "/metadata/labels/Bad Key") in codes


def test_valid_spec_has_no_errors() -> None:
    diags = _diags("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: ok}\nmodel: {name_or_path: m}\n"
                   "data: {train: {path: t.jsonl}, num_examples: 5000}\n")
    assert not [d for d in diags if d.is_error]


VALID = ("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: ok}\nmodel: {name_or_path: m}\n"
         "data: {train: {path: t.jsonl}, num_examples: 5000}\n")

# A spec that each schema code of `ftc.codes` reports, as (pointer, lines appended to VALID).
SCHEMA_CASES: dict[str, tuple[str, str]] = {
    "E201": ("/trainin", "trainin: {}\n"),
    "E202": ("/training/epochs", "training: {epochs: three}\n"),
    "E203": ("/method/type", "method: {type: lorra}\n"),
    "E204": ("/kubernetes", "kubernetes: {namespace: ml}\n"),
    "E205": ("/kubernetes/image", "kubernetes: {image: 'UPPER/Case'}\n"),
    "E206": ("/training/epochs", "training: {epochs: -1}\n"),
    "E207": ("/monitoring/report_to", "monitoring: {report_to: [wandb, wandb]}\n"),
    "E208": ("/method/lora/target_modules", "method: {type: lora, lora: {target_modules: 5}}\n"),
}

# Input that each load code of `ftc.codes` reports.
LOAD_CASES: dict[str, bytes] = {
    "E102": b"#" * (MAX_BYTES + 1),
    "E103": b"apiVersion: ftc/v1\0\n",
    "E104": b"",
    "E105": b"kind: [FineTune\n",
    "E106": b"kind: FineTune\nkind: FineTune\n",
    "E107": b"kind: !!python/name:os.system x\n",
    "E108": b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n".encode() for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "E109": b"a: " + b"[" * 100 + b"]" * 100 + b"\n",
    "E110": b"kind: FineTune\n---\nkind: FineTune\n",
    "E111": b"- a\n- b\n",
    "E112": b"1: a\n",
}


@pytest.mark.parametrize("code", sorted(codes_of(Stage.SCHEMA)))
def test_every_schema_code_is_reported(code: str) -> None:
    assert code in SCHEMA_CASES, f"{code} ({CODES[code].summary}) has no case"
    pointer, lines = SCHEMA_CASES[code]
    assert not [d for d in _diags(VALID) if d.is_error]
    assert (code, pointer) in {(d.code, d.pointer) for d in _diags(VALID + lines)}


@pytest.mark.parametrize("code", sorted(codes_of(Stage.LOAD)))
def test_every_load_code_is_reported(code: str, tmp_path: Path) -> None:
    if code == "E101":
        loaded = load_spec(tmp_path / "missing.yaml")
    else:
        assert code in LOAD_CASES, f"{code} ({CODES[code].summary}) has no case"
        loaded = load_spec_text(LOAD_CASES[code])
    assert [d.code for d in loaded.diagnostics] == [code]
    assert loaded.data is None
