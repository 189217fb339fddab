"""The estimate as JSON data (`--json`, estimate.json) and as a text report."""

from __future__ import annotations

from typing import Any

from ..gpus import GPUS
from ..plan import Plan
from . import Costed, Estimate
from .fit import MARGIN
from .memory import ALLOCATOR_RESERVE, CUDA_CONTEXT_BYTES, GIB
from .params import base_counts
from .throughput import MFU
from .tokens import BYTES_PER_TOKEN

# What each breakdown term holds (shown next to it in the text report).
TERMS = {
    "weights": "base model weights",
    "adapter": "trainable adapter parameters",
    "master_weights": "fp32 master copies (DeepSpeed)",
    "optimizer": "optimizer states",
    "gradients": "gradients (and DDP buckets)",
    "buffers": "DeepSpeed gradient buckets",
    "weight_copies": "autocast 16-bit copies of fp32 weights",
    "activations": "activations kept for backward",
    "logits_loss": "logits and cross-entropy",
    "recompute": "one block recomputed + its gradients",
    "working": "dequantized / gathered weights",
    "optimizer_temp": "optimizer-step temporaries",
    "reference_model": "reference model of the objective (estimate/objective.py)",
    "generation_cache": "KV cache of GRPO's generated completions",
    "cuda_context": "CUDA context (and NCCL)",
    "allocator_reserve": "caching-allocator reserve",
}


def _gib(value: float) -> float:
    return round(value / GIB, 3)


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _row(r: Costed) -> dict[str, Any]:
    return {
        "status": r.fit.status,
        "gpus": r.fit.gpus,
        "nodes": r.fit.nodes,
        "peak_gib_per_gpu": round(r.fit.peak_gib, 3),
        "memory_gib": r.fit.capacity_gib,
        "hours": None if r.time is None else round(r.time.hours, 2),
        "cost_on_demand_usd": _money(r.on_demand),
        "cost_spot_usd": _money(r.spot),
        "note": r.fit.note or None,
    }


def to_json(e: Estimate) -> dict[str, Any]:
    """Plain data, floats rounded (estimate.json is compared byte for byte)."""
    memory = e.memory
    counts = base_counts(e.arch)
    chosen = e.chosen
    time = chosen.time
    cost: dict[str, Any] = {
        "gpu": e.gpu,
        "gpus": chosen.fit.gpus,
        "hours": None if time is None else round(time.hours, 2),
        "on_demand_usd": _money(chosen.on_demand),
        "spot_usd": _money(chosen.spot),
        "usd_per_gpu_hour": None if chosen.price is None else {"on_demand": chosen.price[0], "spot": chosen.price[1]},
        "train_tokens": None if time is None else int(time.train_tokens),
        "eval_tokens": None if time is None else int(time.eval_tokens),
        "optimizer_steps": None if time is None else time.steps,
        "flops_per_token": None if time is None else float(f"{time.flops_per_token:.4g}"),
        "achievable_tflops_per_gpu": None if time is None else round(time.per_gpu_tflops, 1),
        "data": e.data.source if e.data is not None else "unknown: set data.num_examples (and "
                                                           "data.avg_tokens_per_example)",
        "prices": {"source": e.prices.source, "as_of": e.prices.as_of, "currency": e.prices.currency},
    }
    return {
        "model": {"name_or_path": e.plan.spec.model.name_or_path, "architecture": e.arch.source,
                  "family": e.arch.family, "parameters": counts.total},
        "method": e.workload.method,
        "trainable_parameters": e.workload.trainable.params,
        "gpu": e.gpu,
        "gpus": chosen.fit.gpus,
        "status": e.status,
        "peak_gib_per_gpu": _gib(memory.device_peak),
        "allocated_gib_per_gpu": _gib(memory.allocated_peak),
        "peak_phase": memory.peak_phase,
        "breakdown": {k: _gib(v) for k, v in memory.breakdown().items()},
        "phases": {name: _gib(sum(terms.values())) for name, terms in memory.phases.items()},
        "cpu_ram_gib": _gib(e.cpu_ram),
        "cpu_offload_gib_per_gpu": _gib(memory.cpu_offload),
        "fits": {r.fit.gpu: _row(r) for r in e.rows},
        "cheapest": None if e.cheapest is None else {"gpu": e.cheapest.fit.gpu, **_row(e.cheapest)},
        "changes_to_fit": [{"change": c.description, "peak_gib_per_gpu": round(c.peak_gib, 3), "status": c.status}
                           for c in e.changes],
        "cost": cost,
        "assumptions": assumptions(e),
        "notes": list(e.notes),
    }


def assumptions(e: Estimate) -> list[str]:
    w = e.workload
    return [
        f"memory: {w.stack.name}; {w.mode} weights, {w.attention}, micro-batch {w.micro_batch} × "
        f"{w.seq_len} tokens{' packed' if w.packing else ''}, gradient checkpointing "
        f"{'on' if w.grad_ckpt else 'off'}",
        f"device peak = allocated + {CUDA_CONTEXT_BYTES / GIB:g} GiB CUDA context + {ALLOCATOR_RESERVE:.0%} of the "
        f"per-step allocations as allocator reserve; fits = at least {MARGIN:.0%} of the GPU left free",
        f"throughput: {MFU:.0%} of each GPU's dense 16-bit peak (less for 4/8-bit and multi-GPU)",
        f"tokens from files: UTF-8 bytes / {BYTES_PER_TOKEN:g} + template tokens",
    ]


def _fmt_money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def to_text(e: Estimate, filename: str) -> str:
    w = e.workload
    memory = e.memory
    counts = base_counts(e.arch)
    lines = [
        f"{filename}: {e.plan.spec.metadata.name}",
        f"  model     {e.plan.spec.model.name_or_path}: {counts.total / 1e9:.2f} B parameters ({e.arch.source})",
        f"  method    {w.method}: {w.trainable.params:,} trainable parameters "
        f"({100.0 * w.trainable.params / counts.total:.3g} %)",
        f"  run       micro-batch {w.micro_batch} × {w.seq_len} tokens{' (packed)' if w.packing else ''}, "
        f"checkpointing {'on' if w.grad_ckpt else 'off'}, {w.attention}, {w.precision} ({w.mode}), {w.optimizer}"
        + (f", ZeRO-{w.zero_stage}" if w.zero_stage is not None else "") + f", {w.world_size} × {e.gpu}",
        "",
        f"Peak memory per GPU: {memory.device_peak / GIB:.1f} GiB ({memory.peak_phase}) on {e.gpu} "
        f"({GPUS[e.gpu].memory_gib:g} GiB): {e.status}",
    ]
    for term, value in memory.breakdown().items():
        lines.append(f"  {term:<18} {value / GIB:8.2f} GiB  {TERMS.get(term, '')}")
    lines.append(f"  {'allocated (torch)':<18} {memory.allocated_peak / GIB:8.2f} GiB")
    lines.append(f"CPU RAM per node: {e.cpu_ram / GIB:.1f} GiB"
                 + (f" (ZeRO offload {memory.cpu_offload / GIB:.1f} GiB per GPU)" if memory.cpu_offload else ""))
    lines += ["", "GPU fit (GPUs: the fewest that fit with the spec's ZeRO stage; $: whole run)",
              f"  {'GPU':<10} {'memory':>7} {'GPUs':>5} {'peak/GPU':>9}  {'status':<13} {'hours':>8} "
              f"{'on-demand':>10} {'spot':>9}"]
    for r in e.rows:
        hours = "-" if r.time is None else f"{r.time.hours:.1f}"
        lines.append(f"  {r.fit.gpu:<10} {r.fit.capacity_gib:>6g}G {r.fit.gpus:>5} {r.fit.peak_gib:>8.1f}G  "
                     f"{r.fit.status:<13} {hours:>8} {_fmt_money(r.on_demand):>10} {_fmt_money(r.spot):>9}"
                     + (f"  {r.fit.note}" if r.fit.note else ""))
    if e.cheapest is not None:
        c = e.cheapest
        lines.append(f"Cheapest that fits with margin: {c.fit.gpus} × {c.fit.gpu}"
                     + (f", {_fmt_money(c.on_demand)} on-demand / {_fmt_money(c.spot)} spot" if c.on_demand else ""))
    else:
        lines.append("Nothing in the catalog fits with margin at this configuration.")
    if e.changes:
        lines.append(f"To fit on {e.gpu}:")
        lines += [f"  - {c.description}  -> {c.peak_gib:.1f} GiB ({c.status})" for c in e.changes]
    lines += ["", "Time and cost on the spec's GPUs"]
    time = e.chosen.time
    if time is None:
        lines.append("  unknown: the data is not readable here and data.num_examples is not set")
    else:
        lines += [
            f"  data      {e.data.source if e.data else ''}",
            f"  tokens    {time.train_tokens:,.0f} trained, {time.eval_tokens:,.0f} evaluated; "
            f"{time.steps:,} optimizer steps",
            f"  compute   {time.flops_per_token / 1e9:.1f} GFLOP per token; assumed {time.per_gpu_tflops:.0f} TFLOPS "
            f"per {e.gpu} ({MFU:.0%} of its dense peak, adjusted)",
            f"  time      {time.hours:.1f} h on {e.chosen.fit.gpus} × {e.gpu}",
            f"  cost      {_fmt_money(e.chosen.on_demand)} on-demand, {_fmt_money(e.chosen.spot)} spot "
            f"(prices: {e.prices.as_of}; override with --prices)",
        ]
    price = e.chosen.price
    per_hour = "-" if price is None else f"${price[0] * e.chosen.fit.gpus:.2f}"
    lines += ["", "| method | memory | GPU config | cost/hour |", "|---|---|---|---|",
              f"| {w.method} | {memory.device_peak / GIB:.1f} GiB | {e.chosen.fit.gpus}×{e.gpu} | {per_hour} |"]
    if e.notes:
        lines += [""] + [f"note: {n}" for n in e.notes]
    return "\n".join(lines) + "\n"


ESTIMATE_FILE = "estimate.json"
SPEC_ONLY = ("compile-time estimate from the spec alone (built-in catalog, model.architecture, data.num_examples); "
             "`ftc estimate` also reads a local model's config.json and the training file")


def artifact(plan: Plan) -> dict[str, Any]:
    """What `ftc compile` writes to estimate.json: the spec-only estimate, or why there is none."""
    from . import spec_only_estimate

    provenance = {"generated_by": f"ftc {plan.ftc_version}", "inputs": SPEC_ONLY}
    result = spec_only_estimate(plan)
    if isinstance(result, str):
        return {"estimate": None, "reason": result, **provenance,
                "hint": "set model.architecture to get memory, fit and cost estimates at compile time"}
    return {**to_json(result), **provenance}
