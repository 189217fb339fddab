"""A commonly quoted Llama-2-7B sizing table, explained: under which micro-batch, sequence length and
gradient checkpointing each of its memory figures holds, estimated for ftc's runtime (printed by
scripts/estimate_llama2_reference.py).

| method  | memory | GPUs         | $/hour |
| Full FT | 112 GB | 2×A100 80GB  | 65     |
| LoRA    | 24 GB  | 1×A10G       | 1      |
| QLoRA   | 12 GB  | 1×RTX 4090   | 0.5    |

Full FT's 112 GB is the classic mixed-precision Adam bill (16-bit weights and gradients, fp32 master
weights and two fp32 moments: 16 bytes per parameter) plus activations, summed over the two GPUs while
the model trains; the LoRA and QLoRA figures are the memory of one GPU. The table states no batch size,
sequence length or checkpointing; this module finds the ones that reproduce each figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..gpus import GPUS
from ..plan import Plan, make_plan
from ..resolve import resolve
from .fit import status_of
from .memory import estimate_memory
from .models import CATALOG
from .throughput import builtin_prices
from .workload import from_plan

MODEL = "meta-llama/Llama-2-7b-hf"
TOLERANCE = 0.10
MICRO_BATCHES = (1, 2, 3, 4, 6, 8, 16)
SEQUENCES = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)


@dataclass(frozen=True)
class ReferenceRow:
    """One row of the sizing table."""

    method: str  # the table's label
    kind: str  # method.type
    memory_gb: float
    config: str
    gpu: str
    gpus: int
    usd_per_hour: float


TABLE = (
    ReferenceRow("Full FT", "full", 112, "2×A100 80GB", "A100-80GB", 2, 65.0),
    ReferenceRow("LoRA", "lora", 24, "1×A10G", "A10G", 1, 1.0),
    ReferenceRow("QLoRA", "qlora", 12, "1×RTX 4090", "RTX4090", 1, 0.5),
)


@dataclass(frozen=True)
class Assumption:
    micro_batch: int
    seq_len: int
    grad_ckpt: bool
    figure_gb: float  # the estimate comparable with the table's figure
    device_gb_per_gpu: float  # ftc's full device peak per GPU
    status: str  # on the table's GPUs


@dataclass(frozen=True)
class Explanation:
    row: ReferenceRow
    compared: str  # what figure_gb measures
    matches: tuple[Assumption, ...]  # within TOLERANCE of the table's figure, closest first
    usd_per_hour: float  # the built-in price table's price for the row's GPUs


def plan_for(row: ReferenceRow, micro_batch: int, seq_len: int, grad_ckpt: bool) -> Plan:
    """The plan of one table row on Llama-2-7B (LoRA r 8, alpha 16 on q/k/v/o, the usual configuration)."""
    return make_plan(resolve(spec_for(row, micro_batch, seq_len, grad_ckpt)))


def spec_for(row: ReferenceRow, micro_batch: int, seq_len: int, grad_ckpt: bool) -> dict[str, Any]:
    """The spec (as a user writes it) of `plan_for`."""
    raw: dict[str, Any] = {
        "apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": "llama2-reference"},
        "model": {"name_or_path": MODEL},
        "method": {"type": row.kind},
        "data": {"train": {"path": "data/train.jsonl"}, "max_seq_length": seq_len, "packing": False},
        "training": {"micro_batch_size": micro_batch, "gradient_checkpointing": grad_ckpt},
        "resources": {"gpu": row.gpu, "gpus_per_node": row.gpus},
    }
    if row.kind != "full":
        raw["method"]["lora"] = {"r": 8, "alpha": 16, "dropout": 0.05,
                                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    else:
        raw["performance"] = {"deepspeed": {"stage": 3}}
    return raw


def _assumptions(row: ReferenceRow) -> Iterator[Assumption]:
    arch = CATALOG[MODEL]
    capacity = GPUS[row.gpu].memory_gib
    for mb in MICRO_BATCHES:
        for seq in SEQUENCES:
            for ckpt in (True, False):
                memory = estimate_memory(from_plan(plan_for(row, mb, seq, ckpt), arch))
                if row.kind == "full":
                    figure = sum(memory.phases["backward"].values()) * row.gpus
                else:
                    figure = memory.device_peak
                yield Assumption(mb, seq, ckpt, figure / 1e9, memory.device_peak / 1e9,
                                 status_of(memory.device_peak, capacity))


def explain() -> list[Explanation]:
    prices = builtin_prices().gpus
    out = []
    for row in TABLE:
        close = [a for a in _assumptions(row) if abs(a.figure_gb - row.memory_gb) <= TOLERANCE * row.memory_gb]
        close.sort(key=lambda a: (abs(a.figure_gb - row.memory_gb), a.micro_batch, a.seq_len))
        compared = ("model states + activations while training, summed over both GPUs (DeepSpeed ZeRO-3, bf16)"
                    if row.kind == "full" else "device peak of the one GPU")
        out.append(Explanation(row, compared, tuple(close), prices[row.gpu][0] * row.gpus))
    return out


def facts() -> dict[str, float]:
    """The numbers the explanation quotes, computed (GB = 1e9 bytes)."""
    from .memory import quantized_bytes
    from .params import base_counts, block_linears

    arch = CATALOG[MODEL]
    counts = base_counts(arch)
    linear = sum(quantized_bytes(m, 4, True) for m in block_linears(arch)) * arch.num_layers
    return {
        "parameters_b": counts.total / 1e9,
        "mixed_adam_gb": 16 * counts.total / 1e9,
        "bf16_weights_gb": 2 * counts.total / 1e9,
        "nf4_linears_gb": linear / 1e9,
        "fp32_unquantized_gb": 4 * counts.unquantized / 1e9,
        "vocab": float(arch.vocab_size),
    }
