"""Training time and cost: optimizer steps × seconds per step (ftc.estimate.steptime) plus the evaluation
passes, × the price of the GPUs.

FLOPs per token (a matmul of a weight with n parameters costs 2n per token forward):
- forward: 2 × (parameters a token passes through, without the embedding lookup) + attention,
  4 × layers × attention width × keys attended (causal kernels skip the masked half);
- backward: twice the forward for trained weights (input and weight gradients), once for frozen ones
  (input gradients only); attention backward is twice its forward in both cases;
- gradient checkpointing recomputes the forward once more.
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
from .steptime import StepTime, forward_seconds, step_time
from .tokens import DataSize, expected_max
from .workload import Workload

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
    per_gpu_tflops: float  # the throughput achieved in a training step (FLOPs / seconds)
    hours: float
    data_source: str
    eval_known: bool = True  # False: a validation file that cannot be read here (its passes are not counted)
    evaluations: int = 0  # evaluation passes over the validation set
    step: StepTime | None = None  # one optimizer step, by cost
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def eval_share(self) -> float:
        """Time spent evaluating as a share of the time spent training."""
        return self.eval_seconds / self.train_seconds if self.train_seconds > 0 else 0.0


def attention_flops_per_token(w: Workload, keys: float) -> tuple[float, float]:
    """(training, forward-only) FLOPs per token of the attention scores and their weighted sum alone."""
    causal = 0.5 if w.attention == "flash_attention_2" else 1.0
    forward = 4.0 * w.arch.num_layers * w.arch.attention_width * keys * causal
    return forward * (3.0 + (1.0 if w.grad_ckpt else 0.0)), forward


def flops_per_token(w: Workload, keys: float) -> tuple[float, float]:
    """(training FLOPs per token, forward-only FLOPs per token) with `keys` keys attended per query."""
    arch = w.arch
    matmul = 2.0 * active_params(arch)
    attention = attention_flops_per_token(w, keys)[1]
    forward = matmul + attention
    trained = w.method == "full"
    backward = (2.0 if trained else 1.0) * matmul + 2.0 * attention
    recompute = forward if w.grad_ckpt else 0.0
    return forward + backward + recompute, forward


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
    # tokens one GPU processes per micro-batch: packed sequences, or micro-batch rows padded to the longest
    micro_tokens = w.micro_batch * (max_len * PACKING_FILL if w.packing else tokens_per_row)
    train_attention, forward_attention = attention_flops_per_token(w, keys)
    step = step_time(w, gpu, nodes, micro_tokens, train_fpt, train_attention)
    train_seconds = steps * step.seconds
    eval_batch_tokens = w.micro_batch * tokens_per_row
    eval_batches = math.ceil(val_rows / (w.micro_batch * w.world_size)) if val_rows else 0
    eval_seconds = evals * eval_batches * forward_seconds(w, gpu, nodes, eval_batch_tokens, forward_fpt,
                                                                  forward_attention)
    hours = (train_seconds + eval_seconds) / 3600.0
    return Time(train_tokens, eval_tokens, steps, train_fpt, total, step.achieved_tflops, hours, size.source,
                eval_known, evals, step, train_seconds, eval_seconds)
