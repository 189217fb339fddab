"""Published peak-memory measurements (memref-public.csv) and the estimate for each row.

Every row is estimated with the same memory model and constants. What differs between sources is only
what their published scripts did and what they measured, taken from the sources themselves:

- QwenLM/Qwen README "Profiling of Memory and Speed": LoRA runs finetune_lora_single_gpu.sh (Trainer with
  bf16 autocast, gradient checkpointing); Q-LoRA runs finetune_qlora_single_gpu.sh, which trains in fp16
  under DeepSpeed ZeRO-2 (finetune/ds_config_zero2.json: reduce_bucket_size 2e8, overlap_comm) on a GPTQ
  int4 checkpoint (AutoGPTQ's torch path keeps each dequantized weight for backward; peft does not upcast a
  GPTQ model to fp32). The README does not say how memory was read; it is compared with the device peak
  (what nvidia-smi shows).
- Lightning-AI/litgpt resource tables: `--precision bf16-true` (weights, adapters and optimizer states in
  bf16, no autocast, the loss in bf16), bitsandbytes of 2023 (it kept every quantized matmul's input), memory
  printed as torch.cuda.max_memory_allocated() / 1e9: compared with the allocated peak.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..plan import Lora, Method, Targets
from .baselines import accelerate_peak, deepspeed_zero2, deepspeed_zero3
from .memory import Memory, estimate_memory
from .models import Architecture, catalog_lookup
from .params import trainable
from .workload import Stack, Workload

UNITS = {"GB": 1e9, "GiB": float(1 << 30)}

QWEN_STACK = Stack("Qwen finetune.py (transformers 4.32 remote code)", loss_upcast=False, kbit_upcast=False)
QWEN_GPTQ_STACK = replace(QWEN_STACK, name="Qwen finetune.py + AutoGPTQ + DeepSpeed ZeRO-2 fp16",
                          quant_keeps_dequantized=True)
LITGPT_STACK = Stack("litgpt bf16-true (bitsandbytes 0.41)", loss_upcast=False, kbit_upcast=False,
                     quant_saves_input=True)


@dataclass(frozen=True)
class Row:
    id: str
    model: str
    method: str
    source: str
    notes: str
    measured_bytes: float
    workload: Workload
    measured_as: str  # "device" (nvidia-smi) or "allocated" (torch.cuda.max_memory_allocated)


@dataclass(frozen=True)
class Result:
    row: Row
    memory: Memory
    estimate_bytes: float
    accelerate_bytes: float
    zero2_bytes: float
    zero3_bytes: float

    @property
    def error(self) -> float:
        return (self.estimate_bytes - self.row.measured_bytes) / self.row.measured_bytes


def _targets(spec: str, arch: Architecture) -> Targets:
    if spec == "all-linear":
        return "all-linear"
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
    if arch.family == "qwen":  # Qwen v1 fuses q, k and v into c_attn
        return ("c_attn",)
    return tuple(names.get(part.strip(), part.strip()) for part in spec.split(","))


def _check_shape(fields: Mapping[str, str], arch: Architecture) -> None:
    """The row's architecture columns must agree with the catalog entry used for it."""
    expected = {"layers": arch.num_layers, "hidden": arch.hidden_size, "heads": arch.num_attention_heads,
                "kv_heads": arch.num_key_value_heads, "intermediate": arch.intermediate_size,
                "vocab": arch.vocab_size, "tied": int(arch.tie_word_embeddings)}
    for key, value in expected.items():
        if int(fields[key]) != value:
            raise ValueError(f"{fields['id']}: {key} {fields[key]} differs from the catalog's {value}")


def to_row(fields: Mapping[str, str]) -> Row:
    """One CSV row as the workload the source actually ran."""
    arch = catalog_lookup(fields["model"])
    if arch is None:
        raise ValueError(f"{fields['id']}: model {fields['model']!r} is not in the catalog")
    _check_shape(fields, arch)
    method = fields["method"]
    lora = Lora(r=int(fields["lora_r"]), alpha=16.0, dropout=0.05, bias="none", rslora=False, modules_to_save=(),
                target_modules=_targets(fields["lora_targets"], arch))
    quant = int(fields["quant_bits"]) if method == "qlora" else None
    litgpt = fields["source"].startswith("Lightning-AI/litgpt")
    qwen = fields["source"].startswith("QwenLM/Qwen")
    if not (litgpt or qwen):
        raise ValueError(f"{fields['id']}: no description of how source {fields['source']!r} ran")
    base = Workload(
        arch=arch, method=method, trainable=trainable(arch, Method(method, lora, None, None, None)),
        precision="bf16", mode="pure" if fields["precision"] == "bf16-pure" else "autocast",
        quant_bits=quant, optimizer="adamw_torch", lora_dropout=0.05, micro_batch=int(fields["micro_batch"]),
        seq_len=int(fields["seq_len"]), grad_ckpt=fields["grad_ckpt"] == "1", attention=fields["attention"],
        zero_stage=int(fields["zero_stage"]) or None, world_size=int(fields["gpus"]),
        gpus_per_node=int(fields["gpus"]))
    if litgpt:
        workload = replace(base, stack=LITGPT_STACK, grad_accum=1)
    elif quant is not None:
        workload = replace(base, stack=QWEN_GPTQ_STACK, grad_accum=8, mode="deepspeed", precision="fp16",
                           zero_stage=2, reduce_bucket=200_000_000)
    else:
        workload = replace(base, stack=QWEN_STACK, grad_accum=8)
    return Row(fields["id"], fields["model"], method, fields["source"], fields["notes"],
               float(fields["measured"]) * UNITS[fields["unit"]], workload, "allocated" if litgpt else "device")


def read_rows(path: Path) -> list[Row]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [to_row(fields) for fields in csv.DictReader(handle)]


def evaluate(rows: Iterable[Row]) -> list[Result]:
    out = []
    for row in rows:
        memory = estimate_memory(row.workload)
        estimate = memory.allocated_peak if row.measured_as == "allocated" else memory.device_peak
        w = row.workload
        out.append(Result(row, memory, estimate, accelerate_peak(w.arch, w.precision, w.quant_bits),
                          deepspeed_zero2(w.arch, w.world_size), deepspeed_zero3(w.arch, w.world_size)))
    return out


def summary(errors: Iterable[float]) -> tuple[float, float]:
    """(median, worst) absolute relative error."""
    values = [abs(e) for e in errors]
    return statistics.median(values), max(values)
