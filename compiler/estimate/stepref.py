"""Published step times (tests/data/steptimes-public.csv) and the time model's seconds per step for each row.

Each row is what the source ran, as a workload: the Qwen README's profiling table trains Qwen (v1) with
its finetune.py (batch 1, gradient accumulation 8, gradient checkpointing, flash attention 2, every row
padded to the sequence length): LoRA r 64 on c_attn, c_proj, w1 and w2 in bf16 (72B under DeepSpeed ZeRO-3
on 4 GPUs), Q-LoRA on the GPTQ int4 checkpoint in fp16 under DeepSpeed ZeRO-2, full-parameter under
DeepSpeed ZeRO-2. A "s/it" of the Trainer is one optimizer step.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..gpus import GPUS
from ..plan import Lora, Method
from .models import catalog_lookup
from .params import trainable
from .steptime import step_time
from .throughput import attention_flops_per_token, flops_per_token
from .workload import Workload

QWEN_LORA = Lora(r=64, alpha=16.0, dropout=0.05, bias="none", rslora=False, modules_to_save=(),
                 target_modules=("c_attn", "c_proj", "w1", "w2"))


@dataclass(frozen=True)
class StepRow:
    id: str
    measured_seconds: float
    workload: Workload
    gpu: str
    tokens: int  # per micro-batch
    source: str


def to_row(fields: Mapping[str, str]) -> StepRow:
    """One CSV row as the workload its source ran."""
    arch = catalog_lookup(fields["model"])
    if arch is None:
        raise ValueError(f"{fields['id']}: model {fields['model']!r} is not in the catalog")
    method = fields["method"]
    lora = QWEN_LORA if method != "full" else None
    zero = int(fields["zero_stage"]) or None
    gpus = int(fields["gpus"])
    seq = int(fields["seq_len"])
    micro = int(fields["micro_batch"])
    workload = Workload(
        arch=arch, method=method, trainable=trainable(arch, Method(method, lora, None, None, None)),
        precision="fp16" if method == "qlora" else "bf16", mode="deepspeed" if zero else "autocast",
        quant_bits=4 if method == "qlora" else None, micro_batch=micro, seq_len=seq,
        grad_ckpt=fields["grad_ckpt"] == "1", attention="flash_attention_2", grad_accum=int(fields["grad_accum"]),
        zero_stage=zero, world_size=gpus, gpus_per_node=gpus)
    return StepRow(fields["id"], float(fields["seconds_per_step"]), workload, fields["gpu"], micro * seq,
                   fields["source"])


def read_rows(path: Path) -> list[StepRow]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [to_row(fields) for fields in csv.DictReader(handle)]


def predicted_seconds(row: StepRow) -> float:
    """The time model's seconds per optimizer step for the row."""
    w = row.workload
    train_fpt, _ = flops_per_token(w, float(w.seq_len))
    attention, _ = attention_flops_per_token(w, float(w.seq_len))
    return step_time(w, GPUS[row.gpu], 1, row.tokens, train_fpt, attention).seconds


# The FLOPs-only rule the time model replaces: FLOPs ÷ (40 % of the dense peak), × 0.7 with a 4-bit base, × 0.9
# on several GPUs, × 0.9 more under ZeRO-3; no fixed cost.
FLOPS_ONLY_MFU = 0.40


def flops_only_seconds(row: StepRow) -> float:
    """Seconds per step under the FLOPs-only rule, for comparison."""
    w = row.workload
    train_fpt, _ = flops_per_token(w, float(w.seq_len))
    speed = GPUS[row.gpu].tflops_16bit * 1e12 * FLOPS_ONLY_MFU
    speed *= 0.7 if w.quant_bits == 4 else 1.0
    if w.world_size > 1:
        speed *= 0.9 * (0.9 if w.zero_stage == 3 else 1.0)
    return w.grad_accum * row.tokens * train_fpt / speed


def errors(rows: Iterable[StepRow], model: Callable[[StepRow], float] | None = None,
           ) -> list[tuple[StepRow, float, float]]:
    """(row, predicted seconds, relative error) for every row, by the time model (or `model`)."""
    out = []
    for row in rows:
        predicted = (model or predicted_seconds)(row)
        out.append((row, predicted, (predicted - row.measured_seconds) / row.measured_seconds))
    return out


def summary(relative: Iterable[float]) -> tuple[float, float]:
    """(median, worst) absolute relative error."""
    values = [abs(e) for e in relative]
    return statistics.median(values), max(values)


def worst_ratio(rows: Iterable[tuple[StepRow, float, float]]) -> float:
    """The largest factor between a prediction and its measurement, either way (2.0: off by 2×)."""
    return max(max(p / r.measured_seconds, r.measured_seconds / p) for r, p, _ in rows)
