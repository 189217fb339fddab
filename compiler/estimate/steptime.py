"""Seconds per optimizer step, from the work of one GPU in one step.

    step = micro-batches × (layers × passes × LAYER_PASS_SECONDS          fixed cost per block and pass
                            + tokens × matmul FLOPs per token / (peak × U_MATMUL)
                            + tokens × attention FLOPs per token / (peak × U_ATTENTION)  compute
                            + passes × quantized weights × DEQUANT_SECONDS   4/8-bit dequantization
                            + passes × gathered bytes / GATHER_BYTES_PER_S)  ZeRO-3 all-gathers
           + trainable parameters per GPU × OPTIMIZER_SECONDS_PER_PARAM     the optimizer step

- passes: forward and backward, and the forward again under gradient checkpointing;
- the utilization of a token's compute depends on the sequence length: the weight matmuls run at U_MATMUL
  of the dense peak, attention (flash attention's score and value products, whose FLOPs per token grow with
  the keys attended) at the lower U_ATTENTION, so the longer the sequence, the larger attention's share
  and the lower the overall utilization (long sequences of small models are slower than their FLOPs
  suggest). A matmul utilization that also grew with the tokens of a micro-batch (u = U × t / (t + t½))
  fitted the published times best with t½ → 0: the fixed cost below explains short sequences instead;
- the fixed cost per block and pass is kernel launches and Python work, independent of the tokens: it
  dominates short sequences;
- a bitsandbytes/GPTQ weight is dequantized to 16 bits once per pass, whatever the number of tokens, so
  quantization costs per weight, not per token.

The constants are fitted on published step times (tests/data/steptimes-public.csv; `python
scripts/time_model_report.py` prints the fit and its error). Data parallelism, PCIe and offload keep the
multiplicative slowdowns of the earlier FLOPs-only model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gpus import Gpu
from .params import base_counts, block_linears
from .workload import Workload

# Fitted on tests/data/steptimes-public.csv (scripts/time_model_report.py --fit).
LAYER_PASS_SECONDS = 0.0013
U_MATMUL = 0.77
U_ATTENTION = 0.23
DEQUANT_SECONDS = {4: 1.2e-11, 8: 1.2e-11}  # 8-bit: not in the data, taken equal to 4-bit
GATHER_BYTES_PER_SECOND = 260e9
OPTIMIZER_SECONDS_PER_PARAM = 5.0e-10

MULTI_GPU_SPEED = 0.90  # per-GPU efficiency with data parallelism on one node (gradient all-reduce)
MULTI_NODE_SPEED = 0.80
PCIE_SPEED = 0.80  # further, for GPUs that exchange gradients over PCIe only (no NVLink)
PCIE_GATHER = 0.25  # ZeRO-3 all-gathers over PCIe: this share of the NVLink bandwidth
OFFLOAD_OPTIMIZER_SPEED = 0.5  # CPU Adam and PCIe transfers every step
OFFLOAD_PARAMS_SPEED = 0.3


@dataclass(frozen=True)
class StepTime:
    """One optimizer step on one GPU, by cost (seconds)."""

    overhead: float
    compute: float
    dequant: float
    gather: float
    optimizer: float
    utilization: float  # of the dense peak while computing (matmuls and attention together)
    achieved_tflops: float  # FLOPs of the step / its seconds

    @property
    def seconds(self) -> float:
        return self.overhead + self.compute + self.dequant + self.gather + self.optimizer


def passes(w: Workload) -> int:
    """Passes over the layers per micro-batch: forward, backward, and the recomputed forward."""
    return 3 if w.grad_ckpt else 2


def _quantized_weights(w: Workload) -> float:
    if w.quant_bits is None:
        return 0.0
    return float(w.arch.num_layers * sum(m.count * m.d_in * m.d_out for m in block_linears(w.arch) if m.is_module))


def _speed_factor(w: Workload, gpu: Gpu, nodes: int) -> float:
    factor = 1.0
    if w.world_size > 1:
        factor *= MULTI_NODE_SPEED if nodes > 1 else MULTI_GPU_SPEED
        if not gpu.nvlink:
            factor *= PCIE_SPEED
    if w.offload_optimizer:
        factor *= OFFLOAD_OPTIMIZER_SPEED
    if w.offload_params:
        factor *= OFFLOAD_PARAMS_SPEED
    return factor


def _pass_costs(w: Workload, gpu: Gpu, nodes: int, tokens: float, flops_per_token: float, attention: float,
                n_passes: int) -> tuple[float, float, float, float, float]:
    """(overhead, compute, dequant, gather, utilization) of one micro-batch of `tokens` tokens; `attention`
    is the part of `flops_per_token` spent in attention."""
    peak = (gpu.tflops_fp32 if w.precision == "fp32" else gpu.tflops_16bit) * 1e12
    factor = _speed_factor(w, gpu, nodes)
    overhead = w.arch.num_layers * n_passes * LAYER_PASS_SECONDS
    compute = tokens * ((flops_per_token - attention) / U_MATMUL + attention / U_ATTENTION) / (peak * factor)
    u = tokens * flops_per_token / (compute * peak) if compute > 0 else 0.0
    dequant = n_passes * _quantized_weights(w) * DEQUANT_SECONDS.get(w.quant_bits or 0, 0.0)
    gather = 0.0
    if w.zero_stage == 3 and w.world_size > 1:
        gathered = base_counts(w.arch).total * w.compute_bytes * (w.world_size - 1) / w.world_size
        bandwidth = GATHER_BYTES_PER_SECOND * (1.0 if gpu.nvlink and nodes == 1 else PCIE_GATHER)
        gather = n_passes * gathered / bandwidth
    return overhead, compute, dequant, gather, u


def step_time(w: Workload, gpu: Gpu, nodes: int, tokens_per_micro_batch: float, flops_per_token: float,
              attention_flops_per_token: float) -> StepTime:
    """One optimizer step of `w` (w.grad_accum micro-batches of `tokens_per_micro_batch` tokens per GPU)."""
    micro = w.grad_accum
    overhead, compute, dequant, gather, u = _pass_costs(w, gpu, nodes, tokens_per_micro_batch, flops_per_token,
                                                         attention_flops_per_token, passes(w))
    partitions = w.world_size if w.zero_stage is not None and w.zero_stage >= 1 else 1
    optimizer = w.trainable.params / partitions * OPTIMIZER_SECONDS_PER_PARAM
    if w.offload_optimizer:
        optimizer /= OFFLOAD_OPTIMIZER_SPEED
    parts = (micro * overhead, micro * compute, micro * dequant, micro * gather, optimizer)
    seconds = sum(parts)
    flops = micro * tokens_per_micro_batch * flops_per_token
    return StepTime(*parts, u, flops / seconds / 1e12 if seconds > 0 else 0.0)


def forward_seconds(w: Workload, gpu: Gpu, nodes: int, tokens: float, forward_flops_per_token: float,
                    attention_flops_per_token: float) -> float:
    """One evaluation micro-batch of `tokens` tokens: a forward pass only."""
    overhead, compute, dequant, gather, _ = _pass_costs(w, gpu, nodes, tokens, forward_flops_per_token,
                                                        attention_flops_per_token, 1)
    return overhead + compute + dequant + gather
