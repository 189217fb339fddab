"""The time model against published step times (tests/data/steptimes-public.csv): accuracy properties of the
model, and the two effects it adds to a FLOPs count (a fixed cost per block and pass; 4-bit dequantization
per weight and pass, not per token)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from ftc.estimate import stepref
from ftc.estimate.steptime import step_time
from ftc.estimate.throughput import attention_flops_per_token, flops_per_token
from ftc.gpus import GPUS

CSV = Path(__file__).parent / "data" / "steptimes-public.csv"


@pytest.fixture(scope="module")
def rows() -> list[stepref.StepRow]:
    return stepref.read_rows(CSV)


def test_median_error_within_25_percent_and_no_row_off_by_2x(rows: list[stepref.StepRow]) -> None:
    results = stepref.errors(rows)
    median, _ = stepref.summary(e for _, _, e in results)
    assert len(results) == 57
    assert median <= 0.25, median
    assert stepref.worst_ratio(results) <= 2.0


def test_the_flops_only_rule_fails_the_same_table(rows: list[stepref.StepRow]) -> None:
    """The table tells the models apart: FLOPs ÷ 40 % of the peak is off by more."""
    results = stepref.errors(rows, stepref.flops_only_seconds)
    median, _ = stepref.summary(e for _, _, e in results)
    assert median > 0.25 and stepref.worst_ratio(results) > 2.0


def _step(row: stepref.StepRow, seq: int) -> float:
    w = replace(row.workload, seq_len=seq)
    fpt, _ = flops_per_token(w, float(seq))
    attention, _ = attention_flops_per_token(w, float(seq))
    return step_time(w, GPUS[row.gpu], 1, seq, fpt, attention).seconds


def test_short_sequences_pay_a_fixed_cost(rows: list[stepref.StepRow]) -> None:
    row = next(r for r in rows if r.id == "qwen-Qwen-7B-lora-256")
    # halving a short sequence halves the FLOPs but not the step
    assert _step(row, 128) > 0.75 * _step(row, 256)
    assert _step(row, 8192) > 1.8 * _step(row, 4096)


def test_dequantization_costs_per_weight_not_per_token(rows: list[stepref.StepRow]) -> None:
    qlora = next(r for r in rows if r.id == "qwen-Qwen-14B-qlora-256")
    lora = next(r for r in rows if r.id == "qwen-Qwen-14B-lora-256")
    extra = {seq: _step(qlora, seq) - _step(replace(lora, workload=replace(
        qlora.workload, quant_bits=None)), seq) for seq in (256, 8192)}
    assert extra[256] > 0 and extra[8192] == pytest.approx(extra[256])
