"""The GPU catalog: the facts about each `resources.gpu` value that checks and estimates need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    architecture: str
    bf16: bool  # native bfloat16 (Ampere and newer)
    flash_attention_2: bool  # FlashAttention 2 supports Ampere, Ada and Hopper only
    max_per_node: int  # most GPUs of this model in one machine offered by the major clouds


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("T4", 15.0, "turing", bf16=False, flash_attention_2=False, max_per_node=8),
        Gpu("L4", 22.5, "ada", bf16=True, flash_attention_2=True, max_per_node=8),
        Gpu("A10G", 22.5, "ampere", bf16=True, flash_attention_2=True, max_per_node=8),
        Gpu("RTX4090", 24.0, "ada", bf16=True, flash_attention_2=True, max_per_node=8),
        Gpu("A100-40GB", 40.0, "ampere", bf16=True, flash_attention_2=True, max_per_node=16),
        Gpu("A100-80GB", 80.0, "ampere", bf16=True, flash_attention_2=True, max_per_node=8),
        Gpu("H100-80GB", 80.0, "hopper", bf16=True, flash_attention_2=True, max_per_node=8),
        Gpu("H200", 141.0, "hopper", bf16=True, flash_attention_2=True, max_per_node=8),
    )
}
