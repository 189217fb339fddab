"""The estimate against published peak-memory measurements (tests/data/memref-public.csv), and a commonly quoted
Llama-2-7B sizing table (full fine-tuning 112 GB on 2×A100 80GB, LoRA 24 GB, QLoRA 12 GB).

One model with shared constants for every row; the rows differ only in what their sources ran and
measured (ftc.estimate.memref). The CSV and its provenance are in tests/data/.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from ftc.estimate import memref
from ftc.estimate.baselines import accelerate_peak, deepspeed_zero2, deepspeed_zero3
from ftc.estimate.llama2_reference import TABLE, explain
from ftc.estimate.models import CATALOG

CSV = Path(__file__).resolve().parent / "data" / "memref-public.csv"


@pytest.fixture(scope="module")
def results() -> list[memref.Result]:
    assert CSV.is_file(), f"{CSV} is missing: see tests/data/README.md"
    return memref.evaluate(memref.read_rows(CSV))


def test_every_row_is_estimated(results: list[memref.Result]) -> None:
    with open(CSV, encoding="utf-8", newline="") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    assert [r.row.id for r in results] == ids
    assert len(ids) >= 20


def test_accuracy_median_and_worst(results: list[memref.Result]) -> None:
    median, worst = memref.summary(r.error for r in results)
    table = "\n".join(f"{r.row.id}: {r.error:+.1%}" for r in results)
    assert median <= 0.10, table
    assert worst <= 0.25, table


def test_other_estimators_are_far_off_on_the_same_rows(results: list[memref.Result]) -> None:
    """accelerate's and DeepSpeed's formulas, on the same rows, for the report's comparison."""
    ours = memref.summary(r.error for r in results)[0]
    for attribute in ("accelerate_bytes", "zero2_bytes", "zero3_bytes"):
        errors = [(getattr(r, attribute) - r.row.measured_bytes) / r.row.measured_bytes for r in results]
        assert memref.summary(errors)[0] > 3 * ours, attribute


def test_baseline_formulas() -> None:
    arch = CATALOG["meta-llama/Llama-2-7b-hf"]
    p = 6_738_415_616
    assert accelerate_peak(arch, "bf16", None) == 2 * 4 * p  # Adam: two fp32 states is the largest term
    assert accelerate_peak(arch, "fp32", None) == 4 * 4 * p  # the step term
    assert accelerate_peak(arch, "bf16", 4) == 4 * p / 8
    assert deepspeed_zero2(arch, 2) == 4 * p + 16 * p / 2
    assert deepspeed_zero3(arch, 2) == 4 * 32000 * 4096 + 18 * p / 2


def test_units_and_measurement_kinds_per_source(results: list[memref.Result]) -> None:
    by_source = {r.row.source.split()[0]: r.row.measured_as for r in results}
    assert by_source == {"QwenLM/Qwen": "device", "Lightning-AI/litgpt": "allocated"}
    first = results[0]
    assert first.row.measured_bytes == pytest.approx(6.7e9)  # GB, not GiB


def test_rows_must_match_the_catalog() -> None:
    with open(CSV, encoding="utf-8", newline="") as handle:
        fields = next(iter(csv.DictReader(handle)))
    with pytest.raises(ValueError, match="differs from the catalog"):
        memref.to_row({**fields, "hidden": "1234"})
    with pytest.raises(ValueError, match="no description"):
        memref.to_row({**fields, "source": "somewhere else"})


def test_llama2_sizing_table_rows_are_explained() -> None:
    explanations = {e.row.method: e for e in explain()}
    assert list(explanations) == [row.method for row in TABLE]
    for e in explanations.values():
        assert e.matches, f"{e.row.method}: no batch/sequence/checkpointing assumption reproduces it"
        best = e.matches[0]
        assert abs(best.figure_gb - e.row.memory_gb) <= 0.05 * e.row.memory_gb
    full = explanations["Full FT"]
    # 16 bytes per parameter plus small activations over two GPUs, and each A100-80GB holds its half
    assert full.matches[0].grad_ckpt and full.matches[0].micro_batch * full.matches[0].seq_len <= 1024
    assert full.matches[0].status == "fits"
    # LoRA's 24 GB needs many tokens per micro-batch, and is at the limit of an A10G
    lora = explanations["LoRA"]
    assert lora.matches[0].status in ("tight", "does not fit")
    assert any(not a.grad_ckpt for a in lora.matches)
    qlora = explanations["QLoRA"]
    assert qlora.matches[0].status == "fits"
