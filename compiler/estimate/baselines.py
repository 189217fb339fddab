"""Other estimators' formulas, for comparison on the same rows (scripts/estimate_report.py).

- Hugging Face accelerate `estimate-memory` (accelerate/commands/estimate.py, `estimate_training_usage`):
  from the model's fp32 size S it lists model S, gradients 1.5·S, optimizer 2·S and step 2·S for 16-bit
  mixed precision (S, S, 2·S, 4·S for fp32) and reports the largest as "Training using Adam (Peak vRAM)";
  for int8/int4 it only reports the weights' size. It knows nothing of activations or PEFT.
- DeepSpeed `estimate_zero2_model_states_mem_needs` / `estimate_zero3_model_states_mem_needs`
  (deepspeed/runtime/zero/stage_1_and_2.py, stage3.py), without offload: ZeRO-2 4·P + 16·P/GPUs,
  ZeRO-3 4·(largest layer) + 18·P/GPUs bytes per GPU, where the `_all_live` helpers count every
  parameter of the model as trained. Model states only.
"""

from __future__ import annotations

from .models import Architecture
from .params import base_counts, block_linears


def accelerate_peak(arch: Architecture, precision: str, quant_bits: int | None) -> float:
    """Bytes accelerate's estimate-memory reports for training (or the weights' size for int4/int8)."""
    params = base_counts(arch).total
    fp32_size = 4.0 * params
    if quant_bits is not None:
        return fp32_size / (8 if quant_bits == 4 else 4)
    if precision in ("fp32", "float32"):
        return max(fp32_size, fp32_size, 2 * fp32_size, 4 * fp32_size)
    return max(fp32_size, 1.5 * fp32_size, 2 * fp32_size, 2 * fp32_size)


def largest_layer(arch: Architecture) -> int:
    """Parameters of the largest single module (DeepSpeed's `largest_layer_params`)."""
    biggest_linear = max(m.d_in * m.d_out * (m.count if not m.is_module else 1) for m in block_linears(arch))
    return max(arch.vocab_size * arch.hidden_size, biggest_linear)


def deepspeed_zero2(arch: Architecture, gpus: int = 1) -> float:
    params = base_counts(arch).total
    return 4.0 * params + 16.0 * params / gpus


def deepspeed_zero3(arch: Architecture, gpus: int = 1) -> float:
    params = base_counts(arch).total
    return 4.0 * largest_layer(arch) + 18.0 * params / gpus
