"""Training time and cost: tokens × FLOPs per token ÷ an achievable throughput, × the price of the GPUs.

FLOPs per token (a matmul of a weight with n parameters costs 2n per token forward):
- forward: 2 × (parameters a token passes through, without the embedding lookup) + attention,
  4 × layers × attention width × keys attended (causal kernels skip the masked half);
- backward: twice the forward for trained weights (input and weight gradients), once for frozen ones
  (input gradients only); attention backward is twice its forward in both cases;
- gradient checkpointing recomputes the forward once more.
Throughput: `MFU` of the GPU's dense peak, lowered for quantized matmuls, several GPUs and offload.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..gpus import GPUS, Gpu
from ..plan import Plan
from .params import active_params
from .tokens import DataSize, expected_max
from .workload import Workload

# Achievable share of the dense peak for fine-tuning with the Hugging Face Trainer (flash attention, 16-bit):
# 35-45 % is typical for 7B-class models on A100/H100; smaller models and GPUs reach less.
MFU = 0.40
# Extra slowdown of bitsandbytes matmuls (dequantize, then a 16-bit matmul; LLM.int8 decomposes outliers).
QUANT_SPEED = {4: 0.7, 8: 0.5}
MULTI_GPU_SPEED = 0.90  # per-GPU efficiency with data parallelism on one node (gradient all-reduce)
MULTI_NODE_SPEED = 0.80
PCIE_SPEED = 0.80  # further, for GPUs that exchange gradients over PCIe only (no NVLink)
ZERO3_SPEED = 0.90  # parameter all-gathers every layer (0.7 over PCIe)
OFFLOAD_OPTIMIZER_SPEED = 0.5  # CPU Adam and PCIe transfers every step
OFFLOAD_PARAMS_SPEED = 0.3
PACKING_FILL = 0.95  # best-fit packing fills this share of each sequence


# Where a GPU is rented: the big clouds, or GPU marketplaces ("community").
BIG_CLOUDS = ("aws", "gcp", "azure")
CLOUDS = (*BIG_CLOUDS, "community")


class PriceError(ValueError):
    """A price table that cannot be used."""


@dataclass(frozen=True)
class Prices:
    source: str
    as_of: str
    currency: str
    gpus: Mapping[str, tuple[float, float]]  # name -> (on-demand, spot) per GPU-hour
    clouds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> where it is offered

    def offered_on(self, gpu: str, cloud: str | None) -> bool:
        """Whether `gpu` is offered on `cloud` ("any": anywhere; None: on one of the big clouds)."""
        where = self.clouds.get(gpu, ())
        if cloud == "any":
            return True
        return cloud in where if cloud is not None else any(c in BIG_CLOUDS for c in where)


def _parse_prices(data: Any, where: str) -> Prices:
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict):
        raise PriceError(f"{where}: expected an object with a 'gpus' object")
    table: dict[str, tuple[float, float]] = {}
    clouds: dict[str, tuple[str, ...]] = {}
    for name, entry in data["gpus"].items():
        if name not in GPUS:
            raise PriceError(f"{where}: unknown GPU {name!r} (known: {', '.join(GPUS)})")
        if not isinstance(entry, dict):
            raise PriceError(f"{where}: gpus.{name} must be an object with on_demand and spot")
        values = []
        for key in ("on_demand", "spot"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise PriceError(f"{where}: gpus.{name}.{key} must be a non-negative number")
            values.append(float(value))
        table[name] = (values[0], values[1])
        offered = entry.get("clouds")
        if offered is not None:
            if not isinstance(offered, list) or not all(isinstance(c, str) and c in CLOUDS for c in offered):
                raise PriceError(f"{where}: gpus.{name}.clouds must be a list of {', '.join(CLOUDS)}")
            clouds[name] = tuple(offered)
    return Prices(str(data.get("source", where)), str(data.get("as_of", "unknown")),
                  str(data.get("currency", "USD")), table, clouds)


def builtin_prices() -> Prices:
    text = resources.files("ftc.estimate").joinpath("prices.json").read_text(encoding="utf-8")
    return _parse_prices(json.loads(text), "built-in price table")


def load_prices(path: str) -> Prices:
    """A user price table (same shape as the built-in one); GPUs it leaves out keep the built-in prices."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise PriceError(f"{path}: not JSON ({exc})") from exc
    user = _parse_prices(data, path)
    builtin = builtin_prices()
    merged = dict(builtin.gpus)
    merged.update(user.gpus)
    return Prices(user.source, user.as_of, user.currency, merged, {**builtin.clouds, **user.clouds})


@dataclass(frozen=True)
class Time:
    """Tokens, FLOPs and hours of a run on `gpus` × `gpu`."""

    train_tokens: float  # tokens the GPUs process for training (padding included), all epochs
    eval_tokens: float
    steps: int
    flops_per_token: float
    total_flops: float
    per_gpu_tflops: float  # the achievable throughput assumed
    hours: float
    data_source: str
    eval_known: bool = True  # False: a validation file that cannot be read here (its passes are not counted)
    evaluations: int = 0  # evaluation passes over the validation set
    eval_flops: float = 0.0

    @property
    def eval_share(self) -> float:
        """Evaluation compute as a share of the training compute."""
        train = self.total_flops - self.eval_flops
        return self.eval_flops / train if train > 0 else 0.0


def flops_per_token(w: Workload, keys: float) -> tuple[float, float]:
    """(training FLOPs per token, forward-only FLOPs per token) with `keys` keys attended per query."""
    arch = w.arch
    matmul = 2.0 * active_params(arch)
    causal = 0.5 if w.attention == "flash_attention_2" else 1.0
    attention = 4.0 * arch.num_layers * arch.attention_width * keys * causal
    forward = matmul + attention
    trained = w.method == "full"
    backward = (2.0 if trained else 1.0) * matmul + 2.0 * attention
    recompute = forward if w.grad_ckpt else 0.0
    return forward + backward + recompute, forward


def _speed(w: Workload, gpu: Gpu, nodes: int) -> float:
    peak = gpu.tflops_fp32 if w.precision == "fp32" else gpu.tflops_16bit
    speed = peak * MFU
    if w.quant_bits is not None:
        speed *= QUANT_SPEED.get(w.quant_bits, 1.0)
    if w.world_size > 1:
        speed *= MULTI_NODE_SPEED if nodes > 1 else MULTI_GPU_SPEED
        if not gpu.nvlink:
            speed *= PCIE_SPEED
    if w.zero_stage == 3 and w.world_size > 1:
        speed *= ZERO3_SPEED if gpu.nvlink else ZERO3_SPEED - 0.2
    if w.offload_optimizer:
        speed *= OFFLOAD_OPTIMIZER_SPEED
    if w.offload_params:
        speed *= OFFLOAD_PARAMS_SPEED
    return speed


def estimate_time(w: Workload, plan: Plan, size: DataSize, gpu: Gpu, nodes: int,
                  validation_file: DataSize | None = None) -> Time:
    """Hours to train `plan` (whose workload is `w`) on `gpu`, evaluation passes included (`validation_file`:
    the measured `data.validation.path`, when there is one and it is readable)."""
    data, training = plan.spec.data, plan.spec.training
    max_len = data.max_seq_length
    virtual = w.trainable.virtual_tokens
    kept = [n + virtual for n in size.lengths if n <= max_len] or [max_len]
    mean = sum(kept) / len(kept)
    share_kept = len(kept) / len(size.lengths) if size.exact_lengths else 1.0
    validation = data.validation
    val_fraction = validation.fraction if validation is not None and validation.fraction else 0.0
    train_rows = size.rows * share_kept * (1.0 - val_fraction)
    val_rows = size.rows * share_kept * val_fraction
    eval_known = True
    if validation is not None and validation.path is not None:
        eval_known = validation_file is not None
        val_rows = float(validation_file.rows) if validation_file is not None else 0.0
    per_step_rows = plan.derived.global_batch_size
    # keys attended per query: flash attention works per example (varlen); sdpa/eager compute the dense
    # (masked) square of the row: the flattened micro-batch when packing, the padded row otherwise
    if w.packing:
        sequences = train_rows * mean / (max_len * PACKING_FILL)
        tokens_per_row = mean
        keys = mean if w.attention == "flash_attention_2" else float(w.micro_batch * max_len)
        steps_per_epoch = math.ceil(sequences / per_step_rows) if sequences else 0
    else:
        tokens_per_row = expected_max(kept, w.micro_batch)
        keys = mean if w.attention == "flash_attention_2" else tokens_per_row
        steps_per_epoch = math.ceil(train_rows / per_step_rows) if train_rows else 0
    keys += w.trainable.prefix_tokens
    epochs = training.epochs
    if training.max_steps is not None:
        steps = training.max_steps
        rows_trained = steps * per_step_rows * (max_len * PACKING_FILL / mean if w.packing else 1.0)
    else:
        steps = math.ceil(steps_per_epoch * epochs)
        rows_trained = train_rows * epochs
    train_tokens = rows_trained * tokens_per_row
    evals = steps // training.eval_every_steps + 1 if val_rows else 0
    eval_tokens = evals * val_rows * tokens_per_row
    train_fpt, forward_fpt = flops_per_token(w, keys)
    total = train_tokens * train_fpt + eval_tokens * forward_fpt
    per_gpu = _speed(w, gpu, nodes)
    hours = total / (w.world_size * per_gpu * 1e12) / 3600.0
    return Time(train_tokens, eval_tokens, steps, train_fpt, total, per_gpu, hours, size.source, eval_known,
                evals, eval_tokens * forward_fpt)

