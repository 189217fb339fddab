"""The estimate as JSON data (`--json`, estimate.json) and as a text report."""

from __future__ import annotations

from typing import Any

from ..gpus import GPUS
from ..plan import Plan
from . import Costed, Estimate
from .fit import FITS, MARGIN
from .memory import CUDA_CONTEXT_BYTES, GIB, allocator_reserve
from .params import base_counts
from .steptime import LAYER_PASS_SECONDS, U_ATTENTION, U_MATMUL
from .storage import storage_line, storage_needs
from .throughput import Time
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


def _row(r: Costed, e: Estimate) -> dict[str, Any]:
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
        "clouds": list(e.prices.clouds.get(r.fit.gpu, ())),
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
        "achieved_tflops_per_gpu": None if time is None else round(time.per_gpu_tflops, 1),
        "seconds_per_step": None if time is None or time.step is None else round(time.step.seconds, 3),
        "eval_share": None if time is None else round(time.eval_share, 3),
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
        "fits": {r.fit.gpu: _row(r, e) for r in e.rows},
        "cheapest": None if e.cheapest is None else {"gpu": e.cheapest.fit.gpu, **_row(e.cheapest, e)},
        "clouds": e.cloud or "aws, gcp, azure",
        "spot": e.spot,
        "recommendation": _recommendation_json(e),
        "changes_to_fit": [{"change": c.description, "peak_gib_per_gpu": round(c.peak_gib, 3), "status": c.status}
                           for c in e.changes],
        "cost": cost,
        "assumptions": assumptions(e),
        "notes": list(e.notes),
    }


def _recommendation_json(e: Estimate) -> dict[str, Any] | None:
    r = e.recommendation
    if r is None:
        return None
    return {"budget_gib_per_gpu": r.budget_gib, "status": r.status, "peak_gib_per_gpu": round(r.peak_gib, 3),
            "steps": [{"lever": s.lever, "change": s.description, "peak_gib_per_gpu": round(s.peak_gib, 3),
                       "saves_gib": round(s.saved_gib, 3)} for s in r.steps],
            "patch": r.spec_patch()}


def _recommendation_lines(e: Estimate) -> list[str]:
    r = e.recommendation
    if r is None:
        return []
    target = f"a budget of {r.budget_gib:g} GiB per GPU" if e.budget_gib is not None else e.gpu
    if not r.steps:
        return [f"To fit {target}: no change needed ({r.start_gib:.1f} GiB, {r.status})"]
    verdict = "fits" if r.status == FITS else f"{r.status} even with every change below"
    lines = [f"To fit {target} ({verdict}: {r.start_gib:.1f} -> {r.peak_gib:.1f} GiB per GPU), "
             "in order of preference:"]
    lines += [f"  {i}. {s.description}  -> {s.peak_gib:.1f} GiB (-{s.saved_gib:.1f})"
              for i, s in enumerate(r.steps, start=1)]
    if e.budget_gib is not None:
        sized = [name for name, gpu in GPUS.items() if gpu.memory_gib >= r.budget_gib]
        lines.append(f"  GPUs with at least {r.budget_gib:g} GiB: {', '.join(sized) or 'none in the catalog'}")
    lines.append("Spec patch (merge into the spec; --write-patch FILE writes it):")
    lines += ["  " + line for line in r.yaml_patch().splitlines()[1:]]
    return lines


def assumptions(e: Estimate) -> list[str]:
    w = e.workload
    return [
        f"memory: {w.stack.name}; {w.mode} weights, {w.attention}, micro-batch {w.micro_batch} × "
        f"{w.seq_len} tokens{' packed' if w.packing else ''}, gradient checkpointing "
        f"{'on' if w.grad_ckpt else 'off'}",
        f"device peak = allocated + {CUDA_CONTEXT_BYTES / GIB:g} GiB CUDA context + {allocator_reserve(w):.0%} of the "
        f"per-step allocations as allocator reserve; fits = at least {MARGIN:.0%} of the GPU left free",
        f"time per optimizer step: {LAYER_PASS_SECONDS * 1e3:g} ms per block and pass, matmuls at "
        f"{U_MATMUL:.0%} and attention at {U_ATTENTION:.0%} of the dense 16-bit peak, 4/8-bit dequantization per "
        "weight and pass, ZeRO-3 all-gathers, the optimizer step per parameter (fitted on published step times)",
        f"tokens from files: UTF-8 bytes / {BYTES_PER_TOKEN:g} + template tokens",
    ]


def _step_line(time: Time) -> str:
    step = time.step
    if step is None:
        return ""
    parts = [("fixed per block and pass", step.overhead), ("compute", step.compute),
             ("4/8-bit dequantization", step.dequant), ("ZeRO-3 all-gathers", step.gather),
             ("optimizer", step.optimizer)]
    shown = ", ".join(f"{name} {value:.2f} s" for name, value in parts if value > 0.005)
    return (f"{step.seconds:.2f} s per optimizer step ({shown}; {step.achieved_tflops:.0f} TFLOPS achieved, "
            f"{step.utilization:.0%} of the peak while computing)")


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
    lines.append(f"Storage: {storage_line(storage_needs(e.plan, e.arch))}")
    lines += ["", "GPU fit (GPUs: the fewest that fit with the spec's ZeRO stage; $: whole run)",
              f"  {'GPU':<10} {'memory':>7} {'GPUs':>5} {'peak/GPU':>9}  {'status':<13} {'hours':>8} "
              f"{'on-demand':>10} {'spot':>9}  offered on"]
    for r in e.rows:
        hours = "-" if r.time is None else f"{r.time.hours:.1f}"
        where = ", ".join(e.prices.clouds.get(r.fit.gpu, ())) or "-"
        lines.append((f"  {r.fit.gpu:<10} {r.fit.capacity_gib:>6g}G {r.fit.gpus:>5} {r.fit.peak_gib:>8.1f}G  "
                      f"{r.fit.status:<13} {hours:>8} {_fmt_money(r.on_demand):>10} {_fmt_money(r.spot):>9}  "
                      f"{where:<17}" + (f"  {r.fit.note}" if r.fit.note else "")).rstrip())
    lines += _cheapest_lines(e)
    lines += _recommendation_lines(e)
    single = [c for c in e.changes if e.recommendation is None or c.description != e.recommendation.summary()]
    if single and e.budget_gib is None:
        lines.append(f"Single changes that also fit on {e.gpu}:")
        lines += [f"  - {c.description}  -> {c.peak_gib:.1f} GiB ({c.status})" for c in single]
    lines += ["", "Time and cost on the spec's GPUs"]
    time = e.chosen.time
    if time is None:
        lines.append("  unknown: the data is not readable here and data.num_examples is not set")
    else:
        lines += [
            f"  data      {e.data.source if e.data else ''}",
            f"  tokens    {time.train_tokens:,.0f} trained, {time.eval_tokens:,.0f} evaluated; "
            f"{time.steps:,} optimizer steps",
            f"  compute   {time.flops_per_token / 1e9:.1f} GFLOP per token; {_step_line(time)}",
            f"  time      {time.hours:.1f} h on {e.chosen.fit.gpus} × {e.gpu}",
            (f"  cost      {_fmt_money(e.chosen.spot)} spot (the spec runs on spot), "
             f"{_fmt_money(e.chosen.on_demand)} on-demand" if e.spot else
             f"  cost      {_fmt_money(e.chosen.on_demand)} on-demand, {_fmt_money(e.chosen.spot)} spot")
            + f" (prices: {e.prices.as_of}; override with --prices)",
        ]
    price = e.chosen.price
    per_hour = "-" if price is None else \
        f"${price[1 if e.spot else 0] * e.chosen.fit.gpus:.2f}{' spot' if e.spot else ''}"
    lines += ["", "| method | memory | GPU config | cost/hour |", "|---|---|---|---|",
              f"| {w.method} | {memory.device_peak / GIB:.1f} GiB | {e.chosen.fit.gpus}×{e.gpu} | {per_hour} |"]
    if e.notes:
        lines += [""] + [f"note: {n}" for n in e.notes]
    return "\n".join(lines) + "\n"


def _where(e: Estimate) -> str:
    return {None: "the big clouds (aws, gcp, azure)", "any": "any cloud"}.get(e.cloud, str(e.cloud))


def _cheapest_lines(e: Estimate) -> list[str]:
    """The cheapest GPU that fits where the user rents, and a cheaper one elsewhere when there is one."""
    price = "spot" if e.spot else "on-demand"
    if e.cheapest is None:
        return [f"Nothing offered on {_where(e)} fits with margin at this configuration."]
    c = e.cheapest
    cost = e.run_cost(c)
    lines = [f"Cheapest that fits with margin on {_where(e)}: {c.fit.gpus} × {c.fit.gpu} "
             f"(offered on {', '.join(e.prices.clouds.get(c.fit.gpu, ())) or 'unknown'})"
             + (f", {_fmt_money(cost)} {price}" if cost is not None else "")]
    cheaper = [r for r in e.rows if r.fit.status == FITS and not e.offered(r) and r.price is not None
               and (e.run_cost(r) or 0.0) < (cost or 0.0)]
    if cheaper and cost is not None:
        r = min(cheaper, key=lambda r: e.run_cost(r) or 0.0)
        where = ", ".join(e.prices.clouds.get(r.fit.gpu, ())) or "elsewhere"
        lines.append(f"  elsewhere: {r.fit.gpus} × {r.fit.gpu} on {where}, {_fmt_money(e.run_cost(r))} {price} "
                     f"(--cloud {e.prices.clouds.get(r.fit.gpu, ('any',))[0]} to choose it)")
    return lines


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
